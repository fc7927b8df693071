"""Balance checks as the UI needs them: every key at once, remembered per key.

A failed check is only useful next to the last figure that worked, so each outcome
is recorded in `key_status`; each new successful reading also becomes a row in
`balance_snapshots` (the alerts feature forecasts burn rate from them). Manual checks
ask the providers afresh (no remembered result: the user may just have topped up) and
are rate-limited per user (docs/security.md §T13): past the limit the stored results are
served instead, with their age, and no provider is contacted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import (
    BalanceResult,
    CheckOutcome,
    FigureKind,
    KeyRequest,
    KeyState,
    Unit,
    Window,
    WindowState,
)
from bot.storage.models import ApiKey, KeyStatus
from bot.storage.repositories import STATUS_EMPTY, KeyStatusRepo

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.billing.service import BillingService
    from bot.services.keys import KeyService, KeyView
    from bot.storage.db import Database

log = logging.getLogger(__name__)

MANUAL_CHECKS_PER_MINUTE = 10


# -- BalanceResult <-> JSON ---------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def result_to_json(result: BalanceResult) -> dict[str, Any]:
    """Exact and portable: Decimals and datetimes as strings, enums as values."""
    out = {f.name: _jsonable(getattr(result, f.name)) for f in fields(result)}
    out["windows"] = [window_to_json(w) for w in result.windows]
    return out


def window_to_json(window: Window) -> dict[str, Any]:
    """A window as JSON: Decimals as exact text, the period in whole seconds."""
    out = {f.name: _jsonable(getattr(window, f.name)) for f in fields(window)}
    out["period"] = None if window.period is None else int(window.period.total_seconds())
    return out


def window_from_json(data: Mapping[str, Any]) -> Window:
    """The stored window; raises (ValueError, KeyError, TypeError) if it is unusable."""
    period = data.get("period")
    return Window(
        name=str(data["name"]),
        used=_dec(data.get("used")),
        limit=_dec(data.get("limit")),
        used_pct=_dec(data.get("used_pct")),
        unit=Unit(data.get("unit", Unit.PERCENT.value)),
        currency=data.get("currency"),
        resets_at=_dt(data.get("resets_at")),
        period=None if period is None else timedelta(seconds=int(period)),
        state=WindowState(data.get("state", WindowState.OK.value)),
    )


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _dt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def result_from_json(
    data: Mapping[str, Any], stored_at: datetime | None = None
) -> BalanceResult | None:
    """The stored result, or None if the row is unusable (never a made-up figure).

    `stored_at` (the row's last_ok_at) stands in for a reading time the JSON lacks.
    """
    try:
        return BalanceResult(
            provider=str(data["provider"]),
            kind=FigureKind(data["kind"]),
            currency=data.get("currency"),
            remaining=_dec(data.get("remaining")),
            total=_dec(data.get("total")),
            used=_dec(data.get("used")),
            unlimited=bool(data.get("unlimited", False)),
            expires_at=_dt(data.get("expires_at")),
            never_expires=bool(data.get("never_expires", False)),
            state=KeyState(data.get("state", "ok")),
            period_start=_dt(data.get("period_start")),
            estimate=bool(data.get("estimate", False)),
            extras=dict(data.get("extras") or {}),
            fetched_at=_dt(data.get("fetched_at")) or stored_at,
            unit=Unit(data["unit"]) if data.get("unit") else None,
            windows=tuple(window_from_json(w) for w in data.get("windows") or ()),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


# -- what the UI gets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """A key's `key_status` row, decoded."""

    key_id: str
    last_result: BalanceResult | None
    last_ok_at: datetime | None
    last_error_kind: ErrorKind | None
    last_error_at: datetime | None
    failing_since: datetime | None
    consecutive_failures: int

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    @classmethod
    def of(cls, row: KeyStatus) -> StoredStatus:
        kind: ErrorKind | None
        try:
            kind = ErrorKind(row.last_error_kind) if row.last_error_kind else None
        except ValueError:
            kind = ErrorKind.PROVIDER_ERROR
        return cls(
            row.key_id,
            result_from_json(row.last_result, row.last_ok_at) if row.last_result else None,
            row.last_ok_at,
            kind,
            row.last_error_at,
            row.failing_since,
            row.consecutive_failures or 0,
        )


@dataclass(frozen=True, slots=True)
class KeyReport:
    """One key's answer for the UI.

    Exactly one of `result` / `error` is set. On failure `last_known` is the last
    successful result (if any) and `last_known_at` when it was read. `fresh` is False
    when the manual-check limit was hit and this comes from storage, not a provider.
    """

    key: KeyView
    result: BalanceResult | None = None
    error: ErrorKind | None = None
    checked_at: datetime | None = None
    last_known: BalanceResult | None = None
    last_known_at: datetime | None = None
    retry_after: float | None = None
    fresh: bool = True
    from_cache: bool = False
    down_since: datetime | None = None  # PROVIDER_DOWN: when the provider stopped answering

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def unreadable(self) -> bool:
        return self.error is ErrorKind.UNREADABLE


# -- rate limit ---------------------------------------------------------------------------


class ManualCheckLimiter:
    """At most `limit` manual checks per `window` seconds per user (sliding window).

    In process memory: with several replicas each allows `limit`; the billing cache
    and per-host limits still bound provider traffic.
    """

    def __init__(
        self,
        limit: int = MANUAL_CHECKS_PER_MINUTE,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_users = max_users
        self._hits: OrderedDict[int, deque[float]] = OrderedDict()

    async def take(self, user_id: int) -> bool:
        """Use one slot if there is one. Shared by every replica in `SharedQuota`
        (bot/services/shared_limits.py); here, as `allow`, this process's own count."""
        return self.allow(user_id)

    def allow(self, user_id: int) -> bool:
        now = self._clock()
        hits = self._hits.get(user_id)
        if hits is None:
            hits = self._hits[user_id] = deque()
            while len(self._hits) > self._max_users:
                self._hits.popitem(last=False)
        self._hits.move_to_end(user_id)
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def retry_in(self, user_id: int) -> float:
        """Seconds until `allow` says yes again for this user (0 if it would now)."""
        hits = self._hits.get(user_id)
        if not hits or len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - self._clock())


# -- a check under way ---------------------------------------------------------------------


#: How long an answer that shows a pace waits for its own readings to be stored (they are
#: part of the pace). Normally a few ms; while a sweep holds SQLite's write lock the
#: answer goes out after this with the pace of the readings stored so far.
PACE_WAIT = 0.5


class CheckRun:
    """Some keys' checks under way: reports arrive one by one as providers answer.

    The UI shows what it has when it likes (`reports`, `pending`), waits for news
    (`wait`), and may stop waiting (`abandon`): a key still pending then has only its
    stored status. One slow provider never holds the others' answers back.
    """

    def __init__(
        self, keys: Sequence[KeyView], stored: Mapping[str, StoredStatus], started_at: datetime
    ) -> None:
        self.keys = list(keys)
        self.stored = dict(stored)
        self.started_at = started_at  # every fresh figure was read at or after this
        self.throttled = False  # over the manual-check limit: stored reports only
        self.retry_in = 0.0  # …and a new check is allowed in this many seconds
        self._reports: dict[str, KeyReport] = {}
        self._tasks: dict[str, asyncio.Task[KeyReport]] = {}
        self._changed = asyncio.Event()
        self._unrecorded: list[CheckOutcome] = []  # answered, not yet written
        self._writer: asyncio.Task[None] | None = None

    def start(self, key_id: str, check: Coroutine[Any, Any, KeyReport]) -> None:
        task = asyncio.ensure_future(check)
        self._tasks[key_id] = task
        task.add_done_callback(lambda t: self._finished(key_id, t))

    def settle(self, report: KeyReport) -> None:
        self._reports[report.key.id] = report
        self._changed.set()

    def _finished(self, key_id: str, task: asyncio.Task[KeyReport]) -> None:
        if self._tasks.get(key_id) is not task:
            return  # already harvested
        del self._tasks[key_id]
        if not task.cancelled():
            exc = task.exception()
            if exc is None:
                self._reports[key_id] = task.result()
            else:  # a bug below (storage, a provider): this key failed, not the whole run
                log.error("balance check failed with %s", type(exc).__name__)
                key = next(k for k in self.keys if k.id == key_id)
                status = self.stored.get(key_id)
                self._reports[key_id] = KeyReport(
                    key,
                    error=ErrorKind.PROVIDER_ERROR,
                    last_known=status.last_result if status else None,
                    last_known_at=status.last_ok_at if status else None,
                )
        self._changed.set()

    def _harvest(self) -> None:
        for key_id, task in list(self._tasks.items()):
            if task.done():
                self._finished(key_id, task)

    @property
    def done(self) -> bool:
        self._harvest()
        return not self._tasks

    def reports(self) -> list[KeyReport]:
        """The reports so far, in key order."""
        self._harvest()
        return [self._reports[k.id] for k in self.keys if k.id in self._reports]

    def report(self, key_id: str) -> KeyReport | None:
        self._harvest()
        return self._reports.get(key_id)

    def pending(self) -> list[KeyView]:
        """Keys without an answer yet, in key order."""
        self._harvest()
        return [k for k in self.keys if k.id not in self._reports]

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until a report arrives (or timeout). True when nothing is pending any more."""
        if not self.done and timeout is not None and timeout <= 0:
            return False
        if not self.done:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
        self._changed.clear()
        return self.done

    async def wait_all(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until every check has answered (or timeout). True when nothing is pending."""
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=timeout)
        return self.done

    async def recorded(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until every answer that has arrived is written to storage (or `timeout`).
        True when nothing is left to write."""
        try:
            async with asyncio.timeout(timeout):
                while self._writer is not None and not self._writer.done():
                    await asyncio.shield(self._writer)
        except TimeoutError:
            return False
        return True

    def abandon(self) -> None:
        """Stop waiting: the checks still under way are cancelled (and not recorded)."""
        for task in list(self._tasks.values()):
            task.cancel()


# -- the service --------------------------------------------------------------------------


class BalanceService:
    def __init__(
        self,
        db: Database,
        keys: KeyService,
        billing: BillingService,
        *,
        limiter: ManualCheckLimiter | None = None,
    ) -> None:
        self.db = db
        self.keys = keys
        self.billing = billing
        self.limiter = limiter or ManualCheckLimiter()
        self._runs: weakref.WeakSet[CheckRun] = weakref.WeakSet()
        self._writers: set[asyncio.Task[None]] = set()

    async def check_user(
        self, owner_id: int, labels: Iterable[str] | None = None, *, manual: bool = True
    ) -> list[KeyReport]:
        """Check the owner's keys (or those with these labels) in parallel, in list order."""
        run = await self.begin(owner_id, labels=labels, manual=manual)
        await run.wait_all()
        await run.recorded()
        return run.reports()

    async def check_key(
        self, owner_id: int, key_id: str, *, manual: bool = True
    ) -> KeyReport | None:
        """One key, by id, scoped to its owner; None if the owner has no such key."""
        run = await self.begin(owner_id, key_ids=[key_id], manual=manual)
        await run.wait_all()
        await run.recorded()
        reports = run.reports()
        return reports[0] if reports else None

    async def begin(
        self,
        owner_id: int,
        *,
        labels: Iterable[str] | None = None,
        key_ids: Sequence[str] | None = None,
        manual: bool = True,
    ) -> CheckRun:
        """Start checking the owner's keys (all, or those with these labels or ids).

        Returns at once with what storage knows; each check's report arrives in the
        run as soon as its provider answers, and is recorded then. A manual check asks
        the providers afresh (no remembered result) unless the user is over the
        manual-check limit: then the run is `throttled` and holds stored reports only.
        """
        self.billing.make_way()  # the sweep holds back while this answer is under way
        pairs = await self.keys.requests(owner_id, key_ids)
        if labels is not None:
            wanted = set(labels)
            pairs = [(k, r) for k, r in pairs if k.label in wanted]
        stored = await self.statuses(owner_id, [k.id for k, _ in pairs]) if pairs else {}
        run = CheckRun([k for k, _ in pairs], stored, self.db.clock())
        if not pairs:
            return run
        if manual and not await self.limiter.take(owner_id):
            run.throttled = True
            run.retry_in = self.limiter.retry_in(owner_id)
            for key, req in pairs:
                run.settle(stored_report(key, stored.get(key.id), readable=req is not None))
            return run
        for key, req in pairs:
            if req is None:
                err = BillingError(ErrorKind.UNREADABLE, "cannot decrypt")
                outcome = CheckOutcome(key.id, key.provider, error=err)
                await self.record(owner_id, [outcome])
                run.settle(_report(key, outcome, stored.get(key.id), self.db.clock()))
            else:
                check = self._one(run, owner_id, key, req, stored.get(key.id), fresh=manual)
                run.start(key.id, check)
        self._runs.add(run)
        return run

    async def _one(
        self,
        run: CheckRun,
        owner_id: int,
        key: KeyView,
        req: KeyRequest,
        status: StoredStatus | None,
        *,
        fresh: bool,
    ) -> KeyReport:
        outcome = await self.billing.fetch(req, fresh=fresh)
        self._record_soon(run, owner_id, outcome)
        return _report(key, outcome, status, self.db.clock())

    def _record_soon(self, run: CheckRun, owner_id: int, outcome: CheckOutcome) -> None:
        """Write an answer after the user has it, together with the run's other answers.

        The report does not wait for storage: while a sweep holds the database's write lock
        (SQLite) for a batch, ten separate writes held a 10-key /balance for seconds (issue
        17 item 1). One writer per run takes whatever has arrived, in one transaction.
        """
        run._unrecorded.append(outcome)
        if run._writer is None or run._writer.done():
            writer = asyncio.ensure_future(self._write_out(run, owner_id))
            run._writer = writer
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)

    async def _write_out(self, run: CheckRun, owner_id: int) -> None:
        while run._unrecorded:
            batch, run._unrecorded = run._unrecorded, []
            try:
                await self.record(owner_id, batch)
            except Exception:
                log.exception("could not record key status for user %s", owner_id)

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Shutdown: let answers already in hand reach storage (bounded)."""
        if self._writers:
            await asyncio.wait(list(self._writers), timeout=timeout)

    async def statuses(
        self, owner_id: int, key_ids: Sequence[str] | None = None
    ) -> dict[str, StoredStatus]:
        """Stored status per key id (keys never checked are absent)."""
        stmt = select(KeyStatus).where(KeyStatus.owner_id == owner_id)
        if key_ids is not None:
            stmt = stmt.where(KeyStatus.key_id.in_(list(key_ids)))
        async with self.db.session() as s:
            rows = (await s.scalars(stmt)).all()
        return {r.key_id: StoredStatus.of(r) for r in rows}

    def abandon_all(self) -> None:
        """Shutdown begins: stop waiting for late answers (each run then ends at once)."""
        for run in list(self._runs):
            run.abandon()

    async def record(self, owner_id: int, outcomes: Sequence[CheckOutcome]) -> None:
        """Store these outcomes (also for /add's first check and the alert scheduler).

        Idempotent for a reading already stored (same `fetched_at`), so cached outcomes
        add no duplicate snapshot. Keys deleted meanwhile are skipped.
        """
        if not outcomes:
            return
        for attempt in (1, 2):
            try:
                await self._record(owner_id, outcomes)
                return
            except IntegrityError:
                # A concurrent check (alerts, another replica) inserted the row first.
                if attempt == 2:
                    log.warning("could not record key status for user %s", owner_id)

    async def _record(self, owner_id: int, outcomes: Sequence[CheckOutcome]) -> None:
        now = self.db.clock()
        ids = [o.key_id for o in outcomes]
        async with self.db.session() as s:
            alive = set(
                (
                    await s.scalars(
                        select(ApiKey.id).where(ApiKey.owner_id == owner_id, ApiKey.id.in_(ids))
                    )
                ).all()
            )
            await record_rows(s, [(owner_id, o) for o in outcomes if o.key_id in alive], now)


async def record_rows(
    s: AsyncSession, items: Sequence[tuple[int, CheckOutcome]], now: datetime
) -> None:
    """`record` for many keys of many owners in the caller's transaction, in a few statements.

    The alert sweep writes a whole batch this way, together with the alert state it
    belongs to. The caller guarantees the keys exist (it holds their lease in the same
    transaction). Same rules as `record`: a reading already stored adds nothing; a
    cached failure is not counted twice. Failure counters are updated in SQL, so a
    concurrent manual check's increment is not lost; a row a concurrent check inserted
    first is overwritten with this (as fresh) outcome instead of failing the batch.
    """
    if not items:
        return
    statuses = KeyStatusRepo(s)
    last_ok = await statuses.last_ok([o.key_id for _, o in items])
    ok_rows: list[dict[str, Any]] = []
    failed_rows: list[dict[str, Any]] = []
    new_rows: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    for owner_id, outcome in items:
        exists = outcome.key_id in last_ok
        result = outcome.result
        if result is not None:
            stored_at = last_ok.get(outcome.key_id)
            if stored_at is not None and result.fetched_at <= stored_at:
                continue  # this reading is already stored
            last_ok[outcome.key_id] = result.fetched_at
            snapshots.append(_snapshot(outcome.key_id, result))
            row = {"last_ok_at": result.fetched_at, "last_result": result_to_json(result)}
            if exists:
                ok_rows.append(
                    {"k": outcome.key_id, "b_ok": row["last_ok_at"], "b_res": row["last_result"]}
                )
            else:
                new_rows.append(
                    {**STATUS_EMPTY, **row, "key_id": outcome.key_id, "owner_id": owner_id}
                )
            continue
        if outcome.from_cache:
            continue  # the same failure, already counted
        kind = ErrorKind(getattr(outcome.error, "kind", ErrorKind.PROVIDER_ERROR)).value
        if exists:
            failed_rows.append({"k": outcome.key_id, "kind": kind})
        else:
            last_ok[outcome.key_id] = None
            new_rows.append(
                {
                    **STATUS_EMPTY,
                    "key_id": outcome.key_id,
                    "owner_id": owner_id,
                    "last_error_kind": kind,
                    "last_error_at": now,
                    "failing_since": now,
                    "consecutive_failures": 1,
                }
            )
    await statuses.write(ok_rows, failed_rows, new_rows, snapshots, now)


def _snapshot(key_id: str, result: BalanceResult) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "taken_at": result.fetched_at,
        "kind": result.kind.value,
        "currency": result.currency,
        "remaining": _text(result.remaining),
        "total": _text(result.total),
        "used": _text(result.used),
        "unit": None if result.unit is None else result.unit.value,
        "windows": [window_to_json(w) for w in result.windows] or None,
    }


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _report(
    key: KeyView, outcome: CheckOutcome, status: StoredStatus | None, now: datetime
) -> KeyReport:
    if outcome.result is not None:
        return KeyReport(
            key,
            result=outcome.result,
            checked_at=outcome.result.fetched_at,
            from_cache=outcome.from_cache,
        )
    error = outcome.error
    kind = error.kind if isinstance(error, BillingError) else ErrorKind.PROVIDER_ERROR
    retry = error.retry_after if isinstance(error, BillingError) else None
    return KeyReport(
        key,
        error=kind,
        checked_at=now,
        last_known=status.last_result if status else None,
        last_known_at=status.last_ok_at if status else None,
        retry_after=retry,
        from_cache=outcome.from_cache,
        down_since=error.since if isinstance(error, BillingError) else None,
    )


def stored_report(key: KeyView, status: StoredStatus | None, *, readable: bool = True) -> KeyReport:
    """What storage says about a key, without contacting anyone (`fresh=False`)."""
    if not readable:
        return KeyReport(key, error=ErrorKind.UNREADABLE, fresh=False)
    if status is None:
        # Never checked (and over the limit): say so rather than guess.
        return KeyReport(key, error=ErrorKind.RATE_LIMITED, fresh=False)
    failed_last = status.last_error_at is not None and (
        status.last_ok_at is None or status.last_error_at > status.last_ok_at
    )
    if failed_last or status.last_result is None:
        return KeyReport(
            key,
            error=status.last_error_kind or ErrorKind.PROVIDER_ERROR,
            checked_at=status.last_error_at,
            last_known=status.last_result,
            last_known_at=status.last_ok_at,
            fresh=False,
        )
    return KeyReport(key, result=status.last_result, checked_at=status.last_ok_at, fresh=False)
