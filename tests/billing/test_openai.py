"""openai, openai-session and openai-admin behaviour beyond the YAML fixtures."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import FigureKind, KeyState
from bot.billing.providers import openai, openai_admin, openai_session, relay
from bot.billing.providers.base import Match
from tests.billing.openai_stub import KEY, StubHttp, make_ctx, reply

OPENAI = openai.PROVIDER
SESSION = openai_session.PROVIDER
ADMIN = openai_admin.PROVIDER
COSTS = "/v1/organization/costs"
GRANTS = "/dashboard/billing/credit_grants"

LEGACY = "sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst"
PROJ = "sk-proj-abcdefghijT3BlbkFJabcdefghij"
SVC = "sk-svcacct-abcdefghijT3BlbkFJabcdefghij"
ADMIN_KEY = "sk-admin-abcdefghijT3BlbkFJabcdefghij"
SESS = "sess-abcdefghijklmnopqrstuvwxyz"
BARE = "sk-" + "a" * 48


def test_public_contract() -> None:
    ids = {p.id: p for p in (relay.PROVIDER, OPENAI, SESSION, ADMIN)}
    assert list(ids) == ["relay", "openai", "openai-session", "openai-admin"]
    assert OPENAI.kind is FigureKind.VALIDITY
    assert SESSION.kind is FigureKind.BALANCE
    assert ADMIN.kind is FigureKind.SPEND
    for p in (OPENAI, SESSION, ADMIN):
        assert p.default_base_url == "https://api.openai.com"
        assert p.needs_base_url is False
        assert p.order > relay.PROVIDER.order
        assert p.title and p.hint


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (LEGACY, {"openai": Match.CERTAIN}),
        (PROJ, {"openai": Match.CERTAIN}),
        (SVC, {"openai": Match.CERTAIN}),
        ("sk-proj-nomarker", {"openai": Match.CERTAIN}),
        (ADMIN_KEY, {"openai-admin": Match.CERTAIN}),
        (SESS, {"openai-session": Match.CERTAIN}),
        (BARE, {"relay": Match.POSSIBLE}),
        ("sk-or-v1-" + "0" * 64, {}),
        ("sk-ant-admin01-xyz", {}),
        ("xai-abc", {}),
    ],
)
def test_detect_is_unambiguous(key: str, expected: dict[str, Match]) -> None:
    got = {
        p.id: p.detect(key)
        for p in (relay.PROVIDER, OPENAI, SESSION, ADMIN)
        if p.detect(key) != Match.NO
    }
    assert got == expected


# -- openai ----------------------------------------------------------------------------


async def test_openai_valid_key_has_no_figures() -> None:
    http = StubHttp({"/v1/models": reply(200, {"object": "list", "data": []})})
    result = await OPENAI.fetch(make_ctx(http, base_url="https://api.openai.com"))
    assert result.kind is FigureKind.VALIDITY
    assert (result.remaining, result.total, result.used, result.currency) == (None,) * 4
    assert result.extras["hint"] == "no_balance_api"
    assert http.calls[0].url == "https://api.openai.com/v1/models"
    assert http.calls[0].headers == {"Authorization": f"Bearer {KEY}"}


async def test_openai_401_never_echoes_upstream_or_key() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}
    with pytest.raises(BillingError) as info:
        await OPENAI.fetch(make_ctx(StubHttp({"/v1/models": reply(401, body)})))
    assert info.value.kind is ErrorKind.KEY_REJECTED
    assert info.value.detail == "key rejected"
    assert KEY not in str(info.value) and "Incorrect" not in str(info.value)


async def test_openai_insufficient_quota_is_exhausted_without_number() -> None:
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}}
    result = await OPENAI.fetch(make_ctx(StubHttp({"/v1/models": reply(429, body)})))
    assert result.state is KeyState.EXHAUSTED
    assert result.remaining is None
    assert result.extras["insufficient_quota"] is True


async def test_openai_429_empty_body_is_rate_limited() -> None:
    http = StubHttp({"/v1/models": reply(429, body=b"", headers={"retry-after": "3"})})
    with pytest.raises(BillingError) as info:
        await OPENAI.fetch(make_ctx(http))
    assert info.value.kind is ErrorKind.RATE_LIMITED
    assert info.value.retry_after == 3.0


async def test_openai_unexpected_404_is_provider_error() -> None:
    with pytest.raises(BillingError) as info:
        await OPENAI.fetch(make_ctx(StubHttp()))
    assert info.value.kind is ErrorKind.PROVIDER_ERROR


# -- openai-session --------------------------------------------------------------------


def grants(*expiries: float, available: object = 17.3715455) -> dict[str, object]:
    return {
        "object": "credit_summary",
        "total_granted": 18.0,
        "total_used": 0.6284545,
        "total_available": available,
        "grants": {
            "object": "list",
            "data": [{"object": "credit_grant", "expires_at": e} for e in expiries],
        },
    }


async def test_session_exact_decimals_and_earliest_future_expiry() -> None:
    http = StubHttp({GRANTS: reply(200, grants(1682899200.0, 1830297600.0, 1798761600.0))})
    result = await SESSION.fetch(make_ctx(http, base_url="https://api.openai.com", key=SESS))
    assert result.remaining == Decimal("17.3715455")
    assert result.total == Decimal("18.0")
    assert result.used == Decimal("0.6284545")
    assert result.currency == "USD"
    assert result.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert result.state is KeyState.OK
    assert http.calls[0].url == "https://api.openai.com/dashboard/billing/credit_grants"


async def test_session_grants_as_plain_list_tolerated() -> None:
    body = grants()
    body["grants"] = [{"expires_at": 1798761600}]
    result = await SESSION.fetch(make_ctx(StubHttp({GRANTS: reply(200, body)}), key=SESS))
    assert result.expires_at == datetime(2027, 1, 1, tzinfo=UTC)


async def test_session_other_403_is_key_rejected() -> None:
    body = {"error": {"message": "Country, region, or territory not supported"}}
    with pytest.raises(BillingError) as info:
        await SESSION.fetch(make_ctx(StubHttp({GRANTS: reply(403, body)}), key=SESS))
    assert info.value.kind is ErrorKind.KEY_REJECTED


async def test_session_key_type_error_for_401_too() -> None:
    body = {"error": {"message": "... must be made with a session key ..."}}
    with pytest.raises(BillingError) as info:
        await SESSION.fetch(make_ctx(StubHttp({GRANTS: reply(401, body)}), key=LEGACY))
    assert info.value.kind is ErrorKind.WRONG_KEY_TYPE
    assert "session key (that" not in str(info.value)


# -- openai-admin ----------------------------------------------------------------------


def page(
    *values: object, more: bool = False, cursor: str | None = None, cur: str = "usd"
) -> object:
    results = [{"amount": {"value": v, "currency": cur}} for v in values]
    return reply(
        200,
        {
            "object": "page",
            "data": [{"object": "bucket", "results": results}],
            "has_more": more,
            "next_page": cursor,
        },
    )


async def test_admin_month_to_date_params() -> None:
    http = StubHttp({COSTS: [page("1.5", more=True, cursor="c1"), page(2)]})
    result = await ADMIN.fetch(make_ctx(http, base_url="https://api.openai.com", key=ADMIN_KEY))
    month_start = datetime(2026, 11, 1, tzinfo=UTC)
    assert result.kind is FigureKind.SPEND
    assert result.used == Decimal("3.5")
    assert result.period_start == month_start
    assert result.estimate is False
    first, second = http.calls
    assert first.url == "https://api.openai.com/v1/organization/costs"
    assert first.params == {
        "start_time": str(int(month_start.timestamp())),
        "bucket_width": "1d",
        "limit": "180",
    }
    assert second.params == {**first.params, "page": "c1"}


async def test_admin_estimate_counts_from_start_date_midnight() -> None:
    http = StubHttp({COSTS: page("0.25")})
    options = {"start_balance": "20", "start_date": "2026-10-05T15:30:00+02:00"}
    result = await ADMIN.fetch(make_ctx(http, key=ADMIN_KEY, options=options))
    since = datetime(2026, 10, 5, tzinfo=UTC)
    assert http.calls[0].params["start_time"] == str(int(since.timestamp()))
    assert result.kind is FigureKind.BALANCE
    assert result.estimate is True
    assert result.remaining == Decimal("19.75")
    assert result.total == Decimal("20")
    assert result.period_start == since


@pytest.mark.parametrize(
    "options",
    [
        {"start_balance": "abc", "start_date": "2026-10-01"},
        {"start_balance": "10", "start_date": "2026-12-01"},  # in the future
        {"start_balance": "10"},
        {"start_balance": "NaN", "start_date": "2026-10-01"},
    ],
)
async def test_admin_unusable_start_balance_falls_back_to_spend(options: dict[str, str]) -> None:
    result = await ADMIN.fetch(make_ctx(StubHttp({COSTS: page(1)}), key=ADMIN_KEY, options=options))
    assert result.kind is FigureKind.SPEND
    assert result.remaining is None
    assert result.extras["start_balance_ignored"] is True


async def test_admin_pagination_is_capped() -> None:
    pages = [page(1, more=True, cursor=f"c{i}") for i in range(100)]
    http = StubHttp({COSTS: pages})
    with pytest.raises(BillingError) as info:
        await ADMIN.fetch(make_ctx(http, key=ADMIN_KEY))
    assert info.value.kind is ErrorKind.MALFORMED
    assert len(http.calls) == openai_admin.MAX_PAGES


async def test_admin_currency_upper_cased_and_mixed_refused() -> None:
    result = await ADMIN.fetch(make_ctx(StubHttp({COSTS: page(1, cur="eur")}), key=ADMIN_KEY))
    assert result.currency == "EUR"
    http = StubHttp({COSTS: [page(1, more=True, cursor="x"), page(1, cur="eur")]})
    with pytest.raises(BillingError) as info:
        await ADMIN.fetch(make_ctx(http, key=ADMIN_KEY))
    assert info.value.kind is ErrorKind.MALFORMED


async def test_admin_403_without_scope_text_is_key_rejected() -> None:
    body = {"error": {"message": "Country, region, or territory not supported"}}
    with pytest.raises(BillingError) as info:
        await ADMIN.fetch(make_ctx(StubHttp({COSTS: reply(403, body)}), key=ADMIN_KEY))
    assert info.value.kind is ErrorKind.KEY_REJECTED


async def test_admin_400_is_provider_error() -> None:
    body = {"error": {"message": "start_time is invalid"}}
    with pytest.raises(BillingError) as info:
        await ADMIN.fetch(make_ctx(StubHttp({COSTS: reply(400, body)}), key=ADMIN_KEY))
    assert info.value.kind is ErrorKind.PROVIDER_ERROR
