"""A key's readings over time: pace, spend per period, chart series, export rows.

Every successful check leaves a row in `balance_snapshots` (services/balances.py), and the
alert sweep checks every key at ALERT_INTERVAL_SECONDS, so this is the bot's memory of
where the money went. Rules kept here, in one place:

- Pace ("≈ $1.20/day · lasts ~9 days") uses the forecast's rules (bot/services/forecast.py):
  only spending counts (a rise is a top-up), and too little history gives no pace at
  all — never a guess from two readings.
- Spent in a period is the sum of the drops between consecutive readings; a rise is a
  top-up, marked, never subtracted. Readings older than two days are thinned to one per
  day, so spending and a top-up within the same old day partly cancel: an honest lower
  bound, not an invention.
- Retention (`prune_snapshots`): every reading for two days (at most 500 per key), then
  the last reading of each day for 400 days, so 90-day charts keep 90 daily points even
  with a short sweep interval.

Money stays Decimal; charts get floats only at the drawing boundary (bot/charts.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bot.billing.models import FigureKind, Window, WindowState, figure_fault
from bot.services import forecast
from bot.services.balances import window_from_json
from bot.storage.models import ApiKey, BalanceSnapshot
from bot.storage.repositories import SnapshotRepo

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.storage.db import Database

#: Retention of snapshots (see the module docstring).
KEEP_ALL_FOR = timedelta(days=2)
KEEP_RECENT_MAX = 500  # per key, within KEEP_ALL_FOR
KEEP_DAILY_FOR = timedelta(days=400)

#: A chart needs at least this many readings of a key, spanning at least CHART_MIN_SPAN.
CHART_MIN_POINTS = 2
CHART_MIN_SPAN = timedelta(hours=1)

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
DEFAULT_PERIOD = "30d"


# -- readings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored reading of one key. `None` figures mean "not said", never zero."""

    key_id: str
    taken_at: datetime
    kind: str
    currency: str | None
    unit: str | None
    remaining: Decimal | None
    total: Decimal | None
    used: Decimal | None
    windows: tuple[Window, ...] = ()

    @property
    def measure(self) -> tuple[str, str | None, str | None]:
        """What `remaining` counts: readings are comparable only with the same measure."""
        return (self.kind, (self.currency or "").upper() or None, self.unit)

    @property
    def is_balance(self) -> bool:
        return self.kind == FigureKind.BALANCE.value and self.remaining is not None


def _dec(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if figure_fault(number) is None else None  # rows from before the bound


def _windows(data: Any) -> tuple[Window, ...]:
    if not isinstance(data, list):
        return ()
    out: list[Window] = []
    for item in data[:24]:
        try:
            out.append(window_from_json(item))
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    return tuple(out)


def _reading(row: Any) -> Reading:
    return Reading(
        key_id=row.key_id,
        taken_at=row.taken_at,
        kind=row.kind,
        currency=row.currency,
        unit=row.unit,
        remaining=_dec(row.remaining),
        total=_dec(row.total),
        used=_dec(row.used),
        windows=_windows(row.windows),
    )


# -- pace, spend, top-ups (pure) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pace:
    """Spending per day at the recent rate, and when the balance runs out at it."""

    per_day: Decimal
    remaining: Decimal
    currency: str | None
    unit: str | None
    runs_out_at: datetime | None  # None: beyond ten years, or already at zero


def balance_points(readings: Sequence[Reading]) -> list[tuple[datetime, Decimal]]:
    """(time, remaining) of the balance readings that share the latest one's measure."""
    balances = [r for r in readings if r.is_balance]
    if not balances:
        return []
    measure = balances[-1].measure
    return [(r.taken_at, r.remaining) for r in balances if r.measure == measure]  # type: ignore[misc]


def pace(readings: Sequence[Reading], now: datetime) -> Pace | None:
    """The forecast's pace over its window (bot/services/forecast.py), or None when there is
    too little history: three readings over six hours at least, and some spending."""
    balances = [r for r in readings if r.is_balance and r.taken_at <= now]
    if not balances:
        return None
    latest = balances[-1]
    points = [(t, v) for t, v in balance_points(balances) if t >= now - forecast.WINDOW]
    burn = forecast.burn_of(points)
    rate = forecast.burn_per_day(burn)
    if rate is None or latest.remaining is None:
        return None
    return Pace(
        per_day=rate,
        remaining=latest.remaining,
        currency=latest.currency,
        unit=latest.unit,
        runs_out_at=forecast.runs_out_at(burn, latest.remaining, now),
    )


def spent(points: Sequence[tuple[datetime, Decimal]]) -> Decimal:
    """The sum of drops between consecutive readings (top-ups add nothing)."""
    return sum((max(Decimal(0), a[1] - b[1]) for a, b in itertools.pairwise(points)), Decimal(0))


def top_ups(points: Sequence[tuple[datetime, Decimal]]) -> list[tuple[datetime, Decimal, Decimal]]:
    """(time, amount added, balance after) for every rise between consecutive readings."""
    return [(b[0], b[1] - a[1], b[1]) for a, b in itertools.pairwise(points) if b[1] > a[1]]


def chartable(times: Sequence[datetime]) -> bool:
    return len(times) >= CHART_MIN_POINTS and times[-1] - times[0] >= CHART_MIN_SPAN


# -- what a chart and its caption need -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    label: str
    provider: str


@dataclass(frozen=True, slots=True)
class BalanceSeries:
    """One key's balance line in a period, with everything the caption says about it."""

    key: KeyInfo
    currency: str | None
    unit: str | None
    points: list[tuple[datetime, Decimal]]
    top_ups: list[tuple[datetime, Decimal, Decimal]]
    spent: Decimal
    per_day: Decimal | None  # average over the period (forecast rules), None if too little
    pace: Pace | None
    thresholds: list[Decimal] = field(default_factory=list)

    @property
    def group(self) -> str:
        """Lines are drawn together when they count the same thing."""
        return self.unit or (self.currency or "").upper() or "?"


@dataclass(frozen=True, slots=True)
class WindowSeries:
    """One plan window of one key: its used share (0-100) over the period."""

    key: KeyInfo
    name: str
    points: list[tuple[datetime, Decimal]]
    latest: Window


@dataclass(frozen=True, slots=True)
class Waiting:
    """A key without enough history for a chart: how much it has, and when that changes."""

    key: KeyInfo
    readings: int  # in the period
    last_at: datetime | None  # the latest reading at all (maybe before the period)
    possible_at: datetime  # roughly: after the next scheduled check


@dataclass(frozen=True, slots=True)
class History:
    since: datetime
    now: datetime
    balances: list[BalanceSeries]
    windows: list[WindowSeries]
    waiting: list[Waiting]
    no_figures: list[KeyInfo]  # spend-only or validity-only keys: nothing to chart, ever

    def groups(self) -> dict[str, list[BalanceSeries]]:
        out: dict[str, list[BalanceSeries]] = {}
        for series in self.balances:
            out.setdefault(series.group, []).append(series)
        return out


ThresholdAmount = Callable[[str, Decimal | None], Decimal | None]


def build_history(
    keys: Sequence[KeyInfo],
    readings: Mapping[str, Sequence[Reading]],
    *,
    since: datetime,
    now: datetime,
    interval: timedelta,
    thresholds: Mapping[str, Sequence[str]] | None = None,
    threshold_amount: ThresholdAmount | None = None,
) -> History:
    """Series for `keys` from their readings (all of them, oldest first; the period's
    part is charted, the recent part gives the pace)."""
    balances: list[BalanceSeries] = []
    windows: list[WindowSeries] = []
    waiting: list[Waiting] = []
    no_figures: list[KeyInfo] = []
    for key in keys:
        mine = [r for r in readings.get(key.id, ()) if r.taken_at <= now]
        period = [r for r in mine if r.taken_at >= since]
        drawn = False
        points = balance_points(period)
        if points and chartable([t for t, _ in points]):
            latest = next(r for r in reversed(period) if r.is_balance)
            specs = (thresholds or {}).get(key.id, ())
            levels = []
            if threshold_amount is not None:
                levels = [
                    a for a in (threshold_amount(s, latest.total) for s in specs) if a is not None
                ]
            balances.append(
                BalanceSeries(
                    key=key,
                    currency=(latest.currency or "").upper() or None,
                    unit=latest.unit,
                    points=points,
                    top_ups=top_ups(points),
                    spent=spent(points),
                    per_day=forecast.burn_per_day(forecast.burn_of(points)),
                    pace=pace(mine, now),
                    thresholds=sorted(set(levels), reverse=True),
                )
            )
            drawn = True
        for name, series in _window_series(period).items():
            if chartable([t for t, _ in series[0]]):
                windows.append(WindowSeries(key, name, series[0], series[1]))
                drawn = True
        if drawn:
            continue
        if mine and not (mine[-1].is_balance or mine[-1].windows):
            no_figures.append(key)
        else:
            last_at = mine[-1].taken_at if mine else None
            waiting.append(_waiting(key, period, last_at, interval, now))
    return History(since, now, balances, windows, waiting, no_figures)


def _window_series(
    readings: Sequence[Reading],
) -> dict[str, tuple[list[tuple[datetime, Decimal]], Window]]:
    out: dict[str, tuple[list[tuple[datetime, Decimal]], Window]] = {}
    for r in readings:
        for w in r.windows:
            pct = w.percent_used
            if pct is None or w.state is WindowState.UNLIMITED:
                continue
            points, _ = out.get(w.name, ([], w))
            points.append((r.taken_at, pct))
            out[w.name] = (points, w)
    return out


def _waiting(
    key: KeyInfo,
    period: Sequence[Reading],
    last_at: datetime | None,
    interval: timedelta,
    now: datetime,
) -> Waiting:
    """When a chart becomes possible: a second reading, CHART_MIN_SPAN after the first."""
    if not period:
        return Waiting(key, 0, last_at, now + interval)
    first, last = period[0].taken_at, period[-1].taken_at
    possible = max(first + CHART_MIN_SPAN, last + interval, now)
    return Waiting(key, len(period), last_at, possible)


# -- export -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One stored reading as /export writes it: no key material, not even a hint."""

    label: str
    provider: str
    reading: Reading


# -- the service --------------------------------------------------------------------------


class HistoryService:
    """Reads snapshots for one owner at a time (every query is scoped by owner_id)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def readings(
        self,
        owner_id: int,
        key_ids: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> dict[str, list[Reading]]:
        """Readings per key id, oldest first."""
        b = BalanceSnapshot.__table__
        stmt = (
            select(b)
            .join(ApiKey.__table__, ApiKey.id == b.c.key_id)
            .where(ApiKey.owner_id == owner_id)
            .order_by(b.c.key_id, b.c.taken_at, b.c.id)
        )
        if key_ids is not None:
            stmt = stmt.where(b.c.key_id.in_(list(key_ids)))
        if since is not None:
            stmt = stmt.where(b.c.taken_at >= since)
        out: dict[str, list[Reading]] = {}
        async with self.db.session() as s:
            for row in await s.execute(stmt):
                out.setdefault(row.key_id, []).append(_reading(row))
        return out

    async def paces(
        self, owner_id: int, key_ids: Sequence[str] | None = None, now: datetime | None = None
    ) -> dict[str, Pace]:
        """The pace of each key that has enough recent history (others are absent)."""
        now = now or self.db.clock()
        found = await self.readings(owner_id, key_ids, since=now - forecast.WINDOW)
        out: dict[str, Pace] = {}
        for key_id, readings in found.items():
            p = pace(readings, now)
            if p is not None:
                out[key_id] = p
        return out

    async def history(
        self,
        owner_id: int,
        keys: Sequence[KeyInfo],
        days: int,
        *,
        interval: timedelta,
        thresholds: Mapping[str, Sequence[str]] | None = None,
        threshold_amount: ThresholdAmount | None = None,
        now: datetime | None = None,
    ) -> History:
        now = now or self.db.clock()
        since = now - timedelta(days=days)
        start = min(since, now - forecast.WINDOW)
        found = await self.readings(owner_id, [k.id for k in keys], since=start)
        return build_history(
            keys,
            found,
            since=since,
            now=now,
            interval=interval,
            thresholds=thresholds,
            threshold_amount=threshold_amount,
        )

    async def export(self, owner_id: int) -> list[ExportRow]:
        """Every stored reading of the owner's keys, by key then time."""
        b = BalanceSnapshot.__table__
        stmt = (
            select(b, ApiKey.label, ApiKey.provider)
            .join(ApiKey.__table__, ApiKey.id == b.c.key_id)
            .where(ApiKey.owner_id == owner_id)
            .order_by(ApiKey.created_at, ApiKey.label, b.c.taken_at, b.c.id)
        )
        async with self.db.session() as s:
            rows = (await s.execute(stmt)).all()
        return [ExportRow(row.label, row.provider, _reading(row)) for row in rows]


# -- retention ----------------------------------------------------------------------------


async def prune_recent(
    s: AsyncSession, key_ids: Sequence[str], since: datetime, now: datetime
) -> None:
    """The retention policy for these keys' snapshots taken at or after `since`, by index
    (key_id, taken_at) — what the sweep runs for each batch it writes, so its cost follows
    the keys checked, not the size of the history (issue 17 item 3).

    Equivalent to `prune_snapshots` on that part of the history: `since` only cuts days
    from below, and a day's newest reading (the one it keeps) is always in the part seen;
    every reading newer than the cutoff is seen. Readings that aged past the cutoff since
    the keys' previous prune are covered when `since` <= previous check - KEEP_ALL_FOR.
    The 400-day expiry is left to `prune_snapshots` (the sweep runs it once a day).
    """
    if not key_ids:
        return
    await SnapshotRepo(s).prune_some(key_ids, since, now - KEEP_ALL_FOR, KEEP_RECENT_MAX)


async def prune_snapshots(s: AsyncSession, now: datetime) -> None:
    """Apply the retention policy to every key's snapshots, in the caller's transaction."""
    await SnapshotRepo(s).prune(now - KEEP_ALL_FOR, now - KEEP_DAILY_FOR, KEEP_RECENT_MAX)
