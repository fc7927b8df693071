"""Which Telegram updates the webhook has handled: each update once, across replicas.

Telegram retries a webhook POST that did not get a 2xx in time — after a crash, or just
a slow answer — so the same `update_id` can arrive twice, possibly at two replicas
(docs/telegram.md §5). Each update is *claimed* in the database before it is handled and
marked done after; a second arrival is then:

- DONE: already handled → answer 200, do nothing;
- BUSY: being handled right now (by this process, or by a replica that claimed it less
  than `STALE` ago) → answer 503, so Telegram asks again later: if the first attempt dies
  half-way, the update is not lost (at-least-once is kept);
- NEW again: the claim's owner is gone (SQLite is single-instance, so another owner is a
  dead process; on PostgreSQL, after `STALE`) or it is our own failed attempt → taken over.

Rows are pruned after `KEEP` (Telegram keeps an undelivered update for 24 hours).
"""

from __future__ import annotations

import enum
import secrets
import time
from datetime import timedelta

from sqlalchemy import delete, select, update

from bot.storage.db import Database
from bot.storage.models import WebhookUpdate
from bot.storage.upsert import insert_or_ignore

STALE = timedelta(seconds=120)  # longer than any update takes (checks time out at 45 s)
KEEP = timedelta(days=2)
PRUNE_EVERY = 600.0  # seconds


class Claim(enum.Enum):
    NEW = "new"
    DONE = "done"
    BUSY = "busy"


class WebhookUpdates:
    def __init__(
        self, db: Database, *, owner: str | None = None, single_instance: bool | None = None
    ) -> None:
        self.db = db
        self.clock = db.clock
        self.owner = owner or secrets.token_hex(8)
        self.single_instance = db.is_sqlite if single_instance is None else single_instance
        self._in_flight: set[int] = set()
        self._pruned = 0.0

    async def claim(self, update_id: int) -> Claim:
        if update_id in self._in_flight:
            return Claim.BUSY
        self._in_flight.add(update_id)  # before any await: a concurrent twin sees BUSY
        try:
            claim = await self._claim(update_id)
        except BaseException:
            self._in_flight.discard(update_id)
            raise
        if claim is not Claim.NEW:
            self._in_flight.discard(update_id)
        return claim

    async def _claim(self, update_id: int) -> Claim:
        now = self.clock()
        t = WebhookUpdate.__table__
        async with self.db.session() as s:
            taken = await s.scalar(
                insert_or_ignore(s, WebhookUpdate, ["update_id"])
                .values(update_id=update_id, owner=self.owner, claimed_at=now)
                .returning(t.c.update_id)
            )
            if taken is None:
                row = (
                    await s.execute(
                        select(t.c.owner, t.c.claimed_at, t.c.done_at).where(
                            t.c.update_id == update_id
                        )
                    )
                ).one_or_none()
                if row is None:  # pruned in between: a very old duplicate
                    return Claim.DONE
                if row.done_at is not None:
                    return Claim.DONE
                mine = row.owner == self.owner  # our own earlier attempt, which failed
                stale = self.single_instance or row.claimed_at < now - STALE  # owner is gone
                if not (mine or stale):
                    return Claim.BUSY
                result = await s.execute(
                    update(t)
                    .where(
                        t.c.update_id == update_id,
                        t.c.owner == row.owner,
                        t.c.claimed_at == row.claimed_at,
                        t.c.done_at.is_(None),
                    )
                    .values(owner=self.owner, claimed_at=now)
                )
                if not result.rowcount:  # type: ignore[attr-defined]
                    return Claim.BUSY  # someone else took it over first
        return Claim.NEW

    async def done(self, update_id: int) -> None:
        self._in_flight.discard(update_id)
        now = self.clock()
        t = WebhookUpdate.__table__
        async with self.db.session() as s:
            await s.execute(
                update(t)
                .where(t.c.update_id == update_id, t.c.owner == self.owner)
                .values(done_at=now)
            )
            if time.monotonic() - self._pruned > PRUNE_EVERY:
                self._pruned = time.monotonic()
                await s.execute(delete(t).where(t.c.claimed_at < now - KEEP))

    def release(self, update_id: int) -> None:
        """Handling failed before it was done: a retry from Telegram may take it over."""
        self._in_flight.discard(update_id)
