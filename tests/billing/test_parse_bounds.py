"""Bounded parsing helpers for hostile provider figures: amounts, shares, ms timestamps,
labels, window names and HTTP-200 error objects (bot/billing/providers/_parse.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.providers._parse import (
    amount,
    error_object,
    from_unix_ms,
    percent,
    period_name,
    short_text,
    unique_name,
)


@pytest.mark.parametrize(
    "value",
    [
        "1E+40",
        1e40,
        10**60,
        "123456789012345678901234567890123456789012345678901234567890",
        "-1e16",
        "0.1234567890123456789012345",  # 25 significant digits
        "NaN",
        "inf",
        None,
        True,
        [],
    ],
)
def test_amount_refuses_absurd_figures(value: object) -> None:
    with pytest.raises(BillingError) as info:
        amount(value)
    assert info.value.kind is ErrorKind.MALFORMED


def test_amount_keeps_real_figures_exact() -> None:
    assert amount("87.6500") == Decimal("87.6500")
    assert amount(-25.5) == Decimal("-25.5")
    assert amount(10**15) == Decimal(10**15)
    assert amount("0") == 0
    with pytest.raises(BillingError):
        amount(-1, minimum=Decimal(0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), ("37", "37"), (99.5, "99.5"), (100, "100"), (104, "100"), (1000, "100")],
)
def test_percent_is_a_used_share_capped_at_100(value: object, expected: str) -> None:
    assert percent(value) == Decimal(expected)


@pytest.mark.parametrize("value", [-1, 1001, "1E+40", "lots", None])
def test_percent_refuses_garbage(value: object) -> None:
    with pytest.raises(BillingError):
        percent(value)


def test_from_unix_ms() -> None:
    assert from_unix_ms(1798761600000) == datetime(2027, 1, 1, tzinfo=UTC)
    assert from_unix_ms("1798761600000") == datetime(2027, 1, 1, tzinfo=UTC)
    assert from_unix_ms(None) is None and from_unix_ms(0) is None and from_unix_ms(-5) is None
    for bad in (10**20, "1E+40", "soon"):
        with pytest.raises(BillingError):
            from_unix_ms(bad)


def test_short_text_cleans_labels() -> None:
    assert short_text("  GLM  Coding\tPro ") == "GLM Coding Pro"
    assert short_text("a\u202eb\u0000c\nd") == "a b c d"
    assert short_text("x" * 100, 10) == "x" * 10
    assert short_text("   ") is None and short_text(5) is None and short_text(None) is None


def test_window_names() -> None:
    assert period_name(timedelta(hours=5)) == "5h"
    assert period_name(timedelta(days=1)) == "daily"
    assert period_name(timedelta(days=7)) == "weekly"
    assert period_name(timedelta(hours=3)) == "3h"
    assert period_name(timedelta(days=30)) == "30d"
    assert period_name(timedelta(minutes=90)) == "90min"
    assert period_name(None) == "plan" and period_name(None, "interval") == "interval"
    assert unique_name("5h", set()) == "5h"
    assert unique_name("5h", {"5h", "5h #2"}) == "5h #3"


def test_error_object() -> None:
    assert error_object({"balance": 1}) is None
    rejected = error_object({"error": {"type": "authentication_error"}})
    assert rejected is not None and rejected.kind is ErrorKind.KEY_REJECTED
    limited = error_object({"error": {"type": "rate_limit_exceeded", "message": "x"}})
    assert limited is not None and limited.kind is ErrorKind.RATE_LIMITED
    other = error_object({"error": "boom"})
    assert other is not None and other.kind is ErrorKind.PROVIDER_ERROR
    assert "boom" not in str(other)  # upstream text never travels
