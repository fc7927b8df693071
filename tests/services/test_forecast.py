"""The forecast's Burn: built from points (/history) or folded a reading at a time (the
sweep's new check on top of the database's aggregate) — the same figures either way."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.services import forecast

NOW = datetime.now(UTC).replace(microsecond=0)


def points(n: int, seed: int) -> list[tuple[datetime, Decimal]]:
    rnd = random.Random(seed)
    value, out = Decimal(100), []
    for i in range(n):
        value += rnd.choice((Decimal(-2), Decimal("-0.5"), Decimal(0), Decimal(7)))
        out.append((NOW - timedelta(hours=n - i), value))
    return out


def test_folding_a_newer_reading_equals_building_from_all_points() -> None:
    for seed in range(20):
        pts = points(30, seed)
        for cut in range(len(pts)):
            built = forecast.burn_of(pts[:cut])
            for at, value in pts[cut:]:
                built = built.then(at, value)
            assert built == forecast.burn_of(pts)


def test_spent_counts_drops_only() -> None:
    pts = [(NOW - timedelta(hours=12), Decimal(50)), (NOW - timedelta(hours=6), Decimal(40)),
           (NOW - timedelta(hours=3), Decimal(70)), (NOW, Decimal(60))]  # fmt: skip
    burn = forecast.burn_of(pts)
    assert (burn.points, burn.spent, burn.last_value) == (4, Decimal(20), Decimal(60))
    assert forecast.burn_per_day(burn) == Decimal(40)  # 20 over 12 h
    assert forecast.runs_out_at(burn, Decimal(60), NOW) == NOW + timedelta(days=1.5)


def test_too_little_history_is_no_forecast() -> None:
    two = forecast.burn_of([(NOW - timedelta(hours=20), Decimal(30)), (NOW, Decimal(20))])
    assert forecast.burn_per_day(two) is None
    short = forecast.burn_of([(NOW - timedelta(hours=h), Decimal(10 - h)) for h in (5, 3, 0)])
    assert forecast.burn_per_day(short) is None  # under MIN_SPAN
    flat = forecast.burn_of([(NOW - timedelta(hours=h), Decimal(10)) for h in (12, 6, 0)])
    assert forecast.burn_per_day(flat) is None
    assert forecast.burn_per_day(forecast.Burn()) is None


def test_an_older_reading_folded_in_still_widens_the_span() -> None:
    burn = forecast.burn_of([(NOW - timedelta(hours=6), Decimal(30)), (NOW, Decimal(20))])
    later = burn.then(NOW - timedelta(hours=8), Decimal(15))
    assert (later.first_at, later.last_at) == (NOW - timedelta(hours=8), NOW)
    assert (later.points, later.spent, later.last_value) == (3, Decimal(15), Decimal(15))
