"""A circuit breaker per provider host (issue 11, known gap): a provider that is down is
not hammered; skipped checks say "provider down since …" with the program's clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.billing import breaker
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import KeyRequest
from bot.secret import Secret
from tests.billing.conftest import make_service, settings
from tests.fakes.provider_server import FakeProviderServer

T0 = datetime(2026, 11, 24, 14, 2, tzinfo=UTC)


class Clocks:
    """The program's clock and the monotonic timer, both moved by the test."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def clock(self) -> datetime:
        return self.now

    def timer(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def req(n: int, provider: str = "test-echo", base_url: str | None = None) -> KeyRequest:
    return KeyRequest(f"id-{n}", provider, Secret(f"echo-key-{n:>06}"), base_url)


def down(outcome: object) -> bool:
    err = getattr(outcome, "error", None)
    return isinstance(err, BillingError) and err.kind is ErrorKind.PROVIDER_DOWN


async def test_a_host_that_keeps_failing_is_skipped_then_probed(server: FakeProviderServer) -> None:
    server.reply("/balance", status=500, json={"error": "down"})
    clocks = Clocks()
    service = make_service(
        settings(test_echo=server.url), clock=clocks.clock, timer=clocks.timer, cache_ttl=0
    )
    try:
        for n in range(breaker.FAILURES):
            outcome = await service.fetch(req(n))
            assert outcome.error is not None and outcome.error.kind is ErrorKind.PROVIDER_ERROR
            clocks.advance(1)
        asked = server.count()
        outcomes = await service.fetch_many([req(n) for n in range(100, 150)])
        assert all(down(o) for o in outcomes)
        assert server.count() == asked  # fifty checks, not one request
        err = outcomes[0].error
        assert isinstance(err, BillingError) and err.since == T0 and err.transient

        clocks.advance(breaker.COOLOFF)  # cool-off over: one probe at a time
        probes = await service.fetch_many([req(n) for n in range(200, 210)])
        assert server.count() > asked and sum(not down(o) for o in probes) == 1
        asked = server.count()

        clocks.advance(breaker.COOLOFF)  # the probe failed: open for twice as long
        assert down(await service.fetch(req(300))) and server.count() == asked
        clocks.advance(breaker.COOLOFF)
        server.reply("/balance", json={"remaining": "4.20"})
        assert (await service.fetch(req(301))).ok  # the probe answers: closed
        assert all(o.ok for o in await service.fetch_many([req(n) for n in range(400, 420)]))
    finally:
        await service.aclose()


async def test_any_answer_from_the_host_keeps_it_closed(server: FakeProviderServer) -> None:
    """A rejected key is the host answering: it resets the streak."""
    clocks = Clocks()
    service = make_service(settings(test_echo=server.url), clock=clocks.clock, timer=clocks.timer)
    try:
        for _ in range(3):
            for _ in range(breaker.FAILURES - 1):
                server.reply("/balance", status=503, json={"error": "busy"})
                await service.fetch(req(1), use_cache=False)
            server.reply("/balance", status=401, json={"error": "who"})
            rejected = await service.fetch(req(1), use_cache=False)
            assert rejected.error is not None and rejected.error.kind is ErrorKind.KEY_REJECTED
        server.reply("/balance", json={"remaining": "1"})
        assert (await service.fetch(req(2))).ok
    finally:
        await service.aclose()


async def test_a_users_relay_never_trips_a_breaker(server: FakeProviderServer) -> None:
    """User hosts only have their per-host cap: one user's relay cannot pause anyone."""
    server.reply("/balance", status=500, json={"error": "down"})
    service = make_service(settings(allow_private=True), cache_ttl=0)
    try:
        for n in range(breaker.FAILURES * 3):
            outcome = await service.fetch(req(n, provider="relay", base_url=server.url))
            assert not down(outcome)
    finally:
        await service.aclose()


async def test_a_cancelled_probe_does_not_keep_the_host_shut(server: FakeProviderServer) -> None:
    server.reply("/balance", status=500, json={"error": "down"})
    clocks = Clocks()
    service = make_service(
        settings(test_echo=server.url), clock=clocks.clock, timer=clocks.timer, cache_ttl=0
    )
    try:
        for n in range(breaker.FAILURES):
            await service.fetch(req(n))
        clocks.advance(breaker.COOLOFF)
        server.reply("/balance", json={"remaining": "1"}, delay=5)
        probe = asyncio.ensure_future(service.fetch(req(50)))
        await asyncio.sleep(0.3)
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        server.reply("/balance", json={"remaining": "1"})
        assert (await service.fetch(req(51))).ok
    finally:
        await service.aclose()
