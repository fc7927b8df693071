"""Site facts are learnt once per service: a one-api relay costs two requests per key
check, not three, and a new-api site's units are read once — through the real stack."""

from __future__ import annotations

from decimal import Decimal

from bot.billing.models import KeyRequest
from bot.billing.providers.base import SiteMemo
from bot.billing.service import BillingService
from bot.secret import Secret
from tests.fakes.provider_server import FakeProviderServer


def _req(n: int, url: str) -> KeyRequest:
    return KeyRequest(f"k{n}", "relay", Secret(f"sk-memo{n:030d}"), base_url=url)


async def test_one_api_site_skips_token_usage_after_first_404(make_settings) -> None:
    server = await FakeProviderServer().start()
    server.reply(
        "/v1/dashboard/billing/subscription",
        json={"object": "billing_subscription", "hard_limit_usd": 5, "access_until": 0},
    )
    server.reply("/v1/dashboard/billing/usage", json={"object": "list", "total_usage": 80})
    billing = BillingService(make_settings())
    try:
        # Keys checked at the same moment all ask; the ones after that don't.
        first = await billing.fetch(_req(0, server.url))
        outcomes = [first, *await billing.fetch_many([_req(i, server.url) for i in range(1, 5)])]
        assert all(o.result is not None and o.result.remaining == Decimal("4.2") for o in outcomes)
        assert server.count("/api/usage/token") == 1  # learnt once that the route is missing
        assert server.count("/v1/dashboard/billing/subscription") == 5
    finally:
        await billing.aclose()
        await server.stop()


async def test_new_api_units_read_once(make_settings) -> None:
    server = await FakeProviderServer().start()
    server.reply(
        "/api/usage/token",
        json={
            "code": True,
            "message": "ok",
            "data": {
                "object": "token_usage",
                "total_granted": 1_000_000,
                "total_used": 500_000,
                "total_available": 500_000,
                "unlimited_quota": False,
                "expires_at": 0,
            },
        },
    )
    server.reply(
        "/api/status",
        json={
            "success": True,
            "data": {"quota_per_unit": 500000, "quota_display_type": "CNY", "usd_exchange_rate": 7},
        },
    )
    billing = BillingService(make_settings())
    try:
        first = await billing.fetch(_req(0, server.url))
        outcomes = [first, *await billing.fetch_many([_req(i, server.url) for i in range(1, 4)])]
        assert [o.result.remaining for o in outcomes if o.result] == [Decimal(7)] * 4
        assert {o.result.currency for o in outcomes if o.result} == {"CNY"}
        assert server.count("/api/status") == 1
        assert server.count("/api/usage/token") == 4
    finally:
        await billing.aclose()
        await server.stop()


def test_memo_expires_and_is_bounded(monkeypatch) -> None:
    memo = SiteMemo(ttl=10, max_entries=2)
    now = [1000.0]
    monkeypatch.setattr("bot.billing.providers.base.time.monotonic", lambda: now[0])
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)
    assert memo.get("a") is None and memo.get("b") == 2 and memo.get("c") == 3
    now[0] += 11
    assert memo.get("b") is None
