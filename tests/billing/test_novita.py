"""novita: exact 1/10000-USD conversion and the base URLs people paste."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.billing.errors import BillingError
from bot.billing.providers.base import Match
from bot.billing.providers.novita import PROVIDER, _site_root, to_usd


@pytest.mark.parametrize(
    ("raw", "usd"),
    [
        ("10000", "1"),
        ("1", "0.0001"),
        ("1000000", "100"),
        ("-5000", "-0.5"),
        (12345, "1.2345"),
        ("99999999999999999999", "9999999999999999.9999"),
    ],
)
def test_to_usd_is_exact(raw: object, usd: str) -> None:
    assert to_usd(raw) == Decimal(usd)


def test_to_usd_refuses_garbage() -> None:
    with pytest.raises(BillingError):
        to_usd("1,000")


@pytest.mark.parametrize(
    "base",
    [
        "https://api.novita.ai",
        "https://api.novita.ai/",
        "https://api.novita.ai/v3/openai",
        "https://api.novita.ai/openai/v1",
    ],
)
def test_site_root(base: str) -> None:
    assert _site_root(base) == "https://api.novita.ai"


def test_detect_never_claims() -> None:
    assert PROVIDER.detect("sk-" + "a" * 48) is Match.NO
    assert PROVIDER.detect("sk_abc") is Match.NO
