"""Shared parsing helpers: exact money, honest timestamps, key-shape hints."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.providers._parse import api_root, from_iso, from_unix, is_bare_sk, to_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (42, "42"),
        (0.1, "0.1"),  # via str(): no 0.1000000000000000055511151231257827 artifact
        (49.58894, "49.58894"),
        (1e-7, "1E-7"),
        ("110.00", "110.00"),
        (" -1.25 ", "-1.25"),
        ("1e3", "1E+3"),
        (Decimal("3.30"), "3.30"),
    ],
)
def test_to_decimal_is_exact(value: object, expected: str) -> None:
    assert to_decimal(value) == Decimal(expected)
    assert str(to_decimal(value)) == str(Decimal(expected))


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "",
        "  ",
        "abc",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        float("nan"),
        float("inf"),
        "1_000",
        "١٢",
        [],
        {},
        Decimal("NaN"),
        "0x10",
    ],
)
def test_to_decimal_refuses_non_numbers(value: object) -> None:
    with pytest.raises(BillingError) as info:
        to_decimal(value)
    assert info.value.kind is ErrorKind.MALFORMED


def test_from_unix() -> None:
    assert from_unix(None) is None
    assert from_unix(0) is None  # relays' "never": the caller decides
    assert from_unix(-5) is None
    assert from_unix(1688169600) == datetime(2023, 7, 1, tzinfo=UTC)
    assert from_unix("1688169600") == datetime(2023, 7, 1, tzinfo=UTC)
    assert from_unix(1682899200.0) == datetime(2023, 5, 1, tzinfo=UTC)
    with pytest.raises(BillingError):
        from_unix(10**30)
    with pytest.raises(BillingError):
        from_unix(True)


def test_from_iso() -> None:
    assert from_iso(None) is None
    assert from_iso("") is None
    assert from_iso("2027-12-31T23:59:59Z") == datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)
    naive = from_iso("2027-12-31T23:59:59")
    assert naive is not None and naive.tzinfo is not None
    assert from_iso("2027-12-31T23:59:59+08:00") == datetime(2027, 12, 31, 15, 59, 59, tzinfo=UTC)
    for bad in ("tomorrow", 1700000000, "2027-13-01"):
        with pytest.raises(BillingError):
            from_iso(bad)


@pytest.mark.parametrize(
    ("key", "bare"),
    [
        ("sk-0123456789abcdef0123456789abcdef", True),
        ("sk-" + "a" * 48, True),
        ("sk-or-v1-" + "0" * 64, False),
        ("sk-ant-api03-xyz", False),
        ("sk-ant-admin01-xyz", False),
        ("sk-proj-abcT3BlbkFJxyz", False),
        ("sk-" + "a" * 20 + "T3BlbkFJ" + "b" * 20, False),
        ("sess-abc", False),
        ("gsk_abc", False),
    ],
)
def test_is_bare_sk(key: str, bare: bool) -> None:
    assert is_bare_sk(key) is bare


def test_api_root() -> None:
    assert api_root("https://api.moonshot.ai/v1") == "https://api.moonshot.ai"
    assert api_root("https://api.moonshot.ai/v1/") == "https://api.moonshot.ai"
    assert api_root("https://openrouter.ai/api/v1") == "https://openrouter.ai/api"
    assert api_root("https://api.deepseek.com") == "https://api.deepseek.com"
    assert api_root("https://x.example/v10") == "https://x.example/v10"


def test_plain_never_uses_exponents() -> None:
    from bot.billing.providers._parse import plain

    assert plain(Decimal("1E-7")) == "0.0000001"
    assert plain(Decimal("1E+3")) == "1000"
    assert plain(Decimal("80.0000")) == "80.0000"
    assert plain(Decimal("-2.5")) == "-2.5"


@pytest.mark.parametrize(
    "value",
    [
        "1E+40",
        "9E+999999",
        1e40,
        "123456789012345678901234567890123456789012345678901234567890",
        "0.123456789012345678901234567890123456789012345678901234567890",
    ],
)
def test_amount_or_none_refuses_absurd_figures(value: object) -> None:
    from bot.billing.providers._parse import amount_or_none

    with pytest.raises(BillingError) as info:
        amount_or_none(value)
    assert info.value.kind is ErrorKind.MALFORMED


@pytest.mark.parametrize(
    ("value", "expected"),
    [("129.46956147", "129.46956147"), (0, "0"), ("-5.50", "-5.50"),
     ("999999999999999", "999999999999999"), (1e-7, "1E-7")],
)  # fmt: skip
def test_amount_or_none_keeps_real_figures_and_null(value: object, expected: str) -> None:
    from bot.billing.providers._parse import amount_or_none

    assert amount_or_none(value) == Decimal(expected)
    assert amount_or_none(None) is None
