"""The HTTP layer under every provider: timeouts, retries, size caps, SSRF guard.

Two long-lived `httpx.AsyncClient`s, one per trust level:

* *trusted* — built-in provider hosts and operator overrides (`PROVIDER_<ID>_BASE_URL`);
* *guarded* — user-supplied base URLs; its connector resolves through `GuardedResolver`
  with aiohttp's DNS cache off, so every new connection is validated.

Both use `httpx_aiohttp.AiohttpTransport` over our own `aiohttp.ClientSession`: httpx's
default transport costs ~12 ms CPU per request at 200 concurrent checks, aiohttp ~0.8 ms.
Bodies are read raw and decompressed here with a hard output cap, so a gzip bomb never
expands past the cap in memory. Errors carry fixed phrases only: no URL, no upstream
text, no key (keys travel in headers only and are never logged).
"""

from __future__ import annotations

import asyncio
import functools
import http.cookiejar
import json as jsonlib
import logging
import random
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import certifi
import httpx
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.reply import HttpReply, parse_retry_after
from bot.billing.ssrf import GuardedResolver, check_request_url
from bot.billing.turns import take_turn

log = logging.getLogger(__name__)

USER_AGENT = "balance-bot/0.1 (+https://github.com/)"
MAX_BODY = 256 * 1024
MAX_REQUEST_BODY = 16 * 1024  # our own JSON bodies are tiny: a key and a field or two
_CLOSED = httpx.ByteStream(b"")  # what a read and closed response keeps as its stream


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Tunables; the defaults suit production, tests shrink the delays."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    attempt_timeout: float = 20.0  # whole attempt incl. slow-drip bodies
    max_body: int = MAX_BODY  # decoded bytes
    attempts: int = 3
    backoff_base: float = 0.5  # seconds; doubles per attempt, with full jitter
    backoff_max: float = 4.0
    max_retry_after: float = 5.0  # a longer Retry-After is returned to the caller instead
    connection_limit: int = 500


class _Network(Exception):
    """An attempt failed below HTTP (connect, timeout, reset): worth one more try."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Decoder:
    """Content-Encoding decoding with a hard cap on output, checked chunk by chunk."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._encoding = encoding
        enc = encoding.strip().lower()
        if enc in ("", "identity"):
            self._z: zlib._Decompress | None = None
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise BillingError(ErrorKind.MALFORMED, "unsupported content encoding")
        self._deflate_probe = enc == "deflate"

    def feed(self, data: bytes) -> bytes:
        if self._z is None:
            out = data
        else:
            budget = self._limit - self._size + 1
            try:
                out = self._z.decompress(data, budget)
            except zlib.error:
                if not self._deflate_probe:
                    raise BillingError(ErrorKind.MALFORMED, "corrupt compressed body") from None
                # "deflate" without the zlib wrapper, as some servers send it
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._deflate_probe = False
                return self.feed(data)
            self._deflate_probe = False
            if self._z.unconsumed_tail:
                self._too_large()
        self._size += len(out)
        if self._size > self._limit:
            self._too_large()
        return out

    def flush(self) -> bytes:
        if self._z is None:
            return b""
        out = self._z.flush()
        self._size += len(out)
        if self._size > self._limit:
            self._too_large()
        return out

    @staticmethod
    def _too_large() -> None:
        raise BillingError(ErrorKind.MALFORMED, "response too large")


class ProviderHttpClient:
    """`HttpClient` for providers: GET or POST with retries, a capped body, fixed-text errors.

    POST exists for balance endpoints that happen to be POST (NanoGPT, claude-relay-service,
    declared providers): read-only queries, so retrying them like a GET is safe. It is not
    meant for anything that changes state at the provider.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        options: HttpOptions,
        *,
        guard_allow_private: bool | None = None,
    ) -> None:
        self._client = client
        self._options = options
        self._guard_allow_private = guard_allow_private  # None = trusted, no URL checks

    @property
    def guarded(self) -> bool:
        return self._guard_allow_private is not None

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        return await self._request("GET", url, dict(headers), params, None)

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """POST `json` (serialised here, at most `MAX_REQUEST_BODY` bytes; None = no body)
        to a read-only endpoint; same guard, timeouts, retries and caps as `get`."""
        if json is None:  # an empty POST (NanoGPT's check-balance takes no body)
            return await self._request("POST", url, dict(headers), params, b"")
        try:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            raise TypeError("the request body must be JSON-serialisable") from None
        if len(content) > MAX_REQUEST_BODY:
            raise BillingError(ErrorKind.MALFORMED, "request body too large")
        sent = {**headers, "Content-Type": "application/json"}
        return await self._request("POST", url, sent, params, content)

    async def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        content: bytes | None,
    ) -> HttpReply:
        await take_turn()  # the sweep's requests take turns in the event loop (turns.py)
        try:
            request = self._client.build_request(
                method, url, headers=headers, params=params, content=content
            )
        except UnicodeEncodeError:
            # A header value outside ASCII: the key itself (URLs are IDNA-encoded and
            # validated first). No provider can accept it; it is not the URL's fault.
            # /add refuses such keys (bot/services/keyshape.py); older rows may hold one.
            raise BillingError(ErrorKind.KEY_REJECTED, "key has non-ASCII characters") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError):
            raise BillingError(ErrorKind.URL_REFUSED, "not a valid URL") from None
        if self._guard_allow_private is not None:
            check_request_url(request.url, allow_private=self._guard_allow_private)

        opts = self._options
        for attempt in range(1, opts.attempts + 1):
            last = attempt == opts.attempts
            try:
                reply = await self._attempt(request)
            except _Network as exc:
                if last:
                    raise BillingError(ErrorKind.NETWORK, exc.detail) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            if last or not (reply.status == 429 or reply.status >= 500):
                return reply
            delay = self._backoff(attempt)
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
            if retry_after is not None:
                if retry_after > opts.max_retry_after:
                    return reply  # too long to wait inline: let the caller report RATE_LIMITED
                delay = retry_after + random.uniform(0, opts.backoff_base / 4)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        cap = min(self._options.backoff_max, self._options.backoff_base * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)

    async def _attempt(self, request: httpx.Request) -> HttpReply:
        try:
            async with asyncio.timeout(self._options.attempt_timeout):
                return await self._send(request)
        except BillingError:
            raise
        except httpx.TimeoutException:
            raise _Network("timed out") from None
        except TimeoutError:
            raise _Network("timed out") from None
        except httpx.UnsupportedProtocol:
            raise BillingError(ErrorKind.URL_REFUSED, "unsupported URL scheme") from None
        except httpx.ConnectError:
            raise _Network("could not connect") from None
        except (httpx.TransportError, aiohttp.ClientError, OSError):
            raise _Network("connection failed") from None

    async def _send(self, request: httpx.Request) -> HttpReply:
        response = await self._client.send(request, stream=True, follow_redirects=False)
        try:
            await take_turn()  # reading and parsing the answer takes its turn too
            status = response.status_code
            if 300 <= status < 400:
                raise BillingError(ErrorKind.PROVIDER_ERROR, "unexpected redirect", status=status)
            limit = self._options.max_body
            encoding = response.headers.get("content-encoding", "")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit and encoding.lower() in ("", "identity"):
                raise BillingError(ErrorKind.MALFORMED, "response too large", status=status)
            decoder = _Decoder(encoding, limit)
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += decoder.feed(chunk)
            body += decoder.flush()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return HttpReply(status=status, body=bytes(body), headers=headers)
        finally:
            await response.aclose()
            # httpx binds the stream to its response (BoundAsyncStream._response): one
            # reference cycle per request, so each request's ~30 objects (headers, the
            # aiohttp response, the request) waited for the garbage collector, whose
            # passes then stalled the event loop (issue 17 item 1). Without the cycle
            # reference counting frees them here.
            response.stream = _CLOSED


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every provider connection (certifi's CAs, as httpx's default).
    Each context loads the whole CA bundle (~0.7 MB, ~20 ms); both clients share one."""
    return ssl.create_default_context(cafile=certifi.where())


def _make_client(
    options: HttpOptions, resolver_factory: type[AbstractResolver] | None, allow_private: bool
) -> httpx.AsyncClient:
    ssl_context = _tls()

    def session() -> aiohttp.ClientSession:
        # Built lazily, inside the running loop, on the first request.
        if resolver_factory is GuardedResolver:
            resolver: AbstractResolver = GuardedResolver(allow_private=allow_private)
            use_cache = False  # validate on every connection
        else:
            resolver = ThreadedResolver()
            use_cache = True
        connector = aiohttp.TCPConnector(
            resolver=resolver,
            use_dns_cache=use_cache,
            limit=options.connection_limit,
            limit_per_host=0,
            ssl=ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry cookies between users
        )

    # verify=: without it the transport builds a context of its own that it never uses.
    transport = AiohttpTransport(client=session, trust_env=False, verify=ssl_context)
    timeout = httpx.Timeout(
        connect=options.connect_timeout,
        read=options.read_timeout,
        write=options.connect_timeout,
        pool=options.connect_timeout * 2,
    )
    client = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        cookies=_no_cookies(),
    )
    if isinstance(getattr(client, "_cookies", None), httpx.Cookies):
        client._cookies = _SkipExtract(client._cookies.jar)
    return client


class _SkipExtract(httpx.Cookies):
    """httpx runs `extract_cookies` on every response, building urllib request/response
    adapters (~4 % of a sweep's CPU) only for the jar to refuse the cookies. Skip it."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _NoCookies(http.cookiejar.CookieJar):
    """Refuses every cookie without parsing Set-Cookie (httpx extracts on each response).

    One user's relay must not set state for another; the refusing policy stays as a
    second line in case a cookie is ever set directly.
    """

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


def _no_cookies() -> http.cookiejar.CookieJar:
    return _NoCookies(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class HttpClients:
    """The two shared clients; create once per process, close with `aclose()`."""

    def __init__(self, options: HttpOptions | None = None, *, allow_private: bool = False) -> None:
        self.options = options or HttpOptions()
        self._trusted_raw = _make_client(self.options, None, False)
        self._guarded_raw = _make_client(self.options, GuardedResolver, allow_private)
        self.trusted = ProviderHttpClient(self._trusted_raw, self.options)
        self.guarded = ProviderHttpClient(
            self._guarded_raw, self.options, guard_allow_private=allow_private
        )

    async def aclose(self) -> None:
        await self._trusted_raw.aclose()
        await self._guarded_raw.aclose()
