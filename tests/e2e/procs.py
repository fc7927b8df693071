"""Run the bot as a real process (`python -m bot ...`) for tests that need signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.settings import Settings

#: Every variable the bot reads: a test sets what it needs, nothing leaks in from outside.
OWN_NAMES = frozenset(name.upper() for name in Settings.model_fields)
OWN_PREFIXES = ("TELEGRAM_", "ENCRYPTION_", "PROVIDER_", "WEBHOOK_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """The caller's environment minus the bot's own settings, plus `values`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in OWN_NAMES and not k.upper().startswith(OWN_PREFIXES)
    }
    env.update(values)
    env.setdefault("PTB_TIMEDELTA", "1")
    return env


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    log_path: Path
    port: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_healthy(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"bot exited {self.proc.returncode}:\n{self.log()}")
                try:
                    if (await client.get(f"{self.base}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"bot not healthy after {timeout}s:\n{self.log()}")
                await asyncio.sleep(0.1)

    async def terminate(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def start_bot(
    args: list[str], env: dict[str, str], cwd: Path, name: str = "bot", port: int | None = None
) -> BotProcess:
    log_path = cwd / f"{name}.log"
    fh = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdout=fh,
        stderr=fh,
        stdin=asyncio.subprocess.DEVNULL,
    )
    fh.close()
    return BotProcess(proc, log_path, port)
