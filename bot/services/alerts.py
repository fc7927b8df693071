"""Scheduled alerts: per-key settings, the event state machine, and the sweep.

The sweep claims due keys with a lease (so replicas split the work and a crashed
process's keys come back after the lease), checks them through the billing service
(decrypting just in time, in bounded batches), and for each key commits in ONE
transaction: the new state-machine memory and an outbox row per event. A key whose
lease was lost meanwhile is rolled back, so an event is recorded exactly once.

State machine (memory is a JSON dict on `alert_state`):
- low-balance rungs: `fired` lists rungs below which the balance fell; a rung fires
  when the balance drops strictly below it and re-arms only once the balance is at
  least threshold + margin (hysteresis). All rungs re-armed after some fired → one
  "recovered" note. Unknown or unlimited balances never fire or re-arm anything.
- expiry: stage 0 → 1 (≤ 7 days) → 2 (≤ 1 day) → 3 (expired); a new expiry date
  (renewal) resets the stage.
- revoked: fires on the provider rejecting the key; a later success re-arms it.
- stale: transient failures start `failing_since`; after 24 h in a row, one event.
- forecast: runs out within 3 days at the recent burn rate; re-armed by a top-up
  or a forecast beyond 4.5 days.
A single failed check changes nothing but `failing_since`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, CheckOutcome, FigureKind, KeyState
from bot.billing.service import BillingService
from bot.clock import Clock
from bot.services import forecast
from bot.services.balances import record_rows
from bot.services.keys import KeyService
from bot.services.outbox import (
    OutboxService,
    enqueue,
    enqueue_many,
    instance_id,
    outbox_row,
)
from bot.storage.db import Database
from bot.storage.models import AlertPrefs, AlertState, ApiKey, BalanceSnapshot, UTCDateTime

log = logging.getLogger(__name__)

MAX_RUNGS = 5
MAX_AMOUNT = Decimal("1000000000")
EXPIRY_SOON = timedelta(days=7)
EXPIRY_VERY_SOON = timedelta(days=1)
STALE_AFTER = timedelta(hours=24)
FORECAST_DAYS = Decimal(3)
FORECAST_REARM_DAYS = Decimal("4.5")
MUTE_FOR = timedelta(hours=24)
SNAPSHOT_FULL = timedelta(days=2)  # keep every snapshot this long, then one per day
SNAPSHOT_MAX = 500  # per key
PRUNE_EVERY = timedelta(hours=1)

# event kinds (also the outbox `kind` and the renderer's switch)
LOW, RECOVERED, EXPIRES, EXPIRED, REVOKED, STALE, FORECAST, DIGEST = (
    "low",
    "recovered",
    "expires",
    "expired",
    "revoked",
    "stale",
    "forecast",
    "digest",
)


# -- thresholds ---------------------------------------------------------------------------

_SPEC = re.compile(r"^(\d{1,10}(?:[.,]\d{1,6})?)(%?)$")


class BadSpec(ValueError):
    """A threshold the user typed that we cannot use (the message names the token)."""


def parse_spec(token: str) -> str:
    """`50` → "50", `2.5%` → "2.5%": normalised text, or BadSpec."""
    m = _SPEC.match(token.strip())
    if not m:
        raise BadSpec(token)
    try:
        value = Decimal(m[1].replace(",", "."))
    except InvalidOperation:
        raise BadSpec(token) from None
    pct = bool(m[2])
    if value <= 0 or (pct and value >= 100) or value > MAX_AMOUNT:
        raise BadSpec(token)
    text_value = format(value.normalize(), "f")
    return f"{text_value}%" if pct else text_value


def parse_specs(tokens: Sequence[str]) -> list[str]:
    """A ladder: distinct rungs, highest first (amounts before percentages), at most 5."""
    specs = list(dict.fromkeys(parse_spec(t) for t in tokens))
    if not specs or len(specs) > MAX_RUNGS:
        raise BadSpec(" ".join(tokens))
    return sorted(specs, key=lambda s: (s.endswith("%"), -Decimal(s.rstrip("%"))))


def threshold_amount(spec: str, total: Decimal | None) -> Decimal | None:
    """The rung in money; a percentage needs the provider's total (else None)."""
    if spec.endswith("%"):
        if total is None or total <= 0:
            return None
        return total * Decimal(spec[:-1]) / 100
    return Decimal(spec)


def margin(threshold: Decimal) -> Decimal:
    """Hysteresis: how far above a rung the balance must climb before it re-arms."""
    return max(threshold * Decimal("0.05"), min(Decimal("0.5"), threshold * Decimal("0.1")))


# -- the state machine (pure) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Watch:
    thresholds: tuple[str, ...] = ()
    expiry_on: bool = True
    revoked_on: bool = True
    forecast_on: bool = True


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    tag: str  # makes the idempotency key unique per crossing
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Step:
    memory: dict[str, Any]
    failing_since: datetime | None
    events: list[Event]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _num(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _bump(memory: dict[str, Any], name: str) -> int:
    counters = dict(memory.get("n") or {})
    counters[name] = int(counters.get(name, 0)) + 1
    memory["n"] = counters
    return int(counters[name])


def evaluate(
    watch: Watch,
    memory: Mapping[str, Any],
    failing_since: datetime | None,
    outcome: CheckOutcome,
    history: Sequence[tuple[datetime, Decimal]],
    now: datetime,
) -> Step:
    """One check's outcome through the state machine: new memory and the events."""
    mem: dict[str, Any] = {k: v for k, v in memory.items()}
    events: list[Event] = []
    result = outcome.result
    if result is None:
        kind = outcome.error.kind if isinstance(outcome.error, BillingError) else None
        if kind is ErrorKind.KEY_REJECTED:
            if watch.revoked_on and not mem.get("rev"):
                mem["rev"] = True
                n = _bump(mem, "rev")
                events.append(Event(REVOKED, f"rev:{n}", {"at": _iso(now)}))
            return Step(mem, None, events)
        since = failing_since or now
        if now - since >= STALE_AFTER and not mem.get("stale"):
            mem["stale"] = True
            n = _bump(mem, "stale")
            err = kind.value if kind is not None else ErrorKind.PROVIDER_ERROR.value
            events.append(Event(STALE, f"stale:{n}", {"since": _iso(since), "error": err}))
        return Step(mem, since, events)

    mem["rev"] = False
    mem["stale"] = False
    figure = _figure(result)
    events += _low_balance(watch, mem, result, figure)
    if watch.expiry_on:
        events += _expiry(mem, result, now, figure)
    if watch.forecast_on:
        events += _forecast(mem, result, history, now, figure)
    return Step(mem, None, events)


def _figure(result: BalanceResult) -> dict[str, Any]:
    return {
        "remaining": _num(result.remaining),
        "total": _num(result.total),
        "currency": result.currency,
        "unit": _unit(result),
        "measured_at": _iso(result.fetched_at),
    }


def _unit(result: BalanceResult) -> str:
    """What the figure counts, for the renderer: points/characters, or a relay's raw unit."""
    if result.unit is not None:
        return result.unit.value
    return str(result.extras.get("unit", "")) if result.extras else ""


def _money_value(result: BalanceResult) -> Decimal | None:
    """The remaining balance when it is a real figure (not unknown, not unlimited)."""
    if result.kind is not FigureKind.BALANCE or result.unlimited:
        return None
    return result.remaining


def _low_balance(
    watch: Watch, mem: dict[str, Any], result: BalanceResult, figure: dict[str, Any]
) -> list[Event]:
    value = _money_value(result)
    fired = [r for r in mem.get("fired", []) if r in watch.thresholds]
    had_fired = bool(fired)
    if value is None:
        mem["fired"] = fired
        return []
    levels = {spec: threshold_amount(spec, result.total) for spec in watch.thresholds}
    # re-arm rungs the balance climbed back above (with hysteresis)
    fired = [
        r
        for r in fired
        if levels[r] is None or value <= levels[r] + margin(levels[r])  # type: ignore[operator]
    ]
    events: list[Event] = []
    crossed = [
        spec
        for spec, level in levels.items()
        if spec not in fired and level is not None and value < level
    ]
    if crossed:
        worst = min(crossed, key=lambda s: levels[s])  # type: ignore[arg-type,return-value]
        fired += crossed
        n = _bump(mem, "low")
        data = {**figure, "threshold": worst, "threshold_amount": _num(levels[worst])}
        events.append(Event(LOW, f"low:{worst}:{n}", data))
    elif had_fired and not fired:
        n = _bump(mem, "rec")
        events.append(Event(RECOVERED, f"rec:{n}", dict(figure)))
    mem["fired"] = fired
    return events


def _expiry(
    mem: dict[str, Any], result: BalanceResult, now: datetime, figure: dict[str, Any]
) -> list[Event]:
    exp = dict(mem.get("exp") or {"at": None, "stage": 0})
    at = result.expires_at
    expired = result.state is KeyState.EXPIRED or (at is not None and at <= now)
    if at is not None and _iso(at) != exp.get("at"):
        exp = {"at": _iso(at), "stage": 0}  # first seen, or renewed
    elif at is None and not expired and exp.get("stage"):
        exp = {"at": None, "stage": 0}  # renewed without a date
    if expired:
        target = 3
    elif at is not None and at - now <= EXPIRY_VERY_SOON:
        target = 2
    elif at is not None and at - now <= EXPIRY_SOON:
        target = 1
    else:
        target = 0
    events: list[Event] = []
    if target > int(exp.get("stage", 0)):
        exp["stage"] = target
        n = _bump(mem, "exp")
        kind = EXPIRED if target == 3 else EXPIRES
        data = {**figure, "expires_at": _iso(at), "stage": target}
        events.append(Event(kind, f"exp{target}:{(_iso(at) or 'na')[:10]}:{n}", data))
    mem["exp"] = exp
    return events


def _forecast(
    mem: dict[str, Any],
    result: BalanceResult,
    history: Sequence[tuple[datetime, Decimal]],
    now: datetime,
    figure: dict[str, Any],
) -> list[Event]:
    value = _money_value(result)
    if value is None:
        return []
    points = sorted([*history, (result.fetched_at, value)])
    previous = history[-1][1] if history else None
    if previous is not None and value > previous:  # a top-up: start afresh
        mem["fc"] = False
        return []
    when = forecast.runs_out_at(points, value, now)
    if when is None:
        return []
    days = Decimal((when - now).total_seconds()) / 86400
    if days > FORECAST_REARM_DAYS:
        mem["fc"] = False
        return []
    if days > FORECAST_DAYS or mem.get("fc") or value <= 0:
        return []
    mem["fc"] = True
    n = _bump(mem, "fc")
    return [Event(FORECAST, f"fc:{n}", {**figure, "runs_out_at": _iso(when)})]


# -- views for the UI ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyAlerts:
    key_id: str
    label: str
    hint: str
    provider: str
    thresholds: tuple[str, ...]
    expiry_on: bool
    revoked_on: bool
    forecast_on: bool
    muted_until: datetime | None
    last: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Prefs:
    instant: bool = True
    digest: bool = False
    paused: bool = False


@dataclass(slots=True)
class SweepStats:
    checked: int = 0
    events: int = 0
    lost_leases: int = 0
    batches: int = 0
    interrupted: bool = False  # stopped for shutdown; unchecked keys' leases handed back


@dataclass(slots=True)
class _Checked:
    """A batch between its checks and its write (the plaintext keys are gone by now)."""

    ids: list[str]
    outcomes: dict[str, CheckOutcome]
    names: dict[str, tuple[str, str, str]]  # key id → label, hint, provider (payloads)


def _ins(s: AsyncSession) -> Any:
    return postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert


class AlertService:
    """Everything about alerts that is not Telegram: settings, sweeps, leases, events."""

    def __init__(
        self,
        db: Database,
        keys: KeyService,
        billing: BillingService,
        outbox: OutboxService,
        *,
        interval: float = 3600.0,
        lease: float | None = None,
        batch_size: int = 500,
        pipeline: int = 2,
        clock: Clock | None = None,
        owner: str | None = None,
        record: bool = False,
    ) -> None:
        self.db = db
        self.keys = keys
        self.billing = billing
        self.outbox = outbox
        self.interval = timedelta(seconds=interval)
        # Long enough for a batch of slow checks; short enough that a crashed replica's
        # keys are picked up soon. Losing a lease costs a re-check, never a duplicate.
        self.lease = timedelta(seconds=lease or min(300.0, max(10.0, 3 * interval)))
        self.batch_size = batch_size
        self.pipeline = pipeline  # batches being checked at once while one is written
        self.clock = clock or db.clock
        self.owner = owner or instance_id()
        self.record = record  # also keep key_status + snapshots (as BalanceService.record)
        self._lock = asyncio.Lock()
        self._last_prune: datetime | None = None
        self._stopping = asyncio.Event()
        self.stop_grace = 10.0  # seconds in-flight checks may take once shutdown begins

    def request_stop(self) -> None:
        """Shutdown: finish (or abandon) the current batch, claim no more."""
        self._stopping.set()

    async def release(self, key_ids: Sequence[str]) -> None:
        """Hand leases back so another replica (or the restarted process) checks at once."""
        t = AlertState.__table__
        async with self.db.session() as s:
            await s.execute(
                update(t)
                .where(t.c.key_id.in_(list(key_ids)), t.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )

    # -- settings ---------------------------------------------------------------------

    async def _state(self, s: AsyncSession, key: ApiKey, now: datetime) -> AlertState:
        state = await s.get(AlertState, key.id)
        if state is None:
            await s.execute(
                _ins(s)(AlertState)
                .values(**self._defaults(key.id, key.owner_id, now))
                .on_conflict_do_nothing(index_elements=["key_id"])
            )
            state = await s.get(AlertState, key.id)
            assert state is not None
        return state

    @staticmethod
    def _defaults(key_id: str, owner_id: int, now: datetime) -> dict[str, Any]:
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

    async def overview(self, owner_id: int) -> tuple[list[KeyAlerts], Prefs]:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(ApiKey, AlertState)
                    .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                    .where(ApiKey.owner_id == owner_id)
                    .order_by(ApiKey.created_at, ApiKey.label)
                )
            ).all()
            prefs = await s.get(AlertPrefs, owner_id)
        views = [self._view(key, st) for key, st in rows]
        return views, self._prefs(prefs)

    async def get(self, owner_id: int, key_id: str) -> KeyAlerts | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(ApiKey, AlertState)
                    .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                    .where(ApiKey.owner_id == owner_id, ApiKey.id == key_id)
                )
            ).first()
        return None if row is None else self._view(row[0], row[1])

    @staticmethod
    def _view(key: ApiKey, st: AlertState | None) -> KeyAlerts:
        if st is None:
            return KeyAlerts(
                key.id, key.label, key.hint, key.provider, (), True, True, True, None, None
            )
        return KeyAlerts(
            key.id,
            key.label,
            key.hint,
            key.provider,
            tuple(st.thresholds or ()),
            st.expiry_on,
            st.revoked_on,
            st.forecast_on,
            st.muted_until,
            dict(st.last) if st.last else None,
        )

    @staticmethod
    def _prefs(prefs: AlertPrefs | None) -> Prefs:
        if prefs is None:
            return Prefs()
        return Prefs(prefs.instant, prefs.digest, prefs.paused_at is not None)

    async def _update_keys(
        self, owner_id: int, key_ids: Sequence[str] | None, **values: Any
    ) -> list[str]:
        """Apply `values` to the owner's keys (all when key_ids is None); labels changed."""
        now = self.clock()
        async with self.db.session() as s:
            stmt = select(ApiKey).where(ApiKey.owner_id == owner_id)
            if key_ids is not None:
                stmt = stmt.where(ApiKey.id.in_(list(key_ids)))
            keys = (await s.scalars(stmt.order_by(ApiKey.created_at, ApiKey.label))).all()
            for key in keys:
                st = await self._state(s, key, now)
                for name, value in values.items():
                    setattr(st, name, value)
            return [k.label for k in keys]

    async def set_thresholds(
        self, owner_id: int, key_ids: Sequence[str] | None, specs: Sequence[str]
    ) -> list[str]:
        return await self._update_keys(owner_id, key_ids, thresholds=list(specs), forecast_on=True)

    async def turn_off(self, owner_id: int, key_ids: Sequence[str] | None) -> list[str]:
        """Low-balance and forecast off; expiry and revoked warnings stay (they are defaults)."""
        return await self._update_keys(owner_id, key_ids, thresholds=[], forecast_on=False)

    async def mute(self, owner_id: int, key_id: str, until: datetime | None) -> bool:
        return bool(await self._update_keys(owner_id, [key_id], muted_until=until))

    async def _prefs_row(self, s: AsyncSession, user_id: int) -> AlertPrefs:
        await s.execute(
            _ins(s)(AlertPrefs)
            .values(user_id=user_id, instant=True, digest=False, digest_hour=9)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        prefs = await s.get(AlertPrefs, user_id, populate_existing=True)
        assert prefs is not None
        return prefs

    async def set_delivery(
        self, user_id: int, *, digest: bool | None = None, instant: bool | None = None
    ) -> Prefs:
        async with self.db.session() as s:
            prefs = await self._prefs_row(s, user_id)
            if digest is not None:
                prefs.digest = digest
            if instant is not None:
                prefs.instant = instant
            return self._prefs(prefs)

    async def seen(self, user_id: int, lang: str) -> bool:
        """The user talked to the bot: remember their language, resume paused alerts.

        One primary-key read per update; a write only when something changed.
        """
        async with self.db.session() as s:
            prefs = await s.get(AlertPrefs, user_id)
            if prefs is not None and prefs.lang == lang and prefs.paused_at is None:
                return False
            prefs = await self._prefs_row(s, user_id)
            prefs.lang = lang
            paused = prefs.paused_at is not None
        if paused:
            return await self.outbox.resume_user(user_id)
        return False

    # -- the sweep -------------------------------------------------------------------------

    async def ensure_rows(self, now: datetime | None = None, *, chunk: int = 5000) -> int:
        """Every key gets its alert_state row (defaults: expiry + revoked on), due now.

        In chunks by key id, so a first start with 100k keys never holds them all in memory.
        """
        now = now or self.clock()
        added = 0
        after = ""
        while True:
            async with self.db.session() as s:
                page = (
                    await s.execute(
                        select(ApiKey.id, ApiKey.owner_id)
                        .where(
                            ApiKey.id > after,
                            ~select(AlertState.key_id)
                            .where(AlertState.key_id == ApiKey.id)
                            .exists(),
                        )
                        .order_by(ApiKey.id)
                        .limit(chunk)
                    )
                ).all()
            if not page:
                return added
            after = page[-1][0]
            await self._insert_rows([self._defaults(k, o, now) for k, o in page])
            added += len(page)

    async def _insert_rows(self, values: list[dict[str, Any]]) -> None:
        try:
            async with self.db.session() as s:
                await s.execute(
                    _ins(s)(AlertState).on_conflict_do_nothing(index_elements=["key_id"]),
                    values,
                )
        except IntegrityError:  # a key deleted meanwhile: go one by one
            for value in values:
                try:
                    async with self.db.session() as s:
                        await s.execute(
                            _ins(s)(AlertState)
                            .values(**value)
                            .on_conflict_do_nothing(index_elements=["key_id"])
                        )
                except IntegrityError:
                    pass

    async def claim(
        self,
        now: datetime,
        limit: int,
        key_ids: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[str]:
        """Lease due keys: SKIP LOCKED on PostgreSQL, a compare-and-set UPDATE on both."""
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
            .values(lease_owner=self.owner, lease_until=now + self.lease)
            .returning(t.c.key_id)
        )
        async with self.db.session() as s:
            return list((await s.scalars(stmt)).all())

    async def sweep(
        self, now: datetime | None = None, *, max_batches: int | None = None
    ) -> SweepStats:
        """Check every key due at the start, batch by batch. Never runs twice at once.

        Keys that fall due while it runs wait for the next sweep, so a sweep always ends;
        nothing is lost when a tick is skipped, because "due" lives in the database.
        Up to `pipeline` batches are being checked while the previous one is written,
        so the network never waits for the database (and memory stays bounded).
        """
        stats = SweepStats()
        async with self._lock:
            fixed = now
            start = now or self.clock()
            await self.ensure_rows(start)
            checking: deque[asyncio.Task[_Checked | None]] = deque()
            writing: asyncio.Task[list[CheckOutcome]] | None = None
            more = True
            try:
                while True:
                    while more and len(checking) < self.pipeline:
                        if max_batches is not None and stats.batches >= max_batches:
                            more = False
                            break
                        if self._stopping.is_set():
                            stats.interrupted = True
                            more = False
                            break
                        ids = await self.claim(fixed or self.clock(), self.batch_size, due_by=start)
                        if not ids:
                            more = False
                            break
                        stats.batches += 1
                        checking.append(asyncio.ensure_future(self._check(ids)))
                        if len(ids) < self.batch_size:
                            more = False
                    if not checking:
                        break
                    batch = await checking.popleft()
                    if writing is not None:
                        await writing
                        writing = None
                    if batch is None:  # shutdown: its leases are handed back already
                        stats.interrupted = True
                        more = False
                        continue  # batches still in flight are written or handed back too
                    writing = asyncio.ensure_future(
                        self._write(batch, fixed or self.clock(), stats)
                    )
            finally:
                if checking:  # only after an error: let them finish or hand their keys back
                    self.request_stop()
                    await asyncio.gather(*checking, return_exceptions=True)
                if writing is not None:
                    await writing
            if self._last_prune is None or start - self._last_prune >= PRUNE_EVERY:
                self._last_prune = start
                await self.prune(start)
        return stats

    async def check_now(self, owner_id: int, key_id: str) -> CheckOutcome | None:
        """A user-requested check that runs through the same state machine as the sweep.

        None when the key is not the owner's or another check holds its lease right now.
        """
        now = self.clock()
        async with self.db.session() as s:
            key = await s.scalar(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
            )
            if key is None:
                return None
            await self._state(s, key, now)
        if not await self.claim(now, 1, [key_id]):
            return None
        batch = await self._check([key_id])
        if batch is None:
            return None  # shutting down
        done = await self._write(batch, self.clock(), SweepStats())
        return done[0] if done else None

    async def _fetch_or_stop(
        self, ids: Sequence[str], readable: list[Any]
    ) -> list[CheckOutcome] | None:
        """fetch_many, unless shutdown begins and the checks outlast the grace period."""
        fetch = asyncio.ensure_future(self.billing.fetch_many(readable, use_cache=False))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                await asyncio.wait({fetch}, timeout=self.stop_grace)
            if fetch.done():
                return fetch.result()
        finally:
            stop.cancel()
        fetch.cancel()
        await asyncio.gather(fetch, return_exceptions=True)
        await self.release(ids)
        log.info("shutdown: %d keys left unchecked, leases handed back", len(ids))
        return None

    async def _check(self, ids: Sequence[str]) -> _Checked | None:
        """Decrypt and check a leased batch; None when shutdown abandoned it (leases freed)."""
        async with self.db.session() as s:
            rows = (await s.scalars(select(ApiKey).where(ApiKey.id.in_(list(ids))))).all()
            s.expunge_all()
        names = {r.id: (r.label, r.hint, r.provider) for r in rows}
        # Decrypt just in time; the plaintext lives only in this list, for this call.
        requests = [(r, self.keys.request_for(r)) for r in rows]
        readable = [req for _, req in requests if req is not None]
        fetched = await self._fetch_or_stop(ids, readable)
        if fetched is None:
            return None
        outcomes = {o.key_id: o for o in fetched}
        for row, req in requests:
            if req is None:
                err = BillingError(ErrorKind.UNREADABLE, "cannot decrypt")
                outcomes[row.id] = CheckOutcome(row.id, row.provider, error=err)
        return _Checked(list(ids), outcomes, names)

    async def _write(self, batch: _Checked, now: datetime, stats: SweepStats) -> list[CheckOutcome]:
        """The whole batch in ONE transaction: state, outbox rows, key_status, snapshots.

        It first locks the batch's `alert_state` rows that this process still leases
        (FOR UPDATE on PostgreSQL; on SQLite the first write takes the database's write
        lock), reading their state under that lock. A key whose lease was lost is left
        alone — no state, no outbox row, no status — so its new lease holder records
        each event exactly once.
        """
        t = AlertState.__table__
        cols = (
            t.c.key_id,
            t.c.owner_id,
            t.c.thresholds,
            t.c.expiry_on,
            t.c.revoked_on,
            t.c.forecast_on,
            t.c.muted_until,
            t.c.memory,
            t.c.failing_since,
            t.c.last,
        )
        mine = t.c.key_id.in_(batch.ids) & (t.c.lease_owner == self.owner)
        done: list[CheckOutcome] = []
        async with self.db.session() as s:
            if s.bind.dialect.name == "postgresql":
                lock: Any = select(*cols).where(mine).order_by(t.c.key_id).with_for_update()
            else:
                lock = update(t).where(mine).values(lease_owner=t.c.lease_owner).returning(*cols)
            states = [st for st in (await s.execute(lock)).all() if st.key_id in batch.outcomes]
            stats.lost_leases += len(batch.ids) - len(states)
            if not states:
                return done
            owners = {st.owner_id for st in states}
            instant: dict[int, bool] = dict(
                (
                    await s.execute(
                        select(AlertPrefs.user_id, AlertPrefs.instant).where(
                            AlertPrefs.user_id.in_(owners)
                        )
                    )
                ).all()
            )
            need_history = [
                st.key_id
                for st in states
                if st.forecast_on
                and (res := batch.outcomes[st.key_id].result) is not None
                and _money_value(res) is not None
            ]
            history = await self._histories(s, need_history, now)
            changes: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for st in states:
                outcome = batch.outcomes[st.key_id]
                watch = Watch(
                    tuple(st.thresholds or ()), st.expiry_on, st.revoked_on, st.forecast_on
                )
                step = evaluate(
                    watch,
                    dict(st.memory or {}),
                    st.failing_since,
                    outcome,
                    history.get(st.key_id, ()),
                    now,
                )
                stats.events += len(step.events)
                notify = instant.get(st.owner_id, True) and not (
                    st.muted_until is not None and st.muted_until > now
                )
                if notify:  # else recorded in memory, not notified: the user chose so
                    label, hint, provider = batch.names[st.key_id]
                    extra = {"label": label, "hint": hint, "provider": provider}
                    events += [
                        outbox_row(
                            idem_key=f"{st.key_id}:{event.tag}",
                            user_id=st.owner_id,
                            key_id=st.key_id,
                            kind=event.kind,
                            payload={**event.data, **extra},
                            now=now,
                        )
                        for event in step.events
                    ]
                last = st.last
                if outcome.result is not None:
                    last = {**_figure(outcome.result), "state": outcome.result.state.value}
                changes.append(
                    {"k": st.key_id, "m": step.memory, "f": step.failing_since, "l": last}
                )
                done.append(outcome)
            await s.execute(
                update(t)
                .where(t.c.key_id == bindparam("k"), t.c.lease_owner == self.owner)
                .values(
                    memory=bindparam("m"),
                    failing_since=bindparam("f"),
                    last=bindparam("l"),
                    checked_at=now,
                    next_check_at=now + self.interval,
                    lease_owner=None,
                    lease_until=None,
                ),
                changes,
            )
            await enqueue_many(s, events)
            if self.record is not None:
                owner_of = {st.key_id: st.owner_id for st in states}
                await record_rows(s, [(owner_of[o.key_id], o) for o in done], now)
        stats.checked += len(done)
        return done

    @staticmethod
    async def _histories(
        s: AsyncSession, key_ids: Sequence[str], now: datetime
    ) -> dict[str, list[tuple[datetime, Decimal]]]:
        """Recent balance readings of these keys (one query), oldest first, per key."""
        out: dict[str, list[tuple[datetime, Decimal]]] = {}
        if not key_ids:
            return out
        b = BalanceSnapshot.__table__
        rows = await s.execute(
            select(b.c.key_id, b.c.taken_at, b.c.remaining)
            .where(
                b.c.key_id.in_(list(key_ids)),
                b.c.kind == FigureKind.BALANCE.value,
                b.c.taken_at >= now - forecast.WINDOW,
                b.c.taken_at <= now,
                b.c.remaining.is_not(None),
            )
            .order_by(b.c.key_id, b.c.taken_at)
        )
        for key_id, taken, remaining in rows:
            try:
                out.setdefault(key_id, []).append((taken, Decimal(remaining)))
            except InvalidOperation:
                continue
        return out

    # -- digest --------------------------------------------------------------------------

    async def enqueue_digests(self, now: datetime | None = None) -> int:
        """Once per local day (from `digest_hour`), one digest row per user who wants it."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from bot.storage.models import User

        now = now or self.clock()
        queued = 0
        async with self.db.session() as s:
            users = (
                await s.execute(
                    select(AlertPrefs, User.timezone)
                    .join(User, User.id == AlertPrefs.user_id)
                    .where(AlertPrefs.digest.is_(True))
                )
            ).all()
        for prefs, tz_name in users:
            try:
                tz = ZoneInfo(tz_name or "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                tz = ZoneInfo("UTC")
            local = now.astimezone(tz)
            day = local.date().isoformat()
            if local.hour < prefs.digest_hour or prefs.digest_last == day:
                continue
            async with self.db.session() as s:
                t = AlertPrefs.__table__
                claimed = await s.execute(
                    update(t)
                    .where(
                        t.c.user_id == prefs.user_id,
                        or_(t.c.digest_last.is_(None), t.c.digest_last != day),
                    )
                    .values(digest_last=day)
                )
                if not claimed.rowcount:  # type: ignore[attr-defined]
                    continue  # another replica did it
                rows = (
                    await s.execute(
                        select(ApiKey.id, ApiKey.label, ApiKey.hint, AlertState.last)
                        .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                        .where(ApiKey.owner_id == prefs.user_id)
                        .order_by(ApiKey.created_at, ApiKey.label)
                    )
                ).all()
                if not rows:
                    continue
                items = [
                    {"label": label, "hint": hint, **(last or {})} for _, label, hint, last in rows
                ]
                await enqueue(
                    s,
                    idem_key=f"digest:{prefs.user_id}:{day}",
                    user_id=prefs.user_id,
                    key_id=None,
                    kind=DIGEST,
                    payload={"day": day, "keys": items},
                    now=now,
                )
                queued += 1
        return queued

    # -- housekeeping ----------------------------------------------------------------------

    async def prune(self, now: datetime) -> None:
        """Thin snapshots with age (all for 2 days, then the last per day, max per key)."""
        stmt = text(
            "DELETE FROM balance_snapshots WHERE id IN ("
            " SELECT id FROM ("
            "  SELECT id, taken_at,"
            "   ROW_NUMBER() OVER (PARTITION BY key_id, date(taken_at)"
            "    ORDER BY taken_at DESC) AS day_rank,"
            "   ROW_NUMBER() OVER (PARTITION BY key_id ORDER BY taken_at DESC) AS age_rank"
            "  FROM balance_snapshots) ranked"
            " WHERE (ranked.taken_at < :cutoff AND ranked.day_rank > 1)"
            "  OR ranked.age_rank > :max_n)"
        ).bindparams(bindparam("cutoff", type_=UTCDateTime()), bindparam("max_n"))
        try:
            async with self.db.session() as s:
                await s.execute(stmt, {"cutoff": now - SNAPSHOT_FULL, "max_n": SNAPSHOT_MAX})
            await self.outbox.prune(now)
        except Exception:
            log.exception("pruning alert data failed")
