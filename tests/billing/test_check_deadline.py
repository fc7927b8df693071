"""`balance-bot check` answers within 20 s in total even when the provider hangs
(retries included): the CLI as a process against a server that accepts and never answers."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.e2e.procs import clean_env


class HangingServer:
    """Accepts connections, reads the request, never answers (a hung provider)."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.base_events.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while await reader.read(4096):
                pass  # keep reading, say nothing
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


async def test_check_ends_with_timed_out_within_twenty_seconds(tmp_path: Path) -> None:
    hanging = HangingServer()
    url = await hanging.start()
    env = clean_env(K="sk-hang0123456789abcdef0123", PROVIDER_DEEPSEEK_BASE_URL=url,
                    TELEGRAM_BOT_TOKEN="")  # fmt: skip
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "check", "--provider", "deepseek", "--key-env", "K",
            env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await hanging.stop()
    elapsed = time.monotonic() - started
    text = out.decode() + err.decode()
    assert proc.returncode == 1, text
    print(f"balance-bot check ended after {elapsed:.1f} s")
    assert elapsed < 25, f"took {elapsed:.1f} s"
    assert "did not answer in time" in text and "kind=network" in text
    assert "sk-hang" not in text
    assert hanging.connections >= 1
