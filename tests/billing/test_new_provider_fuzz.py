"""Hostile answers for the 2026 providers: any HTTP 200 JSON body — valid samples with one
field swapped for arbitrary JSON, and arbitrary bodies — gives a bounded result or a
BillingError, never a crash and never the key (nanogpt, aihubmix, 302ai, xai, gemini, sub2api,
crs, litellm, relay's cc-switch reading, a declared provider)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.billing.declared import Auth, DeclaredProvider
from bot.billing.errors import BillingError
from bot.billing.models import BalanceResult
from bot.billing.providers import (
    ai302,
    aihubmix,
    crs,
    gemini,
    litellm,
    nanogpt,
    relay,
    sub2api,
    xai,
)
from bot.billing.providers.base import FetchContext, HttpReply, Provider
from bot.secret import Secret
from tests.billing.test_first_party_fuzz import _paths, _replace, json_values

KEY = "fuzz-key-0123456789abcdef0123456789"
BOUND = Decimal(10) ** 16  # twice the per-figure bound: a difference of two figures

ACME = DeclaredProvider(
    provider_id="acme",
    title="Acme",
    base_url="http://127.0.0.1:9",
    method="POST",
    path="/v1/wallet",
    auth=Auth("body", "apiKey"),
    currency="USD",
    response={
        "remaining": "data.left",
        "total": "data.total",
        "used": "data.items.0.spent",
        "currency": "data.cur",
        "unit": "data.unit",
        "expiry": "data.exp",
        "error": "error.message",
    },
)

SAMPLES: dict[str, tuple[Provider, Any]] = {
    "nanogpt": (nanogpt.PROVIDER, {"usd_balance": "129.46956147", "nano_balance": "26.7"}),
    "aihubmix": (aihubmix.PROVIDER, {"success": True, "data": {"quota": 24997909,
                 "used_quota": 10027091, "request_count": 339, "group": "default"}}),
    "302ai": (ai302.PROVIDER, {"code": 0, "data": {"balance": "12.34", "total": "20"}}),
    "xai": (xai.PROVIDER, {"teamId": "t-1", "scope": "SCOPE_TEAM", "scopeId": "t-1",
            "total": {"val": "-2500"}, "api_key_blocked": False}),
    "gemini": (gemini.PROVIDER, {"models": [{"name": "models/gemini-2.5-flash"}]}),
    "sub2api": (sub2api.PROVIDER, {"mode": "unrestricted", "isValid": True, "planName": "月卡",
                "remaining": 103.88, "unit": "USD", "subscription": {"daily_usage_usd": 96.12,
                "daily_limit_usd": 200, "weekly_usage_usd": 1, "weekly_limit_usd": 1400,
                "weekly_window_start": "2026-03-10T00:00:00+08:00",
                "expires_at": "2026-07-17T17:27:45+08:00"},
                "usage": {"today": {"cost": 1, "actual_cost": 0.7}}}),
    "sub2api-quota": (sub2api.PROVIDER, {"mode": "quota_limited", "status": "active",
                      "quota": {"limit": 50, "used": 12.5, "remaining": 37.5},
                      "rate_limits": [{"window": "5h", "limit": 5, "used": 1,
                                       "reset_at": "2026-03-15T05:00:00Z"}]}),
    "crs": (crs.PROVIDER, {"success": True, "data": {"name": "k",
            "expiresAt": "2026-09-01T00:00:00.000Z", "usage": {"total": {"cost": 3}},
            "limits": {"totalCostLimit": 50, "currentTotalCost": 12.3, "dailyCostLimit": 5,
                       "currentDailyCost": 1, "rateLimitWindow": 300, "rateLimitCost": 10,
                       "currentWindowCost": 2, "rateLimitRequests": 100,
                       "currentWindowRequests": 4, "windowEndTime": 1773550800000,
                       "weeklyOpusCostLimit": 20, "weeklyOpusCost": 3}}}),
    "litellm": (litellm.PROVIDER, {"key": "h", "info": {"spend": 12.5, "max_budget": 50,
                "budget_duration": "30d", "budget_reset_at": "2026-04-01T00:00:00Z",
                "expires": None, "key_alias": "a"}}),
    "relay-cc-switch": (relay.PROVIDER, [{"isValid": True, "planName": "p", "remaining": 3,
                        "total": 10, "used": 7, "unit": "CNY"}]),
    "declared": (ACME, {"data": {"left": "12.5", "total": 20, "items": [{"spent": 7.5}],
                 "cur": "eur", "unit": None, "exp": 1775000000}}),
}  # fmt: skip


class OneReply:
    """Every request, GET or POST, gets the same HTTP 200 JSON body."""

    def __init__(self, body: Any) -> None:
        self.raw = json.dumps(body).encode()

    async def get(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> HttpReply:
        return HttpReply(200, self.raw, {"content-type": "application/json"})

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        return HttpReply(200, self.raw, {"content-type": "application/json"})


async def _check(provider: Provider, body: Any) -> BalanceResult | None:
    ctx = FetchContext(
        http=OneReply(body),
        key=Secret(KEY),
        base_url="http://127.0.0.1:9",
        now=datetime(2026, 3, 15, tzinfo=UTC),
    )
    try:
        result = await provider.fetch(ctx)
    except BillingError as exc:
        assert KEY not in str(exc) and KEY not in exc.detail
        return None
    assert isinstance(result, BalanceResult)
    for name in ("remaining", "total", "used"):
        value = getattr(result, name)
        assert value is None or (isinstance(value, Decimal) and value.is_finite())
        assert value is None or abs(value) < BOUND, (name, value)
    for window in result.windows:
        for value in (window.used, window.limit):
            assert value is None or abs(value) < BOUND
    assert KEY not in repr(result)
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    pick=st.integers(min_value=0, max_value=10**6),
    new=json_values,
)
async def test_mutated_samples_never_crash(name: str, pick: int, new: Any) -> None:
    provider, sample = SAMPLES[name]
    paths = _paths(sample)
    body = _replace(sample, paths[pick % len(paths)], new)
    await _check(provider, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SAMPLES)), body=json_values)
async def test_arbitrary_bodies_never_crash(name: str, body: Any) -> None:
    await _check(SAMPLES[name][0], body)


async def test_samples_are_valid() -> None:
    for name, (provider, sample) in SAMPLES.items():
        result = await _check(provider, sample)
        assert result is not None, name
