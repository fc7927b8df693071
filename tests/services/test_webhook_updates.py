"""Webhook update de-duplication in the database, on SQLite and PostgreSQL (issue 11, item 10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.webhook_updates import KEEP, STALE, Claim, WebhookUpdates
from bot.storage import migrate
from bot.storage.db import Database
from bot.storage.models import WebhookUpdate


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, clock=Clock())
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


async def test_each_update_is_claimed_once(db: Database) -> None:
    seen = WebhookUpdates(db, owner="a")
    assert await seen.claim(1) is Claim.NEW
    assert await seen.claim(1) is Claim.BUSY  # the twin while the first is handled
    await seen.done(1)
    assert await seen.claim(1) is Claim.DONE
    assert await seen.claim(2) is Claim.NEW


async def test_a_failed_attempt_is_taken_over_by_the_retry(db: Database) -> None:
    seen = WebhookUpdates(db, owner="a")
    assert await seen.claim(5) is Claim.NEW
    seen.release(5)  # handling raised: not done
    assert await seen.claim(5) is Claim.NEW


async def test_replicas_wait_for_a_live_claim_and_take_over_a_dead_one(db: Database) -> None:
    clock = db.clock
    assert isinstance(clock, Clock)
    first = WebhookUpdates(db, owner="replica-1", single_instance=False)
    second = WebhookUpdates(db, owner="replica-2", single_instance=False)
    assert await first.claim(9) is Claim.NEW
    assert await second.claim(9) is Claim.BUSY  # replica 1 may still finish it
    clock.now += STALE + timedelta(seconds=1)  # replica 1 died with it
    assert await second.claim(9) is Claim.NEW
    await first.done(9)  # a late finish of the dead claim changes nothing
    assert await first.claim(9) is Claim.BUSY
    await second.done(9)
    assert await first.claim(9) is Claim.DONE


async def test_single_instance_takes_over_a_dead_process_claim_at_once(db: Database) -> None:
    before = WebhookUpdates(db, owner="old-process", single_instance=True)
    assert await before.claim(3) is Claim.NEW  # then the process was killed
    after = WebhookUpdates(db, owner="new-process", single_instance=True)
    assert await after.claim(3) is Claim.NEW


async def test_old_rows_are_pruned(db: Database) -> None:
    clock = db.clock
    assert isinstance(clock, Clock)
    seen = WebhookUpdates(db, owner="a")
    assert await seen.claim(1) is Claim.NEW
    await seen.done(1)
    clock.now += KEEP + timedelta(minutes=1)
    seen._pruned = 0.0  # the next done() prunes
    assert await seen.claim(2) is Claim.NEW
    await seen.done(2)
    async with db.session() as s:
        assert await s.get(WebhookUpdate, 1) is None
        assert await s.get(WebhookUpdate, 2) is not None
