"""Hypothesis properties of amount and date parsing (`_parse`) and of the relay/OpenAI money maths.

Example-based tests of the same helpers live in test_parse.py; these search for the inputs
nobody thought of: float artifacts, odd exponents, garbage JSON, timestamp edges.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.providers import openai_admin, relay
from bot.billing.providers._parse import from_unix, to_decimal
from tests.billing.openai_stub import StubHttp, make_ctx, reply

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TS = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
#: Money as providers send it: up to 15 significant digits, so a JSON float keeps it exactly.
money = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False
).filter(lambda d: len(d.normalize().as_tuple().digits) <= 15)


@given(st.integers())
def test_int_is_exact(value: int) -> None:
    assert to_decimal(value) == Decimal(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_goes_through_its_shortest_repr(value: float) -> None:
    parsed = to_decimal(value)
    assert parsed == Decimal(repr(value))
    assert float(parsed) == value  # nothing lost, nothing added


@given(money)
def test_json_number_and_string_agree(amount: Decimal) -> None:
    as_number = json.loads(json.dumps({"v": float(amount)}))["v"]
    as_string = json.loads(json.dumps({"v": str(amount)}))["v"]
    assert to_decimal(as_number) == amount
    assert to_decimal(as_string) == amount
    assert to_decimal(f"  {amount}  ") == amount


@given(st.lists(money, max_size=30))
def test_sums_of_parsed_floats_are_exact(amounts: list[Decimal]) -> None:
    parsed = sum((to_decimal(float(a)) for a in amounts), Decimal(0))
    assert parsed == sum(amounts, Decimal(0))


@given(json_values)
def test_any_json_value_gives_a_finite_decimal_or_malformed(value: Any) -> None:
    try:
        result = to_decimal(value)
    except BillingError as exc:
        assert exc.kind is ErrorKind.MALFORMED
    else:
        assert result.is_finite()
        assert not isinstance(value, bool) and value is not None


@given(st.text(max_size=40))
def test_any_text_gives_a_finite_decimal_or_malformed(text: str) -> None:
    try:
        result = to_decimal(text)
    except BillingError as exc:
        assert exc.kind is ErrorKind.MALFORMED
    else:
        assert result.is_finite()
        assert result == Decimal(text.strip())


@given(st.sampled_from(["nan", "NaN", "-nan", "snan", "inf", "-Infinity", "+inf"]))
def test_non_finite_spellings_refused(text: str) -> None:
    for value in (text, text.upper()):
        try:
            to_decimal(value)
        except BillingError as exc:
            assert exc.kind is ErrorKind.MALFORMED
        else:
            raise AssertionError(f"{value!r} accepted")


@given(st.sampled_from([math.nan, -math.nan, math.inf, -math.inf]))
def test_non_finite_floats_refused(value: float) -> None:
    try:
        to_decimal(value)
    except BillingError as exc:
        assert exc.kind is ErrorKind.MALFORMED
    else:
        raise AssertionError("non-finite float accepted")


@given(st.integers(min_value=1, max_value=MAX_TS))
def test_unix_seconds_int_and_string(seconds: int) -> None:
    expected = EPOCH + timedelta(seconds=seconds)
    assert from_unix(seconds) == expected
    assert from_unix(str(seconds)) == expected
    when = from_unix(seconds)
    assert when is not None and when.tzinfo is not None and when.utcoffset() == timedelta(0)


@given(st.floats(min_value=1, max_value=4_102_444_800, allow_nan=False))
def test_unix_seconds_float_within_a_millisecond(seconds: float) -> None:
    when = from_unix(seconds)
    assert when is not None
    assert abs((when - EPOCH).total_seconds() - seconds) < 1e-3


@given(st.integers(max_value=0) | st.floats(max_value=0, allow_nan=False, allow_infinity=False))
def test_non_positive_unix_is_not_a_date(seconds: float) -> None:
    assert from_unix(seconds) is None


@given(json_values)
def test_from_unix_never_raises_anything_but_malformed(value: Any) -> None:
    try:
        result = from_unix(value)
    except BillingError as exc:
        assert exc.kind is ErrorKind.MALFORMED
    else:
        assert result is None or result.tzinfo is not None


# -- the providers' money maths --------------------------------------------------------

cents = st.decimals(min_value=0, max_value=Decimal("1e9"), places=4, allow_nan=False)
limits = st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=5, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(limits, cents, st.booleans())
def test_relay_legacy_remaining_is_exact(hard: Decimal, usage: Decimal, as_string: bool) -> None:
    def enc(d: Decimal) -> object:
        return str(d) if as_string else float(d)

    http = StubHttp(
        {
            "/v1/dashboard/billing/subscription": reply(
                200,
                {"object": "billing_subscription", "hard_limit_usd": enc(hard), "access_until": 0},
            ),
            "/v1/dashboard/billing/usage": reply(
                200, {"object": "list", "total_usage": enc(usage)}
            ),
        }
    )
    result = asyncio.run(relay.PROVIDER.fetch(make_ctx(http)))
    assert result.total == hard
    assert result.used == usage / 100
    assert result.remaining == hard - usage / 100
    assert result.unlimited is False


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=1, max_value=10**7),
    st.decimals(min_value=Decimal("0.01"), max_value=1000, places=2, allow_nan=False),
)
def test_new_api_quota_conversion_is_exact(
    available: int, used: int, per_unit: int, rate: Decimal
) -> None:
    http = StubHttp(
        {
            "/api/usage/token": reply(
                200,
                {
                    "code": True,
                    "data": {
                        "total_available": available,
                        "total_used": used,
                        "total_granted": available + used,
                        "unlimited_quota": False,
                        "expires_at": 0,
                    },
                },
            ),
            "/api/status": reply(
                200,
                {
                    "success": True,
                    "data": {
                        "quota_per_unit": per_unit,
                        "quota_display_type": "CNY",
                        "usd_exchange_rate": str(rate),
                    },
                },
            ),
        }
    )
    result = asyncio.run(relay.PROVIDER.fetch(make_ctx(http)))
    assert result.currency == "CNY"
    assert result.remaining is not None and result.used is not None and result.total is not None
    # Decimal division rounds to 28 digits at most: compare within that precision.
    assert abs(result.remaining * per_unit - available * rate) <= Decimal("1e-10") * (
        available * rate + 1
    )
    assert abs(result.total - result.remaining - result.used) <= Decimal("1e-12") * (
        result.total + 1
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(money.filter(lambda d: d >= 0), max_size=5), min_size=1, max_size=6))
def test_admin_costs_sum_exactly_across_pages(pages: list[list[Decimal]]) -> None:
    replies = []
    for index, values in enumerate(pages):
        last = index == len(pages) - 1
        replies.append(
            reply(
                200,
                {
                    "object": "page",
                    "data": [
                        {
                            "object": "bucket",
                            "results": [
                                {
                                    "amount": {
                                        "value": str(v) if i % 2 else float(v),
                                        "currency": "usd",
                                    }
                                }
                                for i, v in enumerate(values)
                            ],
                        }
                    ],
                    "has_more": not last,
                    "next_page": None if last else f"p{index + 1}",
                },
            )
        )
    http = StubHttp({"/v1/organization/costs": replies})
    result = asyncio.run(openai_admin.PROVIDER.fetch(make_ctx(http, key="sk-admin-x")))
    assert result.used == sum((v for values in pages for v in values), Decimal(0))
    assert len(http.calls) == len(pages)
