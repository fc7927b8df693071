"""siliconflow: currency decision by host."""

from __future__ import annotations

import pytest

from bot.billing.providers.base import Match
from bot.billing.providers.siliconflow import PROVIDER, currency_for


@pytest.mark.parametrize(
    ("base", "options", "currency"),
    [
        ("https://api.siliconflow.cn", {}, "CNY"),
        ("https://api.siliconflow.cn/v1", {"currency": "USD"}, "CNY"),
        ("https://api.siliconflow.com", {}, None),  # undocumented: no guess
        ("https://api.siliconflow.com", {"currency": "USD"}, None),
        ("http://127.0.0.1:9000", {}, "CNY"),
        ("http://127.0.0.1:9000", {"currency": "USD"}, "USD"),
    ],
)
def test_currency_for(base: str, options: dict[str, str], currency: str | None) -> None:
    assert currency_for(base, options) == currency


def test_detect() -> None:
    assert PROVIDER.detect("sk-" + "a" * 48) is Match.POSSIBLE
    assert PROVIDER.detect("sk-ant-api03-abc") is Match.NO
