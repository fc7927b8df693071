"""Shared pieces for billing tests: fake servers, a tiny test provider, scripted DNS."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohappyeyeballs
import pytest

from bot.billing import ssrf
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.http import HttpOptions
from bot.billing.models import BalanceResult, FigureKind
from bot.billing.providers.base import FetchContext, Match, Provider
from bot.billing.registry import ProviderRegistry
from bot.billing.service import BillingService
from bot.settings import Settings
from tests.fakes.provider_server import FakeProviderServer

FAST = HttpOptions(
    connect_timeout=1.0,
    read_timeout=2.0,
    attempt_timeout=5.0,
    backoff_base=0.01,
    backoff_max=0.02,
    max_retry_after=2.0,
)


class EchoProvider(Provider):
    """GET {base}/balance → {"remaining": "1.23"}; the simplest honest provider."""

    id = "test-echo"
    title = "Test Echo"
    hint = "test provider"
    kind = FigureKind.BALANCE
    order = 10

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("echo-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(f"{ctx.base_url}/balance", headers=ctx.bearer())
        if reply.status in (401, 403):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if reply.status != 200:
            raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}")
        data = reply.json()
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=ctx.options.get("currency", "USD"),
            remaining=Decimal(str(data["remaining"])),
        )


class OtherEchoProvider(EchoProvider):
    id = "test-other"
    title = "Other"
    order = 20

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if key.startswith("sk-") else Match.NO


class AmbiguousProvider(EchoProvider):
    id = "test-ambiguous"
    title = "Ambiguous"
    order = 15

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if key.startswith("sk-") else Match.NO


class RelayLikeProvider(EchoProvider):
    id = "relay"
    title = "Relay"
    needs_base_url = True
    order = 90


class BoomProvider(EchoProvider):
    """A buggy provider: raises a non-BillingError whose message holds secret-ish text."""

    id = "test-boom"
    title = "Boom"
    order = 30

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        raise RuntimeError(f"upstream said: {ctx.key.reveal()} <html>internal</html>")


def registry(*extra: Provider) -> ProviderRegistry:
    return ProviderRegistry(
        [
            EchoProvider(),
            OtherEchoProvider(),
            AmbiguousProvider(),
            RelayLikeProvider(),
            BoomProvider(),
            *extra,
        ]
    )


def settings(*, allow_private: bool = False, **urls: str) -> Settings:
    """Settings with no .env and PROVIDER_<ID>_BASE_URL overrides given as keyword args."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        allow_private_base_urls=allow_private,
        provider_base_urls={k.upper(): v for k, v in urls.items()},
    )


def make_service(cfg: Settings, **kwargs: Any) -> BillingService:
    kwargs.setdefault("registry", registry())
    kwargs.setdefault("http_options", FAST)
    return BillingService(cfg, **kwargs)


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    srv = await FakeProviderServer().start()
    yield srv
    await srv.stop()


@pytest.fixture
async def server2() -> AsyncIterator[FakeProviderServer]:
    srv = await FakeProviderServer().start()
    yield srv
    await srv.stop()


def _addrinfo(ip: str, port: int) -> tuple[Any, ...]:
    if ":" in ip:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))


class ScriptedDNS:
    """Replaces `ssrf.getaddrinfo`: each lookup takes the next answer; the last repeats."""

    def __init__(self, *rounds: list[str]) -> None:
        self.rounds = list(rounds)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int, family: int) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        ips = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        return [_addrinfo(ip, port) for ip in ips]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedDNS]:
    def install(*rounds: list[str]) -> ScriptedDNS:
        scripted = ScriptedDNS(*rounds)
        monkeypatch.setattr(ssrf, "getaddrinfo", scripted)
        return scripted

    return install


class ConnectSpy:
    """Records every address aiohttp opens a socket to; can redirect one IP elsewhere."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.redirect: dict[str, tuple[str, int]] = {}


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    original = aiohappyeyeballs.start_connection

    async def start_connection(addr_infos: list[Any], **kwargs: Any) -> socket.socket:
        mapped = []
        for family, type_, proto, canon, sockaddr in addr_infos:
            spy.targets.append(sockaddr[0])
            if sockaddr[0] in spy.redirect:
                host, port = spy.redirect[sockaddr[0]]
                family, sockaddr = socket.AF_INET, (host, port)
            mapped.append((family, type_, proto, canon, sockaddr))
        return await original(mapped, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", start_connection)
    return spy
