"""Figures from providers are bounded once, where a result is built, for every provider
(issue 11, items 1 and 4): whatever an adapter parsed or computed, a figure storage or
formatting cannot hold is a MALFORMED error for that key, never a crash elsewhere."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.billing.errors import BillingError, ErrorKind, MalformedFigure
from bot.billing.models import (
    MAX_FIGURE,
    MAX_FIGURE_DIGITS,
    MIN_FIGURE_EXPONENT,
    BalanceResult,
    FigureKind,
    Unit,
    Window,
)
from bot.billing.registry import default_registry
from bot.billing.service import BillingService
from bot.secret import Secret
from bot.storage.models import BalanceSnapshot
from tests.billing.conftest import FAST, settings
from tests.fakes.provider_server import FakeProviderServer

HOSTILE = [
    "1E+40",
    "9E+999999",
    "-9E+999999",
    "1E+1000000",  # abs() of it overflowed the context: figure_fault raised, not refused
    "-1E+1000000",
    "1" * 49,
    "0." + "1" * 49,
    "1E-999999",
    "NaN",
    "Infinity",
    str(MAX_FIGURE),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_result_refuses_figures_it_cannot_store_or_show(text: str) -> None:
    for field in ("remaining", "total", "used"):
        with pytest.raises(MalformedFigure) as caught:
            BalanceResult("x", FigureKind.BALANCE, "USD", **{field: Decimal(text)})
        assert caught.value.kind is ErrorKind.MALFORMED and isinstance(caught.value, ValueError)
    with pytest.raises(ValueError):
        Window("5h", used=Decimal(text), limit=Decimal(100), unit=Unit.TOKENS)


def test_bounded_figures_pass_and_fit_the_snapshot_column() -> None:
    column = BalanceSnapshot.__table__.c.remaining.type.length
    largest = [
        MAX_FIGURE - Decimal("0.000000000001"),  # 28 digits just below the bound
        -(MAX_FIGURE - 1),
        Decimal(1) / Decimal(3),  # what a relay's conversion computes
        Decimal("-1.234567890123456789012345678").scaleb(MIN_FIGURE_EXPONENT),
        Decimal(0),
    ]
    for value in largest:
        result = BalanceResult("x", FigureKind.BALANCE, "USD", remaining=value, total=value)
        assert len(str(result.remaining)) <= column
        assert len(value.as_tuple().digits) <= MAX_FIGURE_DIGITS


@pytest.mark.parametrize("currency", ["US DOLLARS AND CENTS", "USDOLLARS", "", "<b>", "$", "U"])
def test_a_result_refuses_a_currency_it_cannot_store(currency: str) -> None:
    with pytest.raises(MalformedFigure):
        BalanceResult("x", FigureKind.BALANCE, currency, remaining=Decimal(1))


async def _check(provider: str, server: FakeProviderServer, base_url: str | None = None):
    cfg = settings(allow_private=True, **{provider: server.url})
    service = BillingService(cfg, registry=default_registry(), http_options=FAST)
    try:
        secret = Secret("sk-bounds000000000000000001")
        from bot.billing.models import KeyRequest

        return await service.fetch(KeyRequest("k1", provider, secret, base_url))
    finally:
        await service.aclose()


async def test_an_older_provider_sending_1e40_is_malformed(server: FakeProviderServer) -> None:
    """DeepSeek's adapter parses with to_decimal (unbounded): the model bounds it."""
    info = {"currency": "USD", "total_balance": "1E+40", "topped_up_balance": "1E+40"}
    server.reply("/user/balance", json={"is_available": True, "balance_infos": [info]})
    outcome = await _check("deepseek", server)
    assert isinstance(outcome.error, BillingError) and outcome.error.kind is ErrorKind.MALFORMED


async def test_relay_arithmetic_that_overflows_is_malformed_not_our_bug(
    server: FakeProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A quota unit of 1E-999999 makes the conversion itself overflow (decimal.Overflow):
    the provider's garbage, MALFORMED — before, an "internal error" (PROVIDER_ERROR)."""
    server.reply("/api/status", json={"success": True, "data": {"quota_per_unit": "1E-999999"}})
    server.reply("/api/usage/token", json={"code": True, "data": {"total_available": 5}})
    outcome = await _check("relay", server, base_url=server.url)
    assert isinstance(outcome.error, BillingError) and outcome.error.kind is ErrorKind.MALFORMED
    assert "internal error" not in caplog.text and "failed with" not in caplog.text
