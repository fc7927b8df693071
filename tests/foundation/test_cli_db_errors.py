"""An unreachable database is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import clean_env, free_port


def test_unreachable_postgres_is_one_line(tmp_path: Path) -> None:
    env = clean_env(
        TELEGRAM_BOT_TOKEN="1:abc",
        DATABASE_URL=f"postgresql+asyncpg://bob:hunter2@127.0.0.1:{free_port()}/nowhere",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 69
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0]
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
