"""A polling bot on SQLite loads only what that mode needs (issue 17 item 4).

Alembic only when a migration runs, SQLAlchemy's PostgreSQL dialect only on PostgreSQL,
prometheus_client only when /metrics is rendered (webhook mode), the webhook server only
in webhook mode. Checked in a fresh interpreter: which modules a restart on an up-to-date
database has loaded once the services and the Application are built. (How much memory
and time that saves is the benchmark's business: `python -m bench`, phase idle.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.storage import migrate

HEAVY = (
    "alembic",
    "prometheus_client",
    "sqlalchemy.dialects.postgresql",
    "asyncpg",
    "uvicorn",
    "starlette",
    "matplotlib",
)

SCRIPT = """
import asyncio, json, sys
from bot.app import build_application, build_services, close_services
from bot.settings import load_settings

settings = load_settings(env_file=None, telegram_bot_token=sys.argv[1],
                         database_url=sys.argv[2], data_dir=sys.argv[3])

async def go():
    services = await build_services(settings)
    build_application(settings, services)
    await close_services(services)

asyncio.run(go())
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in
      json.loads(sys.argv[4])})))
"""


def _loaded(tmp_path: Path) -> list[str]:
    from tests.conftest import TEST_TOKEN

    args = [
        TEST_TOKEN,
        f"sqlite+aiosqlite:///{tmp_path}/bot.db",
        str(tmp_path / "data"),
        json.dumps(HEAVY),
    ]
    root = str(Path(__file__).resolve().parents[2])  # this tree, whatever the cwd
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_head_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == script.get_current_head()


def test_a_restart_on_sqlite_loads_no_migration_tool_metrics_or_postgres(tmp_path: Path) -> None:
    first = _loaded(tmp_path)  # creates the database: migrations run, Alembic is needed
    assert "alembic" in first
    again = _loaded(tmp_path)
    heavy = [m for m in again if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
