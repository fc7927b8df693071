"""The leased sweep: claim due keys, check them, write state and events, prune.

The sweep claims due keys with a lease (so replicas split the work and a crashed
process's keys come back after the lease), checks them through the billing service
(decrypting just in time, in bounded batches), and commits each batch in ONE
transaction: the rules' new memory (bot/alerts/rules.py), an outbox row per event
(bot/alerts/outbox.py), key_status and snapshots. A key whose lease was lost meanwhile
is left alone, so an event is recorded exactly once.

One key never stops the others (docs/security.md §6): a key whose figures break a rule,
or whose row the database refuses, is split off its batch and gets its own error; a
batch the database cannot take right now (locked, connection lost) is handed back for
the next sweep while the rest of this one goes on; an error in one sweep never stops the
next. `stalled()` tells /healthz when due keys stop being checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import windows
from bot.alerts.outbox import OutboxService, enqueue_many, instance_id, outbox_row
from bot.alerts.rules import (
    Watch,
    evaluate,
    hold_while_muted,
    money_value,
    reading,
    told_after_mute,
)
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import CheckOutcome, FigureKind
from bot.billing.service import BillingService
from bot.clock import Clock
from bot.services import forecast
from bot.services.balances import ManualCheckLimiter, record_rows
from bot.services.history import KEEP_ALL_FOR, prune_recent, prune_snapshots
from bot.services.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import AlertPrefs, ApiKey
from bot.storage.repositories import AlertStateRepo, SnapshotRepo

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)  # old outbox rows
#: The whole snapshot history (the 400-day expiry, keys the sweep no longer reaches). Each
#: batch prunes its own keys' recent readings by index (`prune_recent`); a pass over the
#: whole table every hour made the sweep's cost grow with the history (issue 17 item 3).
PRUNE_ALL_EVERY = timedelta(days=1)
#: /healthz: the sweep is stalled when due keys were not checked for this many intervals.
STALL_INTERVALS = 3
STALL_MIN = timedelta(minutes=2)
#: A batch the database could not take is claimed again this soon (by the next sweep).
RETRY_AFTER = timedelta(seconds=1)
NO_BURN = forecast.Burn()  # no readings in the forecast's window


@dataclass(slots=True)
class SweepStats:
    checked: int = 0
    events: int = 0
    lost_leases: int = 0
    batches: int = 0
    interrupted: bool = False  # stopped for shutdown; unchecked keys' leases handed back
    failed: int = 0  # keys whose check or write failed: own error recorded, or handed back


@dataclass(slots=True)
class _Checked:
    """A batch between its checks and its write (the plaintext keys are gone by now)."""

    ids: list[str]
    outcomes: dict[str, CheckOutcome]
    names: dict[str, tuple[str, str, str]]  # key id → label, hint, provider (payloads)

    def part(self, ids: Sequence[str]) -> _Checked:
        return _Checked(list(ids), {k: self.outcomes[k] for k in ids if k in self.outcomes},
                        self.names)  # fmt: skip

    def refused(self, key_id: str) -> _Checked:
        """This key alone, its outcome replaced by a MALFORMED error (nothing to store)."""
        return _Checked([key_id], {key_id: _malformed(self.outcomes[key_id])}, self.names)


@dataclass(slots=True)
class _Written:
    """What one committed transaction did (merged into the sweep's stats after commit)."""

    done: list[CheckOutcome]
    stats: SweepStats


def _malformed(outcome: CheckOutcome) -> CheckOutcome:
    err = BillingError(ErrorKind.MALFORMED, "reading could not be used")
    return CheckOutcome(outcome.key_id, outcome.provider, error=err)


def _unavailable(exc: BaseException) -> bool:
    """The database, not this batch's data, is the problem (locked, gone, pool empty)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _name(exc: BaseException) -> str:
    """An exception's class for logs; its text may quote SQL parameters (figures, labels)."""
    return type(exc).__name__


class ManualLimitReached(Exception):
    """A user-requested check over the per-user manual-check limit: nothing was requested."""


class AlertSweep:
    """Checks every due key on a schedule, replicas sharing the work through leases."""

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
        record: bool = True,
        manual_limiter: ManualCheckLimiter | None = None,
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
        self.clock = clock or outbox.clock
        self.owner = owner or instance_id()
        # Also keep key_status + snapshots (as BalanceService.record); off only where a
        # caller keeps its own (tests of the alert rules alone).
        self.record = record
        # The per-user limit of manual checks, shared with /balance (BalanceService.limiter):
        # the alert buttons are manual checks too (docs/security.md §6).
        self.manual_limiter = manual_limiter or ManualCheckLimiter()
        self._lock = asyncio.Lock()
        self._last_prune: datetime | None = None
        self._last_full_prune: datetime | None = None
        self._stopping = asyncio.Event()  # shutdown: set once, never cleared
        self._abort = asyncio.Event()  # this sweep ended by an error: a new one per sweep
        self.stop_grace = 10.0  # seconds in-flight checks may take once shutdown begins
        # A plan key is checked sooner than `interval` near a window's reset or rung, but
        # never sooner than this after its previous check (bot/alerts/windows.py).
        self.window_min_gap = windows.MIN_GAP
        # Progress, for /healthz: when due keys were last checked (or none were due).
        self.started_at = self.clock()
        self.last_progress_at: datetime | None = None

    def request_stop(self) -> None:
        """Shutdown: finish (or abandon) the current batch, claim no more."""
        self._stopping.set()

    def stalled(self, now: datetime | None = None) -> bool:
        """True when this process has had due keys but checked none for STALL_INTERVALS
        intervals (its sweeps fail, hang or never run) — what /healthz reports."""
        now = now or self.clock()
        window = max(self.interval * STALL_INTERVALS, STALL_MIN)
        last = self.last_progress_at or self.started_at
        return now - last > window

    def _progress(self, now: datetime) -> None:
        self.last_progress_at = max(now, self.last_progress_at or now)

    async def _hand_back(self, key_ids: Sequence[str], now: datetime) -> None:
        """After a failure: free the leases, due again just after this sweep (never in it,
        so a fault that persists cannot loop). Best effort: if the database is gone too,
        the leases simply expire."""
        try:
            async with self.db.session() as s:
                await AlertStateRepo(s).release(key_ids, self.owner, due_at=now + RETRY_AFTER)
        except Exception as exc:
            log.warning("could not hand back %d leases (%s)", len(key_ids), _name(exc))

    async def release(self, key_ids: Sequence[str]) -> None:
        """Hand leases back so another replica (or the restarted process) checks at once."""
        async with self.db.session() as s:
            await AlertStateRepo(s).release(key_ids, self.owner)

    async def ensure_rows(self, now: datetime | None = None, *, chunk: int = 5000) -> int:
        """Every key gets its alert_state row (defaults: expiry + revoked on), due now.

        In chunks by key id, so a first start with 100k keys never holds them all in memory.
        """
        now = now or self.clock()
        added = 0
        after = ""
        while True:
            async with self.db.session() as s:
                page = await AlertStateRepo(s).missing(after, chunk)
            if not page:
                return added
            after = page[-1][0]
            await self._insert_rows([AlertStateRepo.defaults(k, o, now) for k, o in page])
            added += len(page)

    async def _insert_rows(self, values: list[dict[str, Any]]) -> None:
        try:
            async with self.db.session() as s:
                await AlertStateRepo(s).insert_many(values)
        except IntegrityError:  # a key deleted meanwhile: go one by one
            for value in values:
                try:
                    async with self.db.session() as s:
                        await AlertStateRepo(s).insert_many([value])
                except IntegrityError:
                    pass

    async def claim(
        self,
        now: datetime,
        limit: int,
        key_ids: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[str]:
        """Lease due keys (or these), so replicas split the work (AlertStateRepo.claim)."""
        async with self.db.session() as s:
            return await AlertStateRepo(s).claim(
                self.owner, now, now + self.lease, limit, key_ids, due_by
            )

    async def run(
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
            writing: asyncio.Task[None] | None = None
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
                            if not stats.batches:  # nothing due for this process: all done
                                self._progress(fixed or self.clock())
                            more = False
                            break
                        stats.batches += 1
                        checking.append(asyncio.ensure_future(self._check_batch(ids, stats)))
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
                    if not batch.ids:
                        continue  # its check failed: handed back for the next sweep
                    writing = asyncio.ensure_future(
                        self._write_batch(batch, fixed or self.clock(), stats)
                    )
            finally:
                if checking:  # only after an error: let them finish or hand their keys back
                    self._abort.set()  # this sweep only: the next one starts afresh
                    await asyncio.gather(*checking, return_exceptions=True)
                if writing is not None:
                    await writing
                self._abort = asyncio.Event()
            if self._last_prune is None or start - self._last_prune >= PRUNE_EVERY:
                self._last_prune = start
                full = self._last_full_prune
                everything = full is None or start - full >= PRUNE_ALL_EVERY
                if everything:
                    self._last_full_prune = start
                await self.prune(start, snapshots=everything)
        return stats

    async def check_now(self, owner_id: int, key_id: str) -> CheckOutcome | None:
        """A user-requested check that runs through the same state machine as the sweep.

        None when the key is not the owner's or another check holds its lease right now;
        ManualLimitReached (and no request) past the owner's manual-check limit.
        """
        now = self.clock()
        async with self.db.session() as s:
            key = await s.scalar(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
            )
            if key is None:
                return None
        # `take`, not `allow`: on PostgreSQL the limit is shared by every replica
        # (bot/services/shared_limits.py SharedQuota), and /balance counts in the same one.
        if not await self.manual_limiter.take(owner_id):
            raise ManualLimitReached(owner_id)
        async with self.db.session() as s:
            await AlertStateRepo(s).get_or_create(key, now)
        if not await self.claim(now, 1, [key_id]):
            return None
        batch = await self._check([key_id])
        if batch is None:
            return None  # shutting down
        done = await self._write(batch, self.clock(), SweepStats())
        return done[0] if done else None

    async def _fetch_or_stop(
        self, ids: Sequence[str], readable: list[Any], abort: asyncio.Event
    ) -> list[CheckOutcome] | None:
        """fetch_many, unless shutdown begins (or the sweep ended by an error) and the
        checks outlast the grace period."""
        fetch = asyncio.ensure_future(
            self.billing.fetch_many(readable, use_cache=False, background=True)
        )
        stops = {asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(abort.wait())}
        try:
            await asyncio.wait({fetch, *stops}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                await asyncio.wait({fetch}, timeout=self.stop_grace)
            if fetch.done():
                return fetch.result()
        finally:
            for stop in stops:
                stop.cancel()
        fetch.cancel()
        await asyncio.gather(fetch, return_exceptions=True)
        await self.release(ids)
        log.info("shutdown: %d keys left unchecked, leases handed back", len(ids))
        return None

    async def _check_batch(self, ids: Sequence[str], stats: SweepStats) -> _Checked | None:
        """`_check`, contained: if it fails (the database, say), the batch is handed back
        for the next sweep (an empty batch) and this sweep goes on with the others."""
        try:
            return await self._check(ids)
        except Exception as exc:
            log.error("alert sweep: checking a batch of %d failed (%s)", len(ids), _name(exc))
            stats.failed += len(ids)
            await self._hand_back(ids, self.clock())
            return _Checked([], {}, {})

    async def _check(self, ids: Sequence[str]) -> _Checked | None:
        """Decrypt and check a leased batch; None when shutdown abandoned it (leases freed)."""
        abort = self._abort
        async with self.db.session() as s:
            rows = (await s.scalars(select(ApiKey).where(ApiKey.id.in_(list(ids))))).all()
            s.expunge_all()
        names = {r.id: (r.label, r.hint, r.provider) for r in rows}
        # Decrypt just in time; the plaintext lives only in this list, for this call.
        requests = [(r, self.keys.request_for(r)) for r in rows]
        readable = [req for _, req in requests if req is not None]
        fetched = await self._fetch_or_stop(ids, readable, abort)
        if fetched is None:
            return None
        outcomes = {o.key_id: o for o in fetched}
        for row, req in requests:
            if req is None:
                err = BillingError(ErrorKind.UNREADABLE, "cannot decrypt")
                outcomes[row.id] = CheckOutcome(row.id, row.provider, error=err)
        return _Checked(list(ids), outcomes, names)

    async def _write_batch(self, batch: _Checked, now: datetime, stats: SweepStats) -> None:
        """`_write`, contained: when the database cannot take the batch right now, what
        is not written yet is handed back for the next sweep, and this sweep goes on."""
        before = stats.checked + stats.lost_leases
        try:
            await self._write(batch, now, stats)
        except Exception as exc:
            unwritten = len(batch.ids) - (stats.checked + stats.lost_leases - before)
            log.error("alert sweep: writing %d keys failed (%s)", unwritten, _name(exc))
            stats.failed += unwritten
            await self._hand_back(batch.ids, now)

    async def _write(self, batch: _Checked, now: datetime, stats: SweepStats) -> list[CheckOutcome]:
        """Commit the batch (`_commit`); a fault tied to one key stays with that key.

        If the commit fails for another reason than the database being unavailable
        (that raises: the whole batch waits for the next sweep), the batch is split in
        halves until the key the database (or a rule) refuses is alone; that key is
        recorded with its own MALFORMED error, and every other key is written as usual.
        """
        try:
            delta = await self._commit(batch, now)
        except Exception as exc:
            if _unavailable(exc) or not batch.ids:
                raise
            if len(batch.ids) > 1:
                half = len(batch.ids) // 2
                done = await self._write(batch.part(batch.ids[:half]), now, stats)
                return done + await self._write(batch.part(batch.ids[half:]), now, stats)
            (key_id,) = batch.ids
            log.error(
                "alert sweep: key %s could not be written (%s); recorded as malformed",
                key_id,
                _name(exc),
            )
            delta = await self._commit(batch.refused(key_id), now)
            delta.stats.failed += 1
        stats.checked += delta.stats.checked
        stats.events += delta.stats.events
        stats.lost_leases += delta.stats.lost_leases
        stats.failed += delta.stats.failed
        if delta.done:
            self._progress(now)
        return delta.done

    async def _commit(self, batch: _Checked, now: datetime) -> _Written:
        """The whole batch in ONE transaction: state, outbox rows, key_status, snapshots.

        It first locks the batch's `alert_state` rows that this process still leases
        (FOR UPDATE on PostgreSQL; on SQLite the first write takes the database's write
        lock), reading their state under that lock. A key whose lease was lost is left
        alone — no state, no outbox row, no status — so its new lease holder records
        each event exactly once.
        """
        done: list[CheckOutcome] = []
        stats = SweepStats()
        written = _Written(done, stats)
        async with self.db.session() as s:
            states = AlertStateRepo(s)
            leased = [
                st
                for st in await states.lock_leased(batch.ids, self.owner)
                if st.key_id in batch.outcomes
            ]
            stats.lost_leases += len(batch.ids) - len(leased)
            if not leased:
                return written
            owners = {st.owner_id for st in leased}
            instant: dict[int, bool] = dict(
                (
                    await s.execute(
                        select(AlertPrefs.user_id, AlertPrefs.instant).where(
                            AlertPrefs.user_id.in_(owners)
                        )
                    )
                ).all()
            )
            need_burn = [
                st.key_id
                for st in leased
                if st.forecast_on
                and (res := batch.outcomes[st.key_id].result) is not None
                and money_value(res) is not None
            ]
            burns = await self._burns(s, need_burn, now)
            changes: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for st in leased:
                outcome = batch.outcomes[st.key_id]
                watch = Watch(
                    tuple(st.thresholds or ()),
                    st.expiry_on,
                    st.revoked_on,
                    st.forecast_on,
                    windows.effective_rungs(st.window_rungs),
                )
                before = dict(st.memory or {})
                try:
                    step = evaluate(
                        watch,
                        before,
                        st.failing_since,
                        outcome,
                        burns.get(st.key_id, NO_BURN),
                        now,
                    )
                except Exception as exc:  # a rule that cannot take this key's figures
                    log.error(
                        "alert sweep: rules failed for key %s (%s); recorded as malformed",
                        st.key_id,
                        _name(exc),
                    )
                    stats.failed += 1
                    outcome = _malformed(outcome)
                    step = evaluate(watch, dict(before), st.failing_since, outcome, NO_BURN, now)
                muted = st.muted_until is not None and st.muted_until > now
                if muted:  # recorded, not told: held until the mute is over
                    hold_while_muted(before, step.memory)
                else:
                    result = outcome.result
                    step.events[:0] = told_after_mute(watch, step.memory, result, step.events)
                stats.events += len(step.events)
                notify = instant.get(st.owner_id, True) and not muted
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
                    last = {**reading(outcome.result), "state": outcome.result.state.value}
                due = windows.next_check(
                    watch.window_rungs,
                    before,
                    step.memory,
                    outcome.result,
                    now,
                    self.interval,
                    self.window_min_gap,
                )
                changes.append(
                    {
                        "k": st.key_id,
                        "m": step.memory,
                        "f": step.failing_since,
                        "l": last,
                        "n": due,
                    }
                )
                done.append(outcome)
            await states.finish_checks(changes, self.owner, now, now + self.interval)
            await enqueue_many(s, events)
            if self.record:
                owner_of = {st.key_id: st.owner_id for st in leased}
                await record_rows(s, [(owner_of[o.key_id], o) for o in done], now)
                # Thin these keys' readings that aged since their previous check (and any
                # /balance readings in between): by index, bounded by the keys checked.
                previous = min((st.checked_at or now for st in leased), default=now)
                since = previous - KEEP_ALL_FOR - timedelta(days=1)
                await prune_recent(s, [st.key_id for st in leased], since, now)
        stats.checked += len(done)
        return written

    @staticmethod
    async def _burns(
        s: AsyncSession, key_ids: Sequence[str], now: datetime
    ) -> dict[str, forecast.Burn]:
        """These keys' balance readings of the forecast's window, aggregated by the database
        (one query, one row per key: the readings themselves are never loaded)."""
        if not key_ids:
            return {}
        found = await SnapshotRepo(s).burns(
            key_ids, FigureKind.BALANCE.value, now - forecast.WINDOW, now
        )
        return {key_id: forecast.Burn(*figures) for key_id, figures in found.items()}

    # -- housekeeping ----------------------------------------------------------------------

    async def prune(self, now: datetime, *, snapshots: bool = True) -> None:
        """Thin snapshots with age (services/history.py has the policy), old outbox rows."""
        try:
            if snapshots:
                async with self.db.session() as s:
                    await prune_snapshots(s, now)
            await self.outbox.prune(now)
        except Exception:
            log.exception("pruning alert data failed")
