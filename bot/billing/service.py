"""The one entry point the bot uses for balance checks.

It picks the base URL and the matching HTTP client (trusted vs SSRF-guarded), bounds
concurrency globally and per host so one slow provider cannot starve the rest, caches
results briefly so a double /balance does not hit the provider twice, and turns every
failure into a `CheckOutcome` so one bad key never sinks a batch.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import DecimalException
from typing import Protocol

import httpx

from bot.billing import detect as _detect
from bot.billing.breaker import CircuitBreaker
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.http import HttpClients, HttpOptions, ProviderHttpClient
from bot.billing.models import CheckOutcome, KeyRequest
from bot.billing.providers._families import RelayFamily
from bot.billing.providers.base import FetchContext, Provider, SiteMemo
from bot.billing.registry import registry_for
from bot.billing.ssrf import validate_base_url
from bot.billing.turns import Turns, taking_turns
from bot.clock import Clock, system_clock
from bot.settings import Settings

log = logging.getLogger(__name__)
_VALID_URLS_MAX = 10_000

#: Seconds the sweep slows to a tenth of its share after an interactive check starts or
#: ends, so the user's answer is not queued behind the sweep's work in the event loop.
INTERACTIVE_QUIET = 1.0

#: Background checks started per event-loop iteration (`fetch_many(background=True)`).
START_SLICE = 25
#: Seconds of each event-loop iteration the background lane's requests may take (building,
#: sending, reading), and while an interactive check is under way (bot/billing/turns.py).
PACE_BUDGET = 0.004
PACE_BUDGET_QUIET = 0.001

#: on_check(provider_id, outcome_kind, seconds): outcome_kind is "ok" or an ErrorKind value.
CheckHook = Callable[[str, str, float], None]


class Timer(Protocol):
    """Monotonic seconds (durations, cache lifetimes); not a point in time."""

    def __call__(self) -> float: ...


def _reserve(cap: int) -> int:
    """Slots of a cap that background work (the sweep) leaves to interactive checks."""
    return max(1, cap // 5) if cap > 1 else 0


class _Slots:
    """At most `cap` holders at once, in two lanes.

    Interactive checks (a user's /balance, Check now, /add's first check) may use every
    slot and are served first whenever one frees; background checks (the alert sweep)
    hold at most `cap - reserve`, so a user's check never queues behind a whole sweep
    (issue 17 item 1). The total stays within `cap`: the lane changes who waits, never
    how hard a host is hit.
    """

    def __init__(self, cap: int, timer: Timer = time.monotonic) -> None:
        self.cap = max(1, cap)
        self.background_cap = max(1, self.cap - _reserve(self.cap))
        self.used = 0
        self.background_used = 0
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {False: deque(), True: deque()}
        self._timer = timer
        self._quiet_until = 0.0
        self._wake_later: asyncio.TimerHandle | None = None

    def quiet(self, seconds: float) -> None:
        """For `seconds` from now background holders are cut to a tenth of their share, so
        the work an interactive answer still has to do (database, Telegram) does not wait
        behind a saturated event loop."""
        self._quiet_until = max(self._quiet_until, self._timer() + seconds)
        if self._wake_later is None and self._waiting[True]:
            loop = asyncio.get_running_loop()
            self._wake_later = loop.call_later(seconds, self._end_quiet)

    def quieted(self) -> bool:
        """True while interactive checks have asked background ones to hold back."""
        return self._timer() < self._quiet_until

    def _end_quiet(self) -> None:
        self._wake_later = None
        left = self._quiet_until - self._timer()
        if left > 0:
            self._wake_later = asyncio.get_running_loop().call_later(left, self._end_quiet)
        self._wake()

    def _free_for(self, background: bool) -> bool:
        if self.used >= self.cap:
            return False
        if not background:
            return True
        cap = self.background_cap
        if self._quiet_until and self._timer() < self._quiet_until:
            cap = max(1, cap // 10)
        return self.background_used < cap

    def _take(self, background: bool) -> None:
        self.used += 1
        self.background_used += background

    async def acquire(self, background: bool = False) -> None:
        ahead = self._waiting[False] or (background and self._waiting[True])
        if not ahead and self._free_for(background):
            self._take(background)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[background].append(waiter)
        if background and self._wake_later is None and self._timer() < self._quiet_until:
            left = self._quiet_until - self._timer()
            self._wake_later = asyncio.get_running_loop().call_later(left, self._end_quiet)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(background)  # handed a slot, then cancelled: pass it on
            elif waiter in self._waiting[background]:  # else `_wake` dropped it already
                self._waiting[background].remove(waiter)
            raise

    def release(self, background: bool = False) -> None:
        self.used -= 1
        self.background_used -= background
        self._wake()

    def _wake(self) -> None:
        for lane in (False, True):  # interactive first
            queue = self._waiting[lane]
            while queue and self._free_for(lane):
                waiter = queue.popleft()
                if not waiter.done():
                    self._take(lane)
                    waiter.set_result(None)
            if queue:
                return  # an interactive waiter keeps background ones waiting

    @property
    def idle(self) -> bool:
        return self.used == 0 and not self._waiting[False] and not self._waiting[True]


class _HostLimiter:
    """Per-host slots (two lanes, see `_Slots`) that disappear when idle, so user hosts
    do not pile up."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slots] = {}

    async def acquire(self, host: str, limit: int, *, background: bool = False) -> None:
        slots = self._slots.get(host)
        if slots is None:
            slots = self._slots[host] = _Slots(limit)
        try:
            await slots.acquire(background)
        except BaseException:
            if slots.idle and self._slots.get(host) is slots:
                del self._slots[host]  # cancelled while waiting, nobody else here
            raise

    def release(self, host: str, *, background: bool = False) -> None:
        slots = self._slots[host]
        slots.release(background)
        if slots.idle:
            del self._slots[host]


class _ResultCache:
    """Small LRU with per-entry expiry. Keys are HMACs: no plaintext secret is held."""

    def __init__(self, max_entries: int, clock: Timer) -> None:
        self._data: OrderedDict[str, tuple[float, CheckOutcome]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def get(self, key: str) -> CheckOutcome | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, outcome = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return outcome

    def put(self, key: str, outcome: CheckOutcome, ttl: float) -> None:
        if ttl <= 0 or self._max <= 0:
            return
        self._data[key] = (self._clock() + ttl, outcome)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


class BillingService:
    """Checks keys. Create one per process (it owns connection pools); `aclose()` at exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Mapping[str, Provider] | None = None,
        clock: Clock = system_clock,
        timer: Timer = time.monotonic,
        http_options: HttpOptions | None = None,
        global_limit: int = 500,
        trusted_host_limit: int = 50,
        user_host_limit: int = 4,
        cache_ttl: float = 30.0,
        error_cache_ttl: float = 5.0,
        cache_size: int = 4096,
        check_timeout: float = 45.0,
        allowed_ports: frozenset[int] = frozenset(),
        on_check: CheckHook | None = None,
        breaker: CircuitBreaker | None = None,
        pace_budget: float = PACE_BUDGET,
    ) -> None:
        self._settings = settings
        self._registry = registry if registry is not None else registry_for(settings)
        self._now = clock  # business time: FetchContext.now and fetched_at
        self._timer: Timer = timer
        self._allow_private = settings.allow_private_base_urls
        self._allowed_ports = allowed_ports
        self._valid_urls: dict[str, str] = {}  # user base URL → canonical (accepted only)
        self._http = HttpClients(http_options, allow_private=self._allow_private)
        self._global = _Slots(global_limit, timer)  # all hosts together, same two lanes
        self._hosts = _HostLimiter()
        self._trusted_host_limit = trusted_host_limit
        self._user_host_limit = user_host_limit
        self._replicas = 1
        self._cache = _ResultCache(cache_size, self._timer)
        self._cache_ttl = cache_ttl
        self._error_cache_ttl = error_cache_ttl
        self._check_timeout = check_timeout
        self._inflight: dict[str, asyncio.Future[CheckOutcome]] = {}
        self._salt = os.urandom(16)
        self._memo = SiteMemo()
        self._breaker = breaker or CircuitBreaker(self._now)
        # The background lane's requests take turns in the event loop (turns.py).
        quiet_budget = min(pace_budget, PACE_BUDGET_QUIET)
        self._turns = Turns(pace_budget, quiet_budget=quiet_budget, quiet=self._global.quieted)
        self.on_check = on_check

    @property
    def trusted_host_limit(self) -> int:
        """Concurrent checks per built-in/operator host: politeness towards one provider."""
        return self._trusted_host_limit

    @trusted_host_limit.setter
    def trusted_host_limit(self, value: int) -> None:
        self._trusted_host_limit = max(1, value)

    def share_with(self, replicas: int) -> None:
        """Per-host politeness is for the whole deployment: with N live replicas on one
        database each takes 1/N of every host's cap (bot/services/shared_limits.py).
        A host's new cap applies from its next idle moment."""
        self._replicas = max(1, replicas)

    @property
    def trusted_http(self) -> ProviderHttpClient:
        """The trusted client (timeouts, retries, body cap) for operator-configured URLs,
        e.g. FX_RATES_URL; never for a user's URL."""
        return self._http.trusted

    async def aclose(self) -> None:
        await self._http.aclose()
        self._cache.clear()

    async def __aenter__(self) -> BillingService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- catalogue ----------------------------------------------------------------------

    @property
    def registry(self) -> Mapping[str, Provider]:
        """Every provider by id: built-in and declared (PROVIDERS_FILE), read-only."""
        return self._registry

    def providers(self) -> list[Provider]:
        """All providers in button order."""
        return sorted(self._registry.values(), key=lambda p: (p.order, p.id))

    def provider(self, provider_id: str) -> Provider:
        """The provider with this id, or KeyError."""
        return self._registry[provider_id]

    def detect(self, key: str, base_url: str | None = None) -> list[Provider]:
        """Candidate providers from the key's shape (see `bot.billing.detect`)."""
        return _detect.detect(key, base_url, self._registry.values())

    async def detect_family(self, url: str) -> RelayFamily | None:
        """Which relay software runs at a user's base URL, asked without any key, through
        the SSRF-guarded client (contract: `bot.billing.detect.detect_family`). None when
        nothing matches, the site is unreachable or it takes longer than a check may;
        BillingError(URL_REFUSED) for a URL the guard refuses."""
        base = self.validate_base_url(url)
        host = _host_key(base, True)
        await self._hosts.acquire(host, self._user_host_limit)
        try:
            async with asyncio.timeout(self._check_timeout):
                return await _detect.detect_family(base, self._http.guarded)
        except TimeoutError:
            return None
        finally:
            self._hosts.release(host)

    def validate_base_url(self, url: str) -> str:
        """Canonical form of a user's base URL, or BillingError(URL_REFUSED).

        A pure function of the text and this service's settings (DNS is checked at
        connect time by the guarded resolver), so accepted URLs are memoised: the sweep
        re-validates every user URL on every check.
        """
        canonical = self._valid_urls.get(url)
        if canonical is None:
            canonical = validate_base_url(
                url, allow_private=self._allow_private, allowed_ports=self._allowed_ports
            )
            if len(self._valid_urls) >= _VALID_URLS_MAX:
                self._valid_urls.clear()
            self._valid_urls[url] = canonical
        return canonical

    def clear_cache(self) -> None:
        self._cache.clear()

    def make_way(self) -> None:
        """A user is waiting for an answer that will need checks: the sweep's share of
        the limits and of each event-loop iteration shrinks now (for `INTERACTIVE_QUIET`
        seconds), while the answer's own database reads still run, not only once its
        checks start."""
        self._global.quiet(INTERACTIVE_QUIET)

    # -- checks -------------------------------------------------------------------------

    async def fetch_many(
        self,
        reqs: Sequence[KeyRequest] | Iterable[KeyRequest],
        *,
        use_cache: bool = True,
        background: bool = False,
    ) -> list[CheckOutcome]:
        """One outcome per request, in input order; failures are outcomes, never raised.

        `background` is for the alert sweep: its checks use the background lane of the
        global and per-host limits, which leaves part of every limit to interactive
        checks and lets those go first (see `_Slots`).
        """
        items = list(reqs)
        if background:
            results = await self._gather_paced(items, use_cache)
        else:
            results = await asyncio.gather(
                *(self.fetch(r, use_cache=use_cache) for r in items), return_exceptions=True
            )
        out: list[CheckOutcome] = []
        for req, res in zip(items, results, strict=True):
            if isinstance(res, CheckOutcome):
                out.append(res)
            elif isinstance(res, asyncio.CancelledError):
                raise res
            else:
                out.append(self._internal_error(req, res))
        return out

    async def _gather_paced(
        self, items: Sequence[KeyRequest], use_cache: bool
    ) -> list[CheckOutcome | BaseException]:
        """`gather` for the background lane, its checks started `START_SLICE` per loop
        iteration: the first steps of a whole batch's checks (hundreds) in one iteration
        kept everything else waiting for it (bot/billing/turns.py)."""
        tasks: list[asyncio.Future[CheckOutcome]] = []
        try:
            for at in range(0, len(items), START_SLICE):
                if at:
                    await asyncio.sleep(0)
                tasks += [
                    asyncio.ensure_future(self.fetch(r, use_cache=use_cache, background=True))
                    for r in items[at : at + START_SLICE]
                ]
        except BaseException:  # cancelled while starting: the started ones go too
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch(
        self,
        req: KeyRequest,
        *,
        use_cache: bool = True,
        fresh: bool = False,
        background: bool = False,
    ) -> CheckOutcome:
        """Check one key. Never raises for provider or network failures.

        `fresh` is for a check the user asked for (/balance, "Check now", Refresh): never
        a remembered result, but a check of the same key already under way is joined —
        its answer is just as new. The answer is remembered for the next plain call.
        """
        try:
            cache_key = self._cache_key(req)
        except BillingError as exc:
            return CheckOutcome(req.key_id, req.provider, error=exc)
        if use_cache:
            cached = None if fresh else self._cache.get(cache_key)
            if cached is not None:
                return replace(cached, key_id=req.key_id, from_cache=True)
            pending = self._inflight.get(cache_key)
            if pending is not None:
                # Same key already being checked (double tap): share that answer.
                await asyncio.wait([pending])
                if not pending.cancelled():
                    return replace(pending.result(), key_id=req.key_id, from_cache=True)

        loop = asyncio.get_running_loop()
        future: asyncio.Future[CheckOutcome] = loop.create_future()
        if use_cache:
            self._inflight[cache_key] = future
        try:
            outcome = await self._check(req, background)
            future.set_result(outcome)
        except BaseException:
            future.cancel()  # joiners notice and run their own check
            raise
        finally:
            if self._inflight.get(cache_key) is future:
                del self._inflight[cache_key]
        self._remember(cache_key, outcome)
        return outcome

    def _remember(self, cache_key: str, outcome: CheckOutcome) -> None:
        if outcome.ok:
            self._cache.put(cache_key, outcome, self._cache_ttl)
        elif isinstance(outcome.error, BillingError) and not outcome.error.transient:
            self._cache.put(cache_key, outcome, self._error_cache_ttl)

    async def _check(self, req: KeyRequest, background: bool = False) -> CheckOutcome:
        started = self._timer()
        try:
            provider = self._lookup(req.provider)
            base_url, client, user_url = self._route(req, provider)
            host = _host_key(base_url, user_url)
            cap = self._user_host_limit if user_url else self._trusted_host_limit
            limit = max(1, -(-cap // self._replicas))  # this replica's share, rounded up
            ctx = FetchContext(
                http=client,
                key=req.secret,
                base_url=base_url,
                options=dict(req.options),
                now=self._now(),
                memo=self._memo,
            )
            if not background:
                self._global.quiet(INTERACTIVE_QUIET)
            await self._hosts.acquire(host, limit, background=background)
            try:
                # A built-in/operator host that keeps failing is not asked for a while
                # (bot/billing/breaker.py); a user's relay only has its per-host cap.
                if not user_url:
                    self._breaker.admit(host)
                try:
                    await self._global.acquire(background)
                    try:
                        async with asyncio.timeout(self._check_timeout):
                            with taking_turns(self._turns if background else None):
                                result = await provider.fetch(ctx)
                    finally:
                        self._global.release(background)
                except BaseException as exc:
                    if not user_url:
                        self._breaker.failed(host, exc, self._now())
                    raise
                if not user_url:
                    self._breaker.answered(host)
            finally:
                self._hosts.release(host, background=background)
            if not background:
                self._global.quiet(INTERACTIVE_QUIET)  # the answer is rendered and sent next
            if result.fetched_at is None:
                result = replace(result, fetched_at=ctx.now)
            outcome = CheckOutcome(req.key_id, req.provider, result=result)
        except BillingError as exc:
            outcome = CheckOutcome(req.key_id, req.provider, error=exc)
        except TimeoutError:
            err = BillingError(ErrorKind.NETWORK, "timed out")
            outcome = CheckOutcome(req.key_id, req.provider, error=err)
        except DecimalException:
            # An adapter's arithmetic on hostile figures (9E+999999 × rate): the answer is
            # garbage, not our bug. Results themselves are bounded in bot/billing/models.py.
            err = BillingError(ErrorKind.MALFORMED, "figures out of range")
            outcome = CheckOutcome(req.key_id, req.provider, error=err)
        except Exception as exc:
            outcome = self._internal_error(req, exc)
        self._report(req.provider, outcome, self._timer() - started)
        return outcome

    def _lookup(self, provider_id: str) -> Provider:
        try:
            return self._registry[provider_id]
        except KeyError:
            raise BillingError(ErrorKind.NO_BALANCE_API, "unknown provider") from None

    def _route(self, req: KeyRequest, provider: Provider) -> tuple[str, ProviderHttpClient, bool]:
        """(base URL, client, is-user-URL). User URLs are re-validated on every check."""
        if req.base_url:
            return self.validate_base_url(req.base_url), self._http.guarded, True
        override = self._settings.provider_base_url(provider.id)
        if override:
            return override.rstrip("/"), self._http.trusted, False
        if provider.needs_base_url or not provider.default_base_url:
            raise BillingError(ErrorKind.URL_REFUSED, "this provider needs a base URL")
        if provider.guarded:
            return self.validate_base_url(provider.default_base_url), self._http.guarded, True
        return provider.default_base_url.rstrip("/"), self._http.trusted, False

    def _cache_key(self, req: KeyRequest) -> str:
        """HMAC over key_id, provider, URL, options and the key itself (per-process salt)."""
        mac = hmac.new(self._salt, digestmod=hashlib.sha256)
        for part in (req.key_id, req.provider, req.base_url or ""):
            mac.update(part.encode())
            mac.update(b"\0")
        for name in sorted(req.options):
            mac.update(f"{name}={req.options[name]}".encode())
            mac.update(b"\0")
        mac.update(req.secret.reveal().encode())
        return mac.hexdigest()

    def _internal_error(self, req: KeyRequest, exc: BaseException) -> CheckOutcome:
        """Log a provider bug without its message (it might hold upstream text or a key)."""
        if isinstance(exc, BillingError):
            return CheckOutcome(req.key_id, req.provider, error=exc)
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        log.error(
            "balance check for provider %s failed with %s at %s",
            req.provider,
            type(exc).__name__,
            where,
        )
        err = BillingError(ErrorKind.PROVIDER_ERROR, "internal error")
        return CheckOutcome(req.key_id, req.provider, error=err)

    def _report(self, provider_id: str, outcome: CheckOutcome, seconds: float) -> None:
        if self.on_check is None:
            return
        kind = "ok" if outcome.ok else str(getattr(outcome.error, "kind", "provider_error"))
        try:
            self.on_check(provider_id, kind, seconds)
        except Exception:
            log.exception("on_check hook failed")


@functools.lru_cache(maxsize=4096)
def _host_key(base_url: str, user_url: bool) -> str:
    url = httpx.URL(base_url)
    prefix = "user" if user_url else "trusted"
    return f"{prefix}:{url.host}:{url.port or ''}"
