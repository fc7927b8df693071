"""A crashed process's alert sends go out at the next start, not a minute late (issue 11 gap).

A process that dies mid-send leaves its outbox rows leased for 60 s. Alone (SQLite is
single-instance), a fresh start hands them back at once; on PostgreSQL only the leases
of a process without a fresh heartbeat are handed back, never a live replica's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update

from bot.alerts.outbox import SEND_LEASE, enqueue_many, outbox_row
from bot.alerts.rules import REVOKED
from bot.storage.db import Database
from bot.storage.models import AlertOutbox
from bot.storage.repositories import UserRepo
from tests.e2e.harness import running_bot
from tests.fakes.telegram_api import FakeTelegram


async def leased_by_a_dead_process(database_url: str, user_id: int, owner: str) -> None:
    db = Database(database_url)
    try:
        now = db.clock()
        async with db.session() as s:
            await UserRepo(s).get_or_create(user_id)
            row = outbox_row(
                idem_key=f"crash-{user_id}", user_id=user_id, key_id=None, kind=REVOKED,
                payload={"label": "main", "hint": "sk-…0000"}, now=now,
            )  # fmt: skip
            await enqueue_many(s, [row])
            await s.execute(
                update(AlertOutbox)
                .where(AlertOutbox.user_id == user_id)
                .values(lease_owner=owner, lease_until=now + SEND_LEASE, attempts=1)
            )
    finally:
        await db.dispose()


async def test_alone_a_restart_sends_at_once(make_settings) -> None:
    async with FakeTelegram() as tg:
        ann = tg.user(5001, "Ann", started=True)
        async with running_bot(make_settings, tg=tg) as bot:  # the schema
            url = bot.settings.database_url
        await leased_by_a_dead_process(url, ann.id, owner="crashed-process")
        async with running_bot(make_settings, tg=tg):
            alert = await tg.wait_for_reply(ann, timeout=10)  # not after the 60 s lease
            assert "main" in (alert.text or "")


@pytest.mark.postgres
async def test_a_live_replicas_sends_are_kept(make_settings, postgres_url: str) -> None:
    async with FakeTelegram() as tg:
        ann = tg.user(5002, "Ann", started=True)
        async with running_bot(make_settings, tg=tg, database_url=postgres_url):
            pass  # the schema
        await leased_by_a_dead_process(postgres_url, ann.id, owner="replica-b")
        db = Database(postgres_url)
        try:
            async with db.session() as s:  # replica B is alive: its heartbeat is fresh
                await s.execute(
                    text(
                        "INSERT INTO instances (id, started_at, seen_at) "
                        "VALUES ('replica-b', clock_timestamp(), clock_timestamp())"
                    )
                )
            async with running_bot(make_settings, tg=tg, database_url=postgres_url):
                await tg.assert_no_reply(ann, within=3)  # B may still be sending it
                async with db.session() as s:  # B dies: no heartbeat for a minute
                    await s.execute(
                        text("UPDATE instances SET seen_at = seen_at - interval '1 minute'")
                    )
                # the next heartbeat (10 s) hands B's send back, well before its lease ends
                alert = await tg.wait_for_reply(ann, timeout=SEND_LEASE.seconds - 20)
                assert "main" in (alert.text or "")
        finally:
            await db.dispose()
    assert timedelta(seconds=60) <= SEND_LEASE
