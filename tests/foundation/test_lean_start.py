"""A polling bot on SQLite loads only what that mode needs (issue 17 item 4).

Alembic only when a migration runs, SQLAlchemy's PostgreSQL dialect only on PostgreSQL,
prometheus_client only when /metrics is rendered (webhook mode), the webhook server only
in webhook mode, the XML parser only when exchange rates are fetched. Checked in a fresh
interpreter: which modules a restart on an up-to-date database has loaded once the
services and the Application are built, and how often a CA bundle was loaded into a TLS
context (each costs ~0.7 MB and ~20 ms). And `balance-bot run` asks Telegram once: one
getMe, one setMyCommands per language, before it polls. (How much memory and time that
saves is the benchmark's business: `python -m bench`, phase idle.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.storage import migrate
from tests.e2e.procs import clean_env, start_bot
from tests.fakes.telegram_api import FakeTelegram

HEAVY = (
    "alembic",
    "prometheus_client",
    "sqlalchemy.dialects.postgresql",
    "asyncpg",
    "uvicorn",
    "starlette",
    "matplotlib",
    "xml.etree",
)

SCRIPT = """
import asyncio, json, ssl, sys

ca_loads = 0
_load = ssl.SSLContext.load_verify_locations


def counted(self, *args, **kwargs):
    global ca_loads
    ca_loads += 1
    return _load(self, *args, **kwargs)


ssl.SSLContext.load_verify_locations = counted
from bot.app import build_application, build_services, close_services
from bot.settings import load_settings

settings = load_settings(env_file=None, telegram_bot_token=sys.argv[1],
                         database_url=sys.argv[2], data_dir=sys.argv[3])

async def go():
    services = await build_services(settings)
    build_application(settings, services)
    await close_services(services)

asyncio.run(go())
heavy = {h.split(".")[0] for h in json.loads(sys.argv[4])}
print(json.dumps({"modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
                  "ca_loads": ca_loads}))
"""


def _start(tmp_path: Path) -> dict[str, Any]:
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
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loaded(tmp_path: Path) -> list[str]:
    modules: list[str] = _start(tmp_path)["modules"]
    return modules


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


def test_one_tls_context_for_telegram_and_one_for_the_providers(tmp_path: Path) -> None:
    # PTB's defaults built one per HTTP client (2 per Bot), the billing clients two each
    # (their own plus the transport's unused one): 6 CA bundle loads, ~4 MB.
    _start(tmp_path)  # first start: migrations
    assert _start(tmp_path)["ca_loads"] <= 2


async def test_run_asks_telegram_once_before_polling(tmp_path: Path) -> None:
    """getMe once (the token check IS the Application's initialisation), the command menu
    once per language, then polling; the services (migrations, key ring) built once."""
    from bot.i18n import LANGUAGES

    async with FakeTelegram() as tg:
        env = clean_env(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_URL=tg.api_root,
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/bot.db",
            ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode(),
            LOG_LEVEL="INFO",
        )
        bot = await start_bot(["run"], env, tmp_path)
        try:
            await tg.wait_until(
                lambda: tg.calls_to("getUpdates") or None, 60, lambda: "the bot polling"
            )
            langs = sorted(str(c.params.get("language_code")) for c in tg.calls_to("setMyCommands"))
            assert len(tg.calls_to("getMe")) == 1
            assert langs == sorted("None" if lang == "en" else lang for lang in LANGUAGES)
        finally:
            assert await bot.terminate() == 0, bot.log()
    log = bot.log()  # open_vault logs this line once per opening of the key ring
    assert log.count("master key from ENCRYPTION_KEY") == 1 and "Traceback" not in log, log
