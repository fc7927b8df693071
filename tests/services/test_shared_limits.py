"""Limits shared by replicas on one PostgreSQL (issue 11, known gap): quotas, pacing, heartbeats.

Two service objects on one database stand for two replicas; tests/e2e/test_replica_limits.py
runs the same through two real processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.services.balances import ManualCheckLimiter
from bot.services.shared_limits import Instances, SharedPacer, SharedQuota, share
from bot.storage import migrate
from bot.storage.db import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_quota_holds_across_replicas_even_when_raced(db: Database) -> None:
    one = SharedQuota(db, "first-check", limit=20, window=3600)
    two = SharedQuota(db, "first-check", limit=20, window=3600)
    results = await asyncio.gather(*(q.take(7) for _ in range(15) for q in (one, two)))
    assert sum(results) == 20  # 30 tries from two replicas at once: 20, not 40
    assert await one.take(8) and await two.take(8)  # per user
    local = ManualCheckLimiter(limit=20, window=3600)  # what each replica had before
    assert sum([local.allow(7) for _ in range(15)]) == 15


async def test_a_quota_window_slides(db: Database) -> None:
    quota = SharedQuota(db, "manual-check", limit=2, window=1.0)
    assert await quota.take(1) and await quota.take(1)
    assert not await quota.take(1)
    await asyncio.sleep(1.1)
    assert await quota.take(1)


async def test_the_pacer_is_shared(db: Database) -> None:
    """Two replicas at 20/s with a burst of 5: 25 sends take at least a second in all."""
    one, two = (SharedPacer(db, "test", rate=20, burst=5) for _ in range(2))
    started = time.monotonic()
    await asyncio.gather(*(p.acquire() for _ in range(12) for p in (one, two)), one.acquire())
    assert time.monotonic() - started >= (25 - 5) / 20 - 0.05


async def test_instances_count_each_other_and_leave(db: Database) -> None:
    one, two = Instances(db, "one"), Instances(db, "two")
    assert await one.beat() == 1
    assert await two.beat() == 2
    assert await one.others_alive() == 1
    await two.leave()
    assert await one.beat() == 1 and await one.others_alive() == 0
    assert share(4, 2) == 2 and share(50, 3) == 17 and share(4, 9) == 1
