"""Relay provider behaviour that the YAML fixtures cannot express (frozen clock, params, URLs)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import FigureKind, KeyState
from bot.billing.providers.base import Match
from bot.billing.providers.relay import PROVIDER
from tests.billing.openai_stub import KEY, NOW, StubHttp, make_ctx, reply

SUB = "/v1/dashboard/billing/subscription"
USAGE = "/v1/dashboard/billing/usage"


def legacy(hard: object = 5, usage: object = 80, **sub: object) -> dict[str, object]:
    return {
        SUB: reply(200, {"object": "billing_subscription", "hard_limit_usd": hard, **sub}),
        USAGE: reply(200, {"object": "list", "total_usage": usage}),
    }


def token_usage(**data: object) -> object:
    return reply(200, {"code": True, "message": "ok", "data": data})


def test_public_contract() -> None:
    assert PROVIDER.id == "relay"
    assert PROVIDER.needs_base_url is True
    assert PROVIDER.default_base_url is None
    assert PROVIDER.kind is FigureKind.BALANCE
    assert PROVIDER.order == 10
    assert PROVIDER.title and PROVIDER.hint


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("sk-" + "a" * 48, Match.POSSIBLE),
        ("sk-0123456789abcdef0123456789abcdef", Match.POSSIBLE),
        ("sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst", Match.NO),
        ("sk-proj-abcT3BlbkFJdef", Match.NO),
        ("sk-admin-abcT3BlbkFJdef", Match.NO),
        ("sk-or-v1-" + "0" * 64, Match.NO),
        ("sk-ant-api03-xyz", Match.NO),
        ("sess-abcdef", Match.NO),
        ("gsk_abc", Match.NO),
    ],
)
def test_detect(key: str, match: Match) -> None:
    assert PROVIDER.detect(key) == match


async def test_legacy_sends_valid_window_and_bearer() -> None:
    http = StubHttp(legacy())
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.remaining == Decimal("4.20")
    usage_call = http.calls[-1]
    assert usage_call.params == {"start_date": "2026-08-16", "end_date": "2026-11-23"}
    assert (NOW.date() - datetime.fromisoformat("2026-08-16").date()).days < 100
    assert all(c.headers == {"Authorization": f"Bearer {KEY}"} for c in http.calls)
    assert all(KEY not in c.url for c in http.calls)


@pytest.mark.parametrize(
    ("base", "prefix"),
    [
        ("https://relay.example", ""),
        ("https://relay.example/", ""),
        ("https://relay.example/v1", ""),
        ("https://relay.example/v1/", ""),
        ("https://relay.example/openai", "/openai"),
        ("https://relay.example/openai/v1", "/openai"),
    ],
)
async def test_base_url_forms_never_double_v1(base: str, prefix: str) -> None:
    http = StubHttp({prefix + p: r for p, r in legacy().items()})
    result = await PROVIDER.fetch(make_ctx(http, base_url=base))
    assert result.remaining == Decimal("4.20")
    assert http.paths == [f"{prefix}/api/usage/token", prefix + SUB, prefix + USAGE]
    assert not any("/v1/v1" in c.url for c in http.calls)


async def test_legacy_expiry_and_extras() -> None:
    http = StubHttp(legacy(access_until=1798761600, plan={"title": "Pro", "id": "x"}))
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert result.never_expires is False
    assert result.state is KeyState.OK
    assert result.extras["plan"] == "Pro"
    assert result.extras["source"] == "billing_subscription"


@pytest.mark.parametrize(
    ("access_until", "expires_at", "never"),
    [(0, None, True), (-1, None, True), ("0", None, True), (None, None, False)],
)
async def test_access_until_sentinels(
    access_until: object, expires_at: datetime | None, never: bool
) -> None:
    extra = {} if access_until is None else {"access_until": access_until}
    result = await PROVIDER.fetch(make_ctx(StubHttp(legacy(**extra))))
    assert result.expires_at == expires_at
    assert result.never_expires is never


async def test_access_until_now_is_expired() -> None:
    result = await PROVIDER.fetch(make_ctx(StubHttp(legacy(access_until=int(NOW.timestamp())))))
    assert result.state is KeyState.EXPIRED


@pytest.mark.parametrize(
    ("hard", "unlimited"),
    [(99_999_999.99, False), (100_000_000, True), ("100000000", True), (2e8, True)],
)
async def test_unlimited_sentinel_threshold(hard: object, unlimited: bool) -> None:
    result = await PROVIDER.fetch(make_ctx(StubHttp(legacy(hard=hard, usage=100))))
    assert result.unlimited is unlimited
    assert (result.remaining is None) is unlimited
    assert (result.total is None) is unlimited
    assert result.used == Decimal("1")


async def test_no_binary_float_artifacts() -> None:
    result = await PROVIDER.fetch(make_ctx(StubHttp(legacy(hard=0.3, usage=10))))
    assert result.remaining == Decimal("0.2")
    assert str(result.remaining) == "0.2"


@pytest.mark.parametrize(
    ("option", "currency", "unit"),
    [("CNY", "CNY", None), (" cny ", "CNY", None), ("", "USD", None), ("tokens", None, "quota")],
)
async def test_currency_option(option: str, currency: str | None, unit: str | None) -> None:
    result = await PROVIDER.fetch(make_ctx(StubHttp(legacy()), options={"currency": option}))
    assert result.currency == currency
    assert result.extras.get("unit") == unit


async def test_exhausted_401_uses_user_currency_and_stops() -> None:
    body = {"error": {"message": f"令牌 {KEY}（#3）额度已用尽", "type": "one_api_error"}}
    http = StubHttp({SUB: reply(401, body)})
    result = await PROVIDER.fetch(make_ctx(http, options={"currency": "CNY"}))
    assert result.state is KeyState.EXHAUSTED
    assert result.remaining == Decimal(0)
    assert result.currency == "CNY"
    assert result.total is None and result.used is None
    assert result.extras["source"] == "auth_error"
    assert http.paths == ["/api/usage/token", SUB]
    assert KEY not in repr(result)


async def test_exhausted_message_on_token_usage_401_short_circuits() -> None:
    body = {"success": False, "message": "该令牌额度已用尽"}
    http = StubHttp({"/api/usage/token": reply(401, body)})
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.state is KeyState.EXHAUSTED
    assert http.paths == ["/api/usage/token"]


async def test_rejection_never_carries_upstream_text_or_key() -> None:
    body = {"error": {"message": f"无效的令牌 {KEY} secret-upstream-text"}}
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(StubHttp({SUB: reply(401, body)})))
    assert info.value.kind is ErrorKind.KEY_REJECTED
    assert info.value.status == 401
    assert KEY not in str(info.value)
    assert "upstream" not in str(info.value)
    assert info.value.detail == "relay rejected the key"


async def test_token_usage_5xx_then_no_legacy_is_provider_error_not_no_api() -> None:
    http = StubHttp({"/api/usage/token": reply(502, body=b"bad gateway")})
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(http))
    assert info.value.kind is ErrorKind.PROVIDER_ERROR


async def test_token_usage_5xx_then_legacy_answers() -> None:
    http = StubHttp({"/api/usage/token": reply(500, body=b"x"), **legacy()})
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.remaining == Decimal("4.20")


async def test_status_5xx_is_transient_error() -> None:
    http = StubHttp(
        {
            "/api/usage/token": token_usage(total_available=1, total_granted=1, total_used=0),
            "/api/status": reply(503, body=b""),
        }
    )
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(http))
    assert info.value.kind is ErrorKind.PROVIDER_ERROR


@pytest.mark.parametrize("qpu", [0, -5, "abc", True])
async def test_status_bad_quota_per_unit_is_malformed(qpu: object) -> None:
    http = StubHttp(
        {
            "/api/usage/token": token_usage(total_available=1, total_granted=1, total_used=0),
            "/api/status": reply(200, {"success": True, "data": {"quota_per_unit": qpu}}),
        }
    )
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(http))
    assert info.value.kind is ErrorKind.MALFORMED


@pytest.mark.parametrize(
    ("status", "currency", "remaining", "extras"),
    [
        ({"quota_per_unit": 500000, "quota_display_type": "CNY"}, "USD", "2", {}),
        (
            {"quota_per_unit": 500000, "quota_display_type": "CNY", "usd_exchange_rate": "abc"},
            "USD",
            "2",
            {},
        ),
        ({"quota_per_unit": 500000, "quota_display_type": "usd"}, "USD", "2", {}),
        ({"quota_per_unit": 500000, "quota_display_type": "WEIRD"}, "USD", "2", {}),
        (
            {"quota_per_unit": 500000, "display_in_currency": False},
            None,
            "1000000",
            {"unit": "tokens"},
        ),
        ({"quota_per_unit": 500000, "display_in_currency": True}, "USD", "2", {}),
        ({}, "USD", "2", {}),
        (
            {
                "quota_per_unit": 500000,
                "quota_display_type": "CUSTOM",
                "custom_currency_symbol": "€",
                "custom_currency_exchange_rate": "0.9",
            },
            None,
            "1.8",
            {"currency_symbol": "€"},
        ),
    ],
)
async def test_status_variants(
    status: dict[str, object], currency: str | None, remaining: str, extras: dict[str, str]
) -> None:
    http = StubHttp(
        {
            "/api/usage/token": token_usage(
                total_available=1000000, total_granted=1000000, total_used=0, expires_at=0
            ),
            "/api/status": reply(200, {"success": True, "data": status}),
        }
    )
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.currency == currency
    assert result.remaining == Decimal(remaining)
    for name, value in extras.items():
        assert result.extras[name] == value


async def test_status_page_missing_shows_raw_quota_honestly() -> None:
    http = StubHttp({"/api/usage/token": token_usage(total_available=5, total_granted=9)})
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.currency is None
    assert result.remaining == Decimal(5)
    assert result.used is None  # not sent: not zero
    assert result.extras["units_unknown"] is True


async def test_token_usage_expiry_name_and_truncation() -> None:
    http = StubHttp(
        {
            "/api/usage/token": token_usage(
                name="n" * 500,
                total_available=0,
                total_granted=10,
                total_used=10,
                expires_at=1798761600,
            ),
            "/api/status": reply(200, {"success": True, "data": {"quota_per_unit": 10}}),
        }
    )
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert result.state is KeyState.EXHAUSTED
    assert result.extras["token_name"] == "n" * 100
    assert result.extras["source"] == "token_usage"


async def test_token_usage_expired_wins_over_exhausted() -> None:
    http = StubHttp(
        {
            "/api/usage/token": token_usage(
                total_available=0, total_granted=10, total_used=10, expires_at=1700000000
            ),
            "/api/status": reply(200, {"success": True, "data": {}}),
        }
    )
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.state is KeyState.EXPIRED


async def test_error_body_with_string_error_is_provider_error() -> None:
    http = StubHttp({SUB: reply(200, {"error": "quota service down"})})
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(http))
    assert info.value.kind is ErrorKind.PROVIDER_ERROR


async def test_usage_route_missing_after_subscription_is_malformed() -> None:
    routes = legacy()
    del routes[USAGE]
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(StubHttp(routes)))
    assert info.value.kind is ErrorKind.MALFORMED


@pytest.mark.parametrize("bad", [True, "n/a", "NaN", "Infinity", [], {}])
async def test_garbage_amounts_are_malformed_not_zero(bad: object) -> None:
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(make_ctx(StubHttp(legacy(hard=bad))))
    assert info.value.kind is ErrorKind.MALFORMED


BROKEN = reply(200, body=b'{"object": "billing_subscription", "hard_limit_usd": ')


@pytest.mark.parametrize(
    "routes",
    [
        {SUB: BROKEN, "/dashboard/billing/subscription": BROKEN},
        {"/api/usage/token": BROKEN},
        {"/api/usage/token": reply(200, body=b"\x00\xff garbage")},
    ],
)
async def test_200_with_broken_json_is_malformed_not_no_balance_api(routes: dict) -> None:
    """Issue 11: the site answered, with garbage — MALFORMED, not "no balance API"."""
    with pytest.raises(BillingError) as err:
        await PROVIDER.fetch(make_ctx(StubHttp(routes)))
    assert err.value.kind is ErrorKind.MALFORMED


async def test_broken_json_on_one_route_does_not_hide_a_good_answer() -> None:
    http = StubHttp({"/api/usage/token": BROKEN, **legacy()})
    result = await PROVIDER.fetch(make_ctx(http))
    assert result.total == Decimal(5)
