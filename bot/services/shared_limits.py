"""Limits that hold for the whole deployment, not per process (PostgreSQL replicas).

Each process used to keep its own counters, so N replicas allowed N times as much:
N × 10 manual checks a minute per user, N × 20 first checks an hour, N × 30 Telegram
messages a second, N × the politeness budget per provider host (issue 11). On
PostgreSQL the state lives in the database instead (docs/security.md §6):

- `SharedQuota`: "at most `limit` per `window` per user" — a sliding window of hit
  times in one `rate_limits` row per user, read and written under that row's lock
  (`SELECT … FOR UPDATE`), so two replicas can never both take the last slot;
- `SharedPacer`: "at most `rate` per second overall" — one row holding the next free
  send time (GCRA); each send reserves its slot with one atomic upsert and waits until
  then, so replicas queue fairly behind each other;
- `Instances`: a heartbeat row per process. Per-host politeness is a concurrency cap,
  not a rate: each replica takes its share of it (cap / live replicas), and a process
  that is alone may take back a crashed predecessor's leases at start.

Time here is the database server's clock: it is the one clock all replicas share, and
these are coordination timings, not business time (bot/clock.py stays the source of
that). SQLite deployments are single-instance and keep the in-process limiters.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time

from aiolimiter import AsyncLimiter
from sqlalchemy import text

from bot.services.balances import ManualCheckLimiter
from bot.storage.db import Database

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
ALIVE_SECONDS = 30.0  # an instance not seen for this long is gone
_PRUNE_EVERY = 600.0

# One round trip each; `now` is the database server's clock, in epoch seconds.
_QUOTA_ROW = text(
    "INSERT INTO rate_limits (key, hits, expires_at) "
    "VALUES (:key, '[]', clock_timestamp()) ON CONFLICT (key) DO NOTHING"
)
_QUOTA_LOCK = text(
    "SELECT hits, extract(epoch from clock_timestamp()) AS now "
    "FROM rate_limits WHERE key = :key FOR UPDATE"
)
_QUOTA_SAVE = text(
    "UPDATE rate_limits SET hits = CAST(:hits AS JSON), expires_at = to_timestamp(:until) "
    "WHERE key = :key"
)
_PACE = text(
    "INSERT INTO rate_limits (key, tat, expires_at) "
    "VALUES (:key, extract(epoch from clock_timestamp()) + :t, "
    "        clock_timestamp() + interval '1 minute') "
    "ON CONFLICT (key) DO UPDATE SET "
    "  tat = GREATEST(COALESCE(rate_limits.tat, 0), extract(epoch from clock_timestamp())) + :t, "
    "  expires_at = clock_timestamp() + interval '1 minute' "
    "RETURNING tat, extract(epoch from clock_timestamp()) AS now"
)
_BEAT = text(
    "INSERT INTO instances (id, started_at, seen_at) "
    "VALUES (:id, clock_timestamp(), clock_timestamp()) "
    "ON CONFLICT (id) DO UPDATE SET seen_at = clock_timestamp()"
)
_OTHERS = text(
    "SELECT count(*) FROM instances WHERE id <> :id "
    "AND seen_at > clock_timestamp() - make_interval(secs => :alive)"
)
_ALIVE = text(
    "SELECT id FROM instances WHERE seen_at > clock_timestamp() - make_interval(secs => :alive)"
)
_PRUNE_INSTANCES = text(
    "DELETE FROM instances WHERE seen_at < clock_timestamp() - interval '1 hour'"
)
_PRUNE_LIMITS = text("DELETE FROM rate_limits WHERE expires_at < clock_timestamp()")


class SharedQuota(ManualCheckLimiter):
    """`ManualCheckLimiter` whose `take` counts across every replica on one PostgreSQL.

    `allow` (synchronous) is still the process's own sliding window, for any caller that
    has not moved to `take`; `take` is the deployment-wide one.
    """

    def __init__(self, db: Database, name: str, limit: int, window: float) -> None:
        super().__init__(limit=limit, window=window)
        self.db = db
        self.name = name
        self._free_at: dict[int, float] = {}  # refused users → monotonic time of next slot

    def retry_in(self, user_id: int) -> float:
        """Seconds until the deployment-wide limit has a slot again (after a refused take)."""
        free_at = self._free_at.pop(user_id, None)
        if free_at is None:
            return super().retry_in(user_id)
        return max(0.0, free_at - time.monotonic())

    async def take(self, user_id: int) -> bool:
        key = f"{self.name}:{user_id}"
        try:
            async with self.db.session() as s:
                await s.execute(_QUOTA_ROW, {"key": key})
                row = (await s.execute(_QUOTA_LOCK, {"key": key})).one()
                now = float(row.now)
                hits = [float(h) for h in (row.hits or []) if now - float(h) < self.window]
                if len(hits) >= self.limit:
                    if len(self._free_at) > 10_000:
                        self._free_at.clear()
                    self._free_at[user_id] = time.monotonic() + hits[0] + self.window - now
                    return False
                hits.append(now)
                until = now + self.window
                await s.execute(_QUOTA_SAVE, {"key": key, "hits": _json(hits), "until": until})
                return True
        except Exception as exc:  # the database is down: this process's own limit holds
            log.warning("shared limit %s unavailable (%s): using this process's", key, exc)
            return self.allow(user_id)


class SharedPacer:
    """At most `rate` sends per second across all replicas, bursts up to `burst`.

    29/s after a burst of 1: no one-second window holds more than 30, Telegram's "about
    30 messages a second" (docs/telegram.md §1), whichever replicas send them.
    """

    def __init__(
        self, db: Database, name: str = "telegram", rate: float = 29.0, burst: int = 1
    ) -> None:
        self.db = db
        self.key = f"pace:{name}"
        self.interval = 1.0 / rate
        self.burst = burst
        self._fallback_until = 0.0
        self._local = AsyncLimiter(burst, burst / rate)  # while the database is unreachable

    async def acquire(self) -> None:
        if time.monotonic() < self._fallback_until:
            await self._local.acquire()
            return
        try:
            async with self.db.session() as s:
                row = (await s.execute(_PACE, {"key": self.key, "t": self.interval})).one()
        except Exception as exc:
            log.warning("shared pacing unavailable (%s): pacing this process alone", exc)
            self._fallback_until = time.monotonic() + 30
            await self._local.acquire()
            return
        wait = float(row.tat) - float(row.now) - self.burst * self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class Instances:
    """This process's heartbeat, and how many processes are alive."""

    def __init__(self, db: Database, instance_id: str | None = None) -> None:
        self.db = db
        self.id = instance_id or secrets.token_hex(8)
        self.live = 1
        self._pruned = 0.0

    async def beat(self) -> int:
        """Say we are alive; returns how many instances are (this one included)."""
        async with self.db.session() as s:
            await s.execute(_BEAT, {"id": self.id})
            others = await s.scalar(_OTHERS, {"id": self.id, "alive": ALIVE_SECONDS})
            if time.monotonic() - self._pruned > _PRUNE_EVERY:
                self._pruned = time.monotonic()
                await s.execute(_PRUNE_INSTANCES)
                await s.execute(_PRUNE_LIMITS)
        self.live = 1 + int(others or 0)
        return self.live

    async def alive(self) -> list[str]:
        """Ids of the instances with a fresh heartbeat (this one included once it beat)."""
        async with self.db.session() as s:
            rows = await s.scalars(_ALIVE, {"alive": ALIVE_SECONDS})
            return list(rows)

    async def others_alive(self) -> int:
        async with self.db.session() as s:
            return int(await s.scalar(_OTHERS, {"id": self.id, "alive": ALIVE_SECONDS}) or 0)

    async def leave(self) -> None:
        async with self.db.session() as s:
            await s.execute(text("DELETE FROM instances WHERE id = :id"), {"id": self.id})


def share(cap: int, replicas: int) -> int:
    """This replica's part of a deployment-wide concurrency cap (at least 1)."""
    return max(1, math.ceil(cap / max(1, replicas)))


def _json(values: list[float]) -> str:
    return "[" + ",".join(repr(v) for v in values) + "]"
