"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, settings.

PostgreSQL comes from TEST_POSTGRES_URL (`eval "$(bash .ci/postgres.sh)"` starts one).
Without it the PostgreSQL variants skip with a reason — except under CI=true, where a
missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.settings import Settings, load_settings

os.environ.setdefault("PTB_TIMEDELTA", "1")

# TEST_TIME_SHIFT_DAYS=400 runs the suite with the wall clock moved that far ahead
# (CI does it once more after the normal run): a test that only passes on today's
# calendar fails there. Subprocesses get the same shift via tests/timeshift/.
TIME_SHIFT_DAYS = float(os.environ.get("TEST_TIME_SHIFT_DAYS") or 0)
if TIME_SHIFT_DAYS:
    import time_machine

    time_machine.travel(datetime.now(UTC) + timedelta(days=TIME_SHIFT_DAYS), tick=True).start()
    _shift_dir = str(Path(__file__).resolve().parent / "timeshift")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_shift_dir, os.environ.get("PYTHONPATH", "")) if p
    )


def pytest_report_header() -> str | None:
    if TIME_SHIFT_DAYS:
        return f"wall clock shifted {TIME_SHIFT_DAYS:g} days ahead: {datetime.now(UTC):%Y-%m-%d}"
    return None


PG_URL = os.environ.get("TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_TOKEN = "123456789:TEST-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def require_postgres() -> str:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but TEST_POSTGRES_URL is not set: PostgreSQL did not start")
        pytest.skip('no PostgreSQL server: run `eval "$(bash .ci/postgres.sh)"` to enable')
    return PG_URL


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(PG_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A brand-new, empty PostgreSQL database for this test."""
    base = require_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every storage test runs twice: SQLite file and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
        return
    base = require_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: data dir under tmp_path, a fake token, no .env file."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "telegram_bot_token": TEST_TOKEN,
            "data_dir": tmp_path / "data",
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/data/bot.db",
            "allow_private_base_urls": True,
            "provider_base_urls": {},
        }
        values.update(overrides)
        return load_settings(env_file=None, **values)

    return make
