"""Start-up failures are one line and exit 78, never a traceback or a secret (issue 11, item 12).

Python prints an uncaught exception itself, past every log filter; PTB's InvalidToken
message holds the token in clear. These run the real `python -m bot` process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import clean_env, free_port
from tests.fakes.telegram_api import FakeTelegram

WRONG_TOKEN = "123456:WRONG-token-abcdefghijklmnopqrstuvwxyz0123"


async def run_bot(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("args", [["run"], ["run", "--webhook"]])
async def test_rejected_token_is_one_line_exit_78(tmp_path: Path, args: list[str]) -> None:
    async with FakeTelegram() as tg:  # it answers 401 to any other token
        port = free_port()
        env = clean_env(
            TELEGRAM_BOT_TOKEN=WRONG_TOKEN,
            TELEGRAM_API_URL=tg.api_root,
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/bot.db",
            WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
            WEBHOOK_SECRET="s3cret-Webhook_token",
            WEBHOOK_PORT=str(port),
            WEBHOOK_LISTEN="127.0.0.1",
        )
        rc, out = await run_bot(args, env, tmp_path)
    assert rc == 78, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "TELEGRAM_BOT_TOKEN" in lines[0] and "rejected" in lines[0]
    assert "Traceback" not in out
    assert WRONG_TOKEN not in out and WRONG_TOKEN.split(":")[1] not in out
    assert not (tmp_path / "data").exists()  # refused before touching storage


@pytest.mark.parametrize(
    "url",
    [
        "mysql://bob:hunter2@127.0.0.1/balance",
        "mysql+aiomysql://bob:hunter2@127.0.0.1/balance",
        "oracle://bob:hunter2@db/x",
        "not a url hunter2",
    ],
)
def test_unsupported_database_url_is_one_line_exit_78(tmp_path: Path, url: str) -> None:
    env = clean_env(TELEGRAM_BOT_TOKEN=WRONG_TOKEN, DATABASE_URL=url)
    for args in (["run"], ["migrate"]):
        proc = subprocess.run(
            [sys.executable, "-m", "bot", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 78, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "DATABASE_URL" in lines[0], proc.stderr
        assert "unsupported database" in lines[0]
        assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
        assert WRONG_TOKEN not in proc.stderr


def test_plain_scheme_names_mean_the_shipped_drivers() -> None:
    from bot.settings import supported_database_url

    assert supported_database_url("sqlite:///data/x.db") == "sqlite+aiosqlite:///data/x.db"
    assert supported_database_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert (
        supported_database_url("postgresql+asyncpg://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    )


CRASHER = """
import asyncio, gc, threading
from bot.logs import install_redaction
from bot.secret import register_static
TOKEN = {token!r}
install_redaction()
register_static(TOKEN)

class Leaky:
    def __del__(self):
        raise RuntimeError("in __del__ with " + TOKEN)

async def main():
    async def fail():
        raise RuntimeError("task with " + TOKEN)
    task = asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0.05)
    del task
    gc.collect()

asyncio.run(main())
Leaky(); gc.collect()
t = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError("thread with " + TOKEN)))
t.start(); t.join()
raise SystemError("uncaught with " + TOKEN)
"""


def test_uncaught_exceptions_are_printed_redacted(tmp_path: Path) -> None:
    """Python's own prints: the final traceback, a thread, __del__, an unretrieved task."""
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER.format(token=WRONG_TOKEN)],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    err = proc.stderr
    assert proc.returncode == 1
    for where in ("uncaught with", "thread with", "in __del__ with", "task with"):
        assert where in err, err  # each path printed something...
    assert WRONG_TOKEN not in err and WRONG_TOKEN.split(":")[1] not in err  # ...redacted
