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
from collections import OrderedDict
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
from bot.clock import Clock, system_clock
from bot.settings import Settings

log = logging.getLogger(__name__)
_VALID_URLS_MAX = 10_000

#: on_check(provider_id, outcome_kind, seconds): outcome_kind is "ok" or an ErrorKind value.
CheckHook = Callable[[str, str, float], None]


class Timer(Protocol):
    """Monotonic seconds (durations, cache lifetimes); not a point in time."""

    def __call__(self) -> float: ...


class _HostLimiter:
    """Per-host semaphores that disappear when idle, so user hosts do not pile up."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def acquire(self, host: str, limit: int) -> None:
        sem, users = self._slots.get(host, (None, 0))
        if sem is None:
            sem = asyncio.Semaphore(limit)
        self._slots[host] = (sem, users + 1)
        try:
            await sem.acquire()
        except BaseException:
            self._release_user(host)
            raise

    def release(self, host: str) -> None:
        sem, _ = self._slots[host]
        sem.release()
        self._release_user(host)

    def _release_user(self, host: str) -> None:
        sem, users = self._slots[host]
        if users <= 1:
            del self._slots[host]
        else:
            self._slots[host] = (sem, users - 1)


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
    ) -> None:
        self._settings = settings
        self._registry = registry if registry is not None else registry_for(settings)
        self._now = clock  # business time: FetchContext.now and fetched_at
        self._timer: Timer = timer
        self._allow_private = settings.allow_private_base_urls
        self._allowed_ports = allowed_ports
        self._valid_urls: dict[str, str] = {}  # user base URL → canonical (accepted only)
        self._http = HttpClients(http_options, allow_private=self._allow_private)
        self._global_limit = global_limit
        self._global: asyncio.Semaphore | None = None  # created in the loop on first use
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

    # -- checks -------------------------------------------------------------------------

    async def fetch_many(
        self, reqs: Sequence[KeyRequest] | Iterable[KeyRequest], *, use_cache: bool = True
    ) -> list[CheckOutcome]:
        """One outcome per request, in input order; failures are outcomes, never raised."""
        items = list(reqs)
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

    async def fetch(
        self, req: KeyRequest, *, use_cache: bool = True, fresh: bool = False
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
            outcome = await self._check(req)
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

    async def _check(self, req: KeyRequest) -> CheckOutcome:
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
            await self._hosts.acquire(host, limit)
            try:
                # A built-in/operator host that keeps failing is not asked for a while
                # (bot/billing/breaker.py); a user's relay only has its per-host cap.
                if not user_url:
                    self._breaker.admit(host)
                try:
                    async with self._global_sem():
                        async with asyncio.timeout(self._check_timeout):
                            result = await provider.fetch(ctx)
                except BaseException as exc:
                    if not user_url:
                        self._breaker.failed(host, exc, self._now())
                    raise
                if not user_url:
                    self._breaker.answered(host)
            finally:
                self._hosts.release(host)
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

    def _global_sem(self) -> asyncio.Semaphore:
        if self._global is None:
            self._global = asyncio.Semaphore(self._global_limit)
        return self._global

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
