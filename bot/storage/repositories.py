"""Queries, grouped by table. Every key query is scoped by owner: there is no way to
load another user's key by id alone (callback data is forgeable, docs/security.md §T8).

The bulk writes of the alert sweep and of recorded checks live here too, so services
never write dialect-specific SQL (the dialect switches themselves are bot/storage/upsert.py,
`AlertStateRepo.lock_leased` and bot/storage/figure_sql.py for `SnapshotRepo.burns`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    TextClause,
    bindparam,
    column,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage import figure_sql
from bot.storage.models import (
    AlertOutbox,
    AlertState,
    ApiKey,
    BalanceSnapshot,
    KeyStatus,
    Meta,
    User,
    UTCDateTime,
)
from bot.storage.upsert import insert_or_ignore, upsert


class UserRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, user_id: int) -> User | None:
        return await self.s.get(User, user_id)

    async def get_or_create(self, user_id: int) -> User:
        user = await self.s.get(User, user_id)
        if user is None:
            user = User(id=user_id, timezone="UTC")
            self.s.add(user)
            await self.s.flush()
        return user

    async def count(self) -> int:
        return int(await self.s.scalar(select(func.count()).select_from(User)) or 0)

    async def delete(self, user_id: int) -> None:
        await self.s.execute(delete(ApiKey).where(ApiKey.owner_id == user_id))
        await self.s.execute(delete(User).where(User.id == user_id))


class KeyRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def list_for(self, owner_id: int) -> Sequence[ApiKey]:
        stmt = (
            select(ApiKey)
            .where(ApiKey.owner_id == owner_id)
            .order_by(ApiKey.created_at, ApiKey.label)
        )
        return (await self.s.scalars(stmt)).all()

    async def get(self, owner_id: int, key_id: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
        return await self.s.scalar(stmt)

    async def by_label(self, owner_id: int, label: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.owner_id == owner_id, ApiKey.label == label)
        return await self.s.scalar(stmt)

    async def by_fingerprint(self, owner_id: int, fingerprints: Sequence[str]) -> ApiKey | None:
        stmt = select(ApiKey).where(
            ApiKey.owner_id == owner_id, ApiKey.fingerprint.in_(list(fingerprints))
        )
        return await self.s.scalar(stmt)

    async def labels(self, owner_id: int) -> set[str]:
        stmt = select(ApiKey.label).where(ApiKey.owner_id == owner_id)
        return set((await self.s.scalars(stmt)).all())

    async def count_for(self, owner_id: int) -> int:
        stmt = select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == owner_id)
        return int(await self.s.scalar(stmt) or 0)

    async def count(self) -> int:
        return int(await self.s.scalar(select(func.count()).select_from(ApiKey)) or 0)

    async def kid_counts(self) -> dict[str, int]:
        stmt = select(ApiKey.kid, func.count()).group_by(ApiKey.kid)
        return {kid: int(n) for kid, n in (await self.s.execute(stmt)).all()}

    async def batch_not_kid(self, kid: str, limit: int) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.kid != kid).order_by(ApiKey.id).limit(limit)
        return (await self.s.scalars(stmt)).all()

    async def all_batches(self, after: str, limit: int) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.id > after).order_by(ApiKey.id).limit(limit)
        return (await self.s.scalars(stmt)).all()

    async def rewrap(
        self, key_id: str, old_kid: str, ciphertext: bytes, kid: str, fingerprint: str
    ) -> bool:
        """Optimistic update: only if the row still carries the kid we decrypted."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.kid == old_kid)
            .values(ciphertext=ciphertext, kid=kid, fingerprint=fingerprint)
        )
        result = await self.s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, owner_id: int, key_id: str) -> bool:
        stmt = delete(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
        result = await self.s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]


class MetaRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, key: str) -> bytes | None:
        row = await self.s.get(Meta, key)
        return None if row is None else bytes(row.value)

    async def set(self, key: str, value: bytes) -> None:
        row = await self.s.get(Meta, key)
        if row is None:
            self.s.add(Meta(key=key, value=value))
        else:
            row.value = value


class AlertStateRepo:
    """`alert_state`: one row per key (what to watch, the rules' memory, the sweep's lease)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    @staticmethod
    def defaults(key_id: str, owner_id: int, now: datetime) -> dict[str, Any]:
        """A new key's row: expiry and revoked warnings on, no thresholds, due now."""
        return {
            "key_id": key_id,
            "owner_id": owner_id,
            "thresholds": [],
            "expiry_on": True,
            "revoked_on": True,
            "forecast_on": True,
            "memory": {},
            "next_check_at": now,
        }

    async def get_or_create(self, key: ApiKey, now: datetime) -> AlertState:
        state = await self.s.get(AlertState, key.id)
        if state is None:
            await self.s.execute(
                insert_or_ignore(self.s, AlertState, ["key_id"]).values(
                    **self.defaults(key.id, key.owner_id, now)
                )
            )
            state = await self.s.get(AlertState, key.id)
            assert state is not None
        return state

    async def missing(self, after: str, limit: int) -> Sequence[tuple[str, int]]:
        """(key id, owner) of keys without a row, in key id order after `after`."""
        stmt = (
            select(ApiKey.id, ApiKey.owner_id)
            .where(
                ApiKey.id > after,
                ~select(AlertState.key_id).where(AlertState.key_id == ApiKey.id).exists(),
            )
            .order_by(ApiKey.id)
            .limit(limit)
        )
        return [(k, o) for k, o in (await self.s.execute(stmt)).all()]

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `defaults` rows; rows that exist already are left alone."""
        if rows:
            await self.s.execute(insert_or_ignore(self.s, AlertState, ["key_id"]), list(rows))

    async def claim(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        key_ids: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[str]:
        """Lease due (or the given) keys: SKIP LOCKED on PostgreSQL, a compare-and-set
        UPDATE on both, so two replicas never lease the same key."""
        t = AlertState.__table__
        lease_free = or_(t.c.lease_until.is_(None), t.c.lease_until < now)
        due = select(t.c.key_id).where(lease_free)
        if key_ids is None:
            due = due.where(t.c.next_check_at <= (due_by or now)).order_by(t.c.next_check_at)
        else:
            due = due.where(t.c.key_id.in_(list(key_ids)))
        due = due.limit(limit).with_for_update(skip_locked=True)
        stmt = (
            update(t)
            .where(t.c.key_id.in_(due), lease_free)
            .values(lease_owner=owner, lease_until=lease_until)
            .returning(t.c.key_id)
        )
        return list((await self.s.scalars(stmt)).all())

    async def release(
        self, key_ids: Sequence[str], owner: str, *, due_at: datetime | None = None
    ) -> None:
        """Free `owner`'s leases of these keys (and make them due at `due_at` if given)."""
        t = AlertState.__table__
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if due_at is not None:
            values["next_check_at"] = due_at
        await self.s.execute(
            update(t).where(t.c.key_id.in_(list(key_ids)), t.c.lease_owner == owner).values(values)
        )

    async def lock_leased(self, key_ids: Sequence[str], owner: str) -> list[Row[Any]]:
        """The rows of these keys that `owner` still leases, locked for this transaction
        (FOR UPDATE on PostgreSQL; on SQLite the first write takes the write lock)."""
        t = AlertState.__table__
        cols = (
            t.c.key_id,
            t.c.owner_id,
            t.c.thresholds,
            t.c.expiry_on,
            t.c.revoked_on,
            t.c.forecast_on,
            t.c.window_rungs,
            t.c.muted_until,
            t.c.memory,
            t.c.failing_since,
            t.c.last,
            t.c.checked_at,
        )
        mine = t.c.key_id.in_(list(key_ids)) & (t.c.lease_owner == owner)
        if self.s.bind.dialect.name == "postgresql":
            lock: Any = select(*cols).where(mine).order_by(t.c.key_id).with_for_update()
        else:
            lock = update(t).where(mine).values(lease_owner=t.c.lease_owner).returning(*cols)
        return list((await self.s.execute(lock)).all())

    async def finish_checks(
        self, changes: Sequence[dict[str, Any]], owner: str, now: datetime, next_at: datetime
    ) -> None:
        """Store each checked key's memory (`k`, `m`, `f`, `l`: key id, memory,
        failing_since, last) and free its lease, if `owner` still holds it. The key is due
        again at `n` when a change carries one (a plan key near a window's reset or rung,
        bot/alerts/windows.py), else at `next_at`."""
        t = AlertState.__table__
        rows = [{**c, "n": c.get("n") or next_at} for c in changes]
        await self.s.execute(
            update(t)
            .where(t.c.key_id == bindparam("k"), t.c.lease_owner == owner)
            .values(
                memory=bindparam("m"),
                failing_since=bindparam("f"),
                last=bindparam("l"),
                checked_at=now,
                next_check_at=bindparam("n", type_=UTCDateTime()),
                lease_owner=None,
                lease_until=None,
            ),
            rows,
        )


class OutboxRepo:
    """`alert_outbox` inserts: one row per event, `idem_key` unique."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: dict[str, Any]) -> bool:
        """Insert one row; False when that event is already recorded."""
        stmt = insert_or_ignore(self.s, AlertOutbox, ["idem_key"]).values(**row)
        result = await self.s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert these rows in one statement; events already recorded are skipped."""
        if rows:
            await self.s.execute(insert_or_ignore(self.s, AlertOutbox, ["idem_key"]), list(rows))


#: A status row's columns before any reading (a new row is these, then what is known).
STATUS_EMPTY: dict[str, Any] = {
    "last_ok_at": None,
    "last_result": None,
    "last_error_kind": None,
    "last_error_at": None,
    "failing_since": None,
    "consecutive_failures": 0,
}


class KeyStatusRepo:
    """`key_status` (each key's last reading and failure streak) and `balance_snapshots`."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def last_ok(self, key_ids: Sequence[str]) -> dict[str, datetime | None]:
        """Key id → its last good reading's time, for the keys that have a status row."""
        t = KeyStatus.__table__
        stmt = select(t.c.key_id, t.c.last_ok_at).where(t.c.key_id.in_(list(key_ids)))
        return {k: at for k, at in (await self.s.execute(stmt)).all()}

    async def write(
        self,
        ok: Sequence[dict[str, Any]],
        failed: Sequence[dict[str, Any]],
        new: Sequence[dict[str, Any]],
        snapshots: Sequence[dict[str, Any]],
        now: datetime,
    ) -> None:
        """A few statements for many keys: good readings (`k`, `b_ok`, `b_res`), failures
        (`k`, `kind`; counters in SQL, so a concurrent increment is not lost), new status
        rows (a row inserted meanwhile is overwritten), and the readings' snapshots."""
        t = KeyStatus.__table__
        key = t.c.key_id == bindparam("k")
        if ok:
            await self.s.execute(
                update(t)
                .where(key)
                .values(
                    last_ok_at=bindparam("b_ok"),
                    last_result=bindparam("b_res"),
                    failing_since=None,
                    consecutive_failures=0,
                ),
                list(ok),
            )
        if failed:
            await self.s.execute(
                update(t)
                .where(key)
                .values(
                    last_error_kind=bindparam("kind"),
                    last_error_at=now,
                    failing_since=func.coalesce(t.c.failing_since, now),
                    consecutive_failures=func.coalesce(t.c.consecutive_failures, 0) + 1,
                ),
                list(failed),
            )
        if new:
            await self.s.execute(upsert(self.s, t, ["key_id"], update=STATUS_EMPTY), list(new))
        if snapshots:
            await self.s.execute(BalanceSnapshot.__table__.insert(), list(snapshots))


#: The retention policy's ranking (services/history.py has the policy): per key, each
#: reading's rank within its calendar day and within its side of the `cutoff`, newest first.
_RANKED = (
    "SELECT id, taken_at,"
    " ROW_NUMBER() OVER (PARTITION BY key_id, date(taken_at)"
    "  ORDER BY taken_at DESC, id DESC) AS day_rank,"
    " ROW_NUMBER() OVER (PARTITION BY key_id,"
    "  CASE WHEN taken_at >= :cutoff THEN 1 ELSE 0 END"
    "  ORDER BY taken_at DESC, id DESC) AS recent_rank"
    " FROM balance_snapshots"
)
_THINNED = (
    "(ranked.taken_at < :cutoff AND ranked.day_rank > 1)"
    " OR (ranked.taken_at >= :cutoff AND ranked.recent_rank > :max_recent)"
)
_PRUNE = text(
    f"DELETE FROM balance_snapshots WHERE id IN (SELECT id FROM ({_RANKED}) ranked"  # noqa: S608 - constants
    f" WHERE ranked.taken_at < :oldest OR {_THINNED})"
).bindparams(
    bindparam("cutoff", type_=UTCDateTime()),
    bindparam("oldest", type_=UTCDateTime()),
    bindparam("max_recent"),
)
_PRUNE_SOME = text(
    f"DELETE FROM balance_snapshots WHERE id IN (SELECT id FROM ("  # noqa: S608 - constants
    f"{_RANKED} WHERE key_id IN :ids AND taken_at >= :since) ranked WHERE {_THINNED})"
).bindparams(
    bindparam("ids", expanding=True),
    bindparam("since", type_=UTCDateTime()),
    bindparam("cutoff", type_=UTCDateTime()),
    bindparam("max_recent"),
)


@functools.cache
def _burns_sql(dialect: str) -> TextClause:
    """Per key: readings, first and last time, the last figure (text), sum of the drops."""
    return (
        text(
            "SELECT key_id, count(*) AS points, min(taken_at) AS first_at,"  # noqa: S608 - constants
            " max(taken_at) AS last_at, max(CASE WHEN nxt IS NULL THEN r END) AS last_value,"
            " coalesce(sum(CASE WHEN prev > v THEN prev - v END), 0) AS spent"
            " FROM (SELECT key_id, taken_at, r, v,"
            "  lag(v) OVER (PARTITION BY key_id ORDER BY taken_at, v) AS prev,"
            "  lead(key_id) OVER (PARTITION BY key_id ORDER BY taken_at, v) AS nxt"
            f"  FROM (SELECT key_id, taken_at, remaining AS r, {figure_sql.value(dialect)} AS v"
            "   FROM balance_snapshots WHERE key_id IN :ids AND kind = :kind"
            "   AND taken_at >= :since AND taken_at <= :until AND remaining IS NOT NULL"
            f"   AND {figure_sql.valid(dialect)}) AS f) AS d"
            " GROUP BY key_id"
        )
        .bindparams(
            bindparam("ids", expanding=True),
            bindparam("since", type_=UTCDateTime()),
            bindparam("until", type_=UTCDateTime()),
        )
        .columns(
            column("key_id", String),
            column("points", Integer),
            column("first_at", UTCDateTime),
            column("last_at", UTCDateTime),
            column("last_value", String),
            column("spent"),
        )
    )


def _exact(number: Any) -> Decimal:
    """PostgreSQL's numeric arrives as a Decimal, SQLite's REAL as a float (its shortest
    repr is the decimal the float stands for), an empty sum as the integer 0."""
    return number if isinstance(number, Decimal) else Decimal(repr(number))


class SnapshotRepo:
    """`balance_snapshots`: the readings history (forecasts; retention: services/history.py)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def burns(
        self, key_ids: Sequence[str], kind: str, since: datetime, until: datetime
    ) -> dict[str, tuple[int, datetime, datetime, Decimal, Decimal]]:
        """Per key with readings in [since, until]: (readings, first taken_at, last
        taken_at, last remaining, sum of the drops between consecutive readings) — what
        the forecast needs (bot/services/forecast.py `Burn`), in one query, by index.

        Readings are ordered by (taken_at, value), as Python sorts (time, value) pairs;
        rows that are not a plain bounded decimal are skipped (bot/storage/figure_sql.py),
        exactly as `Decimal(text)` + `figure_fault` skip them.
        The last value is exact (the stored text). The sum of drops is exact on
        PostgreSQL (numeric); on SQLite it is summed in floats: each drop is off by at
        most one float step of the balance (~1e-16 of it), so a forecast that matters
        (spending of at least a twelfth of the balance over the window, for 3 days left)
        moves by microseconds.
        """
        if not key_ids:
            return {}
        stmt = _burns_sql(self.s.bind.dialect.name)
        params = {"ids": list(key_ids), "kind": kind, "since": since, "until": until}
        return {
            row.key_id: (
                row.points,
                row.first_at,
                row.last_at,
                Decimal(row.last_value),
                _exact(row.spent),
            )
            for row in await self.s.execute(stmt, params)
        }

    async def prune(self, cutoff: datetime, oldest: datetime, max_recent: int) -> None:
        """Every key: drop readings older than `oldest`, keep a day's newest before
        `cutoff` and the newest `max_recent` after it."""
        await self.s.execute(_PRUNE, {"cutoff": cutoff, "oldest": oldest, "max_recent": max_recent})

    async def prune_some(
        self, key_ids: Sequence[str], since: datetime, cutoff: datetime, max_recent: int
    ) -> None:
        """The same thinning (not the expiry) for these keys' readings taken since `since`,
        by index (key_id, taken_at)."""
        await self.s.execute(
            _PRUNE_SOME,
            {"ids": list(key_ids), "since": since, "cutoff": cutoff, "max_recent": max_recent},
        )
