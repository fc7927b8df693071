"""The alert outbox: notifications written with their event, delivered by lease.

An event and its outbox row are committed together (see bot/alerts/sweep.py), so a crash can
neither lose a notification nor record one twice; `idem_key` is unique, so even a bug
that detects an event twice inserts one row. Delivery claims rows with a lease
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, a compare-and-set UPDATE everywhere), so two
replicas never send the same row; a crashed sender's lease runs out and the row is
picked up again. The only duplicate left: Telegram accepted a message and the process
died before `mark_sent` committed.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.storage.db import Database
from bot.storage.models import AlertOutbox, AlertPrefs, User
from bot.storage.repositories import OutboxRepo

PENDING, SENT, FAILED, EXPIRED = "pending", "sent", "failed", "expired"
SEND_LEASE = timedelta(seconds=60)
KEEP_DONE = timedelta(days=30)
STALE_AFTER_PAUSE = timedelta(hours=24)  # alerts older than this are dropped on resume
MAX_ATTEMPTS = 50


def instance_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    user_id: int
    key_id: str | None
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    language: str | None
    timezone: str


def outbox_row(
    *,
    idem_key: str,
    user_id: int,
    key_id: str | None,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The values of a new pending outbox row (for `enqueue` and `enqueue_many`)."""
    return {
        "idem_key": idem_key,
        "user_id": user_id,
        "key_id": key_id,
        "kind": kind,
        "payload": payload,
        "status": PENDING,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
    }


async def enqueue(
    s: AsyncSession,
    *,
    idem_key: str,
    user_id: int,
    key_id: str | None,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Insert in the caller's transaction; False when that event is already recorded."""
    values = outbox_row(
        idem_key=idem_key, user_id=user_id, key_id=key_id, kind=kind, payload=payload, now=now
    )
    return await OutboxRepo(s).add(values)


async def enqueue_many(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """`enqueue` for many `outbox_row`s in one statement; events already recorded are skipped."""
    await OutboxRepo(s).add_many(rows)


class OutboxService:
    """Claim, deliver-bookkeeping and pruning of outbox rows. No Telegram here."""

    def __init__(
        self,
        db: Database,
        *,
        owner: str | None = None,
        clock: Clock | None = None,
        send_rate: float = 28.0,
    ) -> None:
        self.db = db
        self.owner = owner or instance_id()
        self.clock = clock or db.clock
        #: messages per second the sender allows itself (Telegram: ~30/s per bot).
        self.send_rate = send_rate

    async def claim(self, limit: int = 50, now: datetime | None = None) -> list[OutboxItem]:
        """Lease up to `limit` due rows of users who have not blocked the bot."""
        now = now or self.clock()
        t = AlertOutbox.__table__
        lease_free = or_(t.c.lease_until.is_(None), t.c.lease_until < now)
        paused = select(AlertPrefs.user_id).where(AlertPrefs.paused_at.is_not(None))
        due = (
            select(t.c.id)
            .where(
                t.c.status == PENDING,
                t.c.next_attempt_at <= now,
                lease_free,
                t.c.user_id.not_in(paused),
            )
            .order_by(t.c.next_attempt_at, t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(t)
            .where(t.c.id.in_(due), t.c.status == PENDING, lease_free)
            .values(
                lease_owner=self.owner,
                lease_until=now + SEND_LEASE,
                attempts=t.c.attempts + 1,
            )
            .returning(t.c.id)
        )
        async with self.db.session() as s:
            ids = list((await s.scalars(stmt)).all())
            if not ids:
                return []
            rows = (
                await s.execute(
                    select(AlertOutbox, User.language, User.timezone, AlertPrefs.lang)
                    .join(User, User.id == AlertOutbox.user_id)
                    .outerjoin(AlertPrefs, AlertPrefs.user_id == AlertOutbox.user_id)
                    .where(AlertOutbox.id.in_(ids))
                    .order_by(AlertOutbox.next_attempt_at, AlertOutbox.id)
                )
            ).all()
        return [
            OutboxItem(
                row.id,
                row.user_id,
                row.key_id,
                row.kind,
                dict(row.payload or {}),
                row.attempts,
                row.created_at,
                language or seen,
                tz or "UTC",
            )
            for row, language, tz, seen in rows
        ]

    async def _set(self, item_id: int, **values: Any) -> bool:
        t = AlertOutbox.__table__
        stmt = (
            update(t)
            .where(t.c.id == item_id, t.c.status == PENDING)
            .values(lease_owner=None, lease_until=None, **values)
        )
        async with self.db.session() as s:
            result = await s.execute(stmt)
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_sent(self, item_id: int) -> None:
        """Whoever sent it, it is sent: no owner check, so no second delivery follows."""
        await self._set(item_id, status=SENT, sent_at=self.clock())

    async def retry_at(self, item_id: int, when: datetime, *, count: bool = True) -> None:
        """Back to the queue (429, network error, per-chat pacing)."""
        t = AlertOutbox.__table__
        values: dict[str, Any] = {"next_attempt_at": when}
        if not count:
            values["attempts"] = t.c.attempts - 1
        await self._set(item_id, **values)

    async def fail(self, item_id: int) -> None:
        await self._set(item_id, status=FAILED)

    async def pause_user(self, user_id: int, item_id: int | None = None) -> None:
        """The user blocked the bot: hold their alerts until they talk to us again."""
        now = self.clock()
        async with self.db.session() as s:
            prefs = await s.get(AlertPrefs, user_id, with_for_update=True)
            if prefs is None:
                prefs = AlertPrefs(user_id=user_id, instant=True, digest=False, digest_hour=9)
                s.add(prefs)
            if prefs.paused_at is None:
                prefs.paused_at = now
        if item_id is not None:
            await self._set(item_id, next_attempt_at=now)

    async def resume_user(self, user_id: int) -> bool:
        """Un-pause; alerts that waited longer than a day are dropped, not delivered stale."""
        now = self.clock()
        async with self.db.session() as s:
            prefs = await s.get(AlertPrefs, user_id)
            if prefs is None or prefs.paused_at is None:
                return False
            prefs.paused_at = None
            await s.execute(
                update(AlertOutbox)
                .where(
                    AlertOutbox.user_id == user_id,
                    AlertOutbox.status == PENDING,
                    AlertOutbox.created_at < now - STALE_AFTER_PAUSE,
                )
                .values(status=EXPIRED)
            )
        return True

    async def hand_back_dead(self, alive: Collection[str] | None = None) -> int:
        """Release the send leases of processes that are gone, so their alerts go out now.

        A process that crashed mid-send leaves rows leased for `SEND_LEASE` (60 s): alerts
        after a crash came a minute late. `alive` are the lease owners known to be
        running (PostgreSQL: the replicas with a fresh heartbeat, whose outbox owner is
        their instance id); None means this process is alone (SQLite is single-instance),
        so every other owner is dead. This process's own leases are never touched.
        """
        t = AlertOutbox.__table__
        keep = {self.owner, *(alive or ())}
        stmt = (
            update(t)
            .where(
                t.c.status == PENDING,
                t.c.lease_owner.is_not(None),
                t.c.lease_owner.not_in(sorted(keep)),
            )
            .values(lease_owner=None, lease_until=None)
        )
        async with self.db.session() as s:
            result = await s.execute(stmt)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def prune(self, now: datetime | None = None) -> int:
        now = now or self.clock()
        async with self.db.session() as s:
            result = await s.execute(
                delete(AlertOutbox).where(
                    and_(
                        AlertOutbox.status.in_([SENT, FAILED, EXPIRED]),
                        AlertOutbox.created_at < now - KEEP_DONE,
                    )
                )
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def counts(self) -> dict[str, int]:
        """Rows per status (tests, metrics)."""
        async with self.db.session() as s:
            rows = (await s.execute(select(AlertOutbox.status))).scalars().all()
        out: dict[str, int] = {}
        for status in rows:
            out[status] = out.get(status, 0) + 1
        return out

    async def rows(self, user_id: int | None = None) -> Sequence[AlertOutbox]:
        async with self.db.session() as s:
            stmt = select(AlertOutbox).order_by(AlertOutbox.id)
            if user_id is not None:
                stmt = stmt.where(AlertOutbox.user_id == user_id)
            return (await s.scalars(stmt)).all()
