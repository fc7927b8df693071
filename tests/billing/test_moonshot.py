"""moonshot: currency comes from the host (the reply has none)."""

from __future__ import annotations

import pytest

from bot.billing.providers.base import Match
from bot.billing.providers.moonshot import PROVIDER, currency_for


@pytest.mark.parametrize(
    ("base", "options", "currency"),
    [
        ("https://api.moonshot.cn", {}, "CNY"),
        ("https://api.moonshot.cn/v1", {"currency": "USD"}, "CNY"),  # the host wins
        ("https://api.moonshot.ai", {}, "USD"),
        ("https://API.MOONSHOT.AI/v1", {"currency": "CNY"}, "USD"),
        ("http://127.0.0.1:8080", {}, "CNY"),
        ("http://127.0.0.1:8080", {"currency": "usd"}, "USD"),
        ("https://proxy.example.com", {"currency": "EUR"}, "CNY"),
    ],
)
def test_currency_for(base: str, options: dict[str, str], currency: str) -> None:
    assert currency_for(base, options) == currency


def test_detect() -> None:
    assert PROVIDER.detect("sk-" + "a" * 48) is Match.POSSIBLE
    assert PROVIDER.detect("sk-or-v1-abc") is Match.NO
    assert PROVIDER.detect("sk-proj-aT3BlbkFJb") is Match.NO
