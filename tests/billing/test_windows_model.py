"""Quota windows and non-money units in the billing model: what is accepted, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.billing.models import (
    MAX_WINDOWS,
    BalanceResult,
    FigureKind,
    Unit,
    Window,
    WindowState,
)

RESET = datetime(2026, 12, 1, 14, 20, tzinfo=UTC)


def test_percent_used_from_the_providers_share_or_from_counts() -> None:
    assert Window("5h", used_pct=Decimal("52.5")).percent_used == Decimal("52.5")
    counted = Window("weekly", used=Decimal(30), limit=Decimal(120), unit=Unit.REQUESTS)
    assert counted.percent_used == Decimal(25)
    assert counted.remaining == Decimal(90)
    over = Window("daily", used=Decimal(130), limit=Decimal(100), unit=Unit.TOKENS)
    assert over.percent_used == Decimal(100) and over.remaining == Decimal(0)
    assert Window("5h", state=WindowState.EXHAUSTED).percent_used == Decimal(100)
    assert Window("5h", state=WindowState.UNLIMITED, used_pct=Decimal(3)).percent_used is None
    assert Window("5h").percent_used is None  # nothing said: no figure, never zero
    assert Window("x", used=Decimal(1), limit=Decimal(0), unit=Unit.REQUESTS).percent_used is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 33},
        {"name": "a\nb"},
        {"name": "5h", "used_pct": Decimal("100.1")},
        {"name": "5h", "used_pct": Decimal(-1)},
        {"name": "5h", "used": Decimal("NaN"), "unit": Unit.TOKENS},
        {"name": "5h", "used": Decimal("Infinity"), "unit": Unit.TOKENS},
        {"name": "5h", "limit": Decimal(-5), "unit": Unit.TOKENS},
        {"name": "5h", "used": 3, "unit": Unit.TOKENS},  # not a Decimal
        {"name": "5h", "currency": "USD", "unit": Unit.TOKENS},
        {"name": "5h", "resets_at": datetime(2026, 12, 1)},  # naive
        {"name": "5h", "period": timedelta(0)},
        {"name": "5h", "unit": "furlongs"},
        {"name": "5h", "state": "sleepy"},
    ],
)
def test_bad_windows_are_refused(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, TypeError)):
        Window(**kwargs)


def test_money_window_and_string_enums_are_normalised() -> None:
    w = Window("monthly", used=Decimal(3), limit=Decimal(10), unit="money", currency="USD",
               resets_at=RESET, period=timedelta(days=30), state="ok")  # fmt: skip
    assert w.unit is Unit.MONEY and w.state is WindowState.OK


def test_result_with_windows_and_units() -> None:
    quota = BalanceResult(
        provider="kimi-code",
        kind=FigureKind.QUOTA,
        windows=[Window("5h", used_pct=Decimal(10)), Window("weekly", used_pct=Decimal(40))],
    )
    assert isinstance(quota.windows, tuple) and [w.name for w in quota.windows] == ["5h", "weekly"]
    points = BalanceResult(
        provider="poe", kind=FigureKind.BALANCE, remaining=Decimal(5), unit="points"
    )
    assert points.unit is Unit.POINTS
    money = BalanceResult(provider="x", kind=FigureKind.BALANCE, currency="USD", unit=Unit.MONEY)
    assert money.unit is None  # money is the default meaning
    assert BalanceResult(provider="x", kind=FigureKind.BALANCE).windows == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unit": Unit.POINTS, "currency": "USD"},  # points are never money
        {"unit": Unit.PERCENT},
        {"unit": "furlongs"},
        {"windows": [Window("5h"), Window("5h")]},  # names are alert-state ids: unique
        {"windows": [Window(f"w{i}") for i in range(MAX_WINDOWS + 1)]},
        {"windows": [{"name": "5h"}]},
    ],
)
def test_bad_results_are_refused(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, TypeError)):
        BalanceResult(provider="x", kind=FigureKind.BALANCE, **kwargs)


def test_fixture_runner_compares_windows_and_unit() -> None:
    from tests.billing.test_provider_fixtures import compare_result

    r = BalanceResult(
        provider="x", kind=FigureKind.QUOTA,
        windows=(Window("5h", used_pct=Decimal(52), resets_at=RESET, period=timedelta(hours=5)),),
    )  # fmt: skip
    good = {"name": "5h", "used_pct": "52.0", "percent_used": 52, "resets_at": RESET.isoformat(),
            "period": 18000, "state": "ok", "unit": "percent", "used": None}  # fmt: skip
    assert compare_result(r, {"kind": "quota", "unit": None, "windows": [good]}) == []
    assert compare_result(r, {"windows": []})  # count differs
    assert compare_result(r, {"windows": [{**good, "used_pct": "53"}]})
    assert compare_result(r, {"windows": [{**good, "period": 3600}]})
    assert compare_result(r, {"windows": [{**good, "state": "exhausted"}]})
    assert compare_result(r, {"windows": [{**good, "bogus": 1}]})
    assert compare_result(r, {"unit": "points"})


def test_alert_figure_carries_the_unit() -> None:
    from bot.alerts.rules import LOW, Watch, evaluate
    from bot.billing.models import CheckOutcome
    from bot.services.forecast import Burn

    now = datetime(2026, 12, 1, tzinfo=UTC)
    points = BalanceResult(provider="poe", kind=FigureKind.BALANCE, remaining=Decimal(40),
                           unit=Unit.POINTS, fetched_at=now)  # fmt: skip
    outcome = CheckOutcome("k", "poe", points)
    step = evaluate(Watch(thresholds=("100",)), {}, None, outcome, Burn(), now)
    [event] = [e for e in step.events if e.kind == LOW]
    assert event.data["unit"] == "points" and event.data["currency"] is None
