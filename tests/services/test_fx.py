"""services/fx.py: the ECB file parsed strictly, the business-day rule, at most one fetch a
day (injected clock), rates shared through the database, failures and conversion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from bot.billing.http import HttpClients, HttpOptions
from bot.services.fx import (
    BadRates,
    FxService,
    Rates,
    is_current,
    parse_ecb,
    previous_business_day,
)
from bot.storage import migrate
from bot.storage.db import Database
from tests.fakes.rates_server import FakeRatesServer, ecb_xml


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def next_weekday(weekday: int) -> datetime:
    """10:00 UTC on the next such weekday (0 = Monday), relative to the real today."""
    today = datetime.now(UTC).date()
    day = today + timedelta(days=(weekday - today.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC)


@dataclass
class Env:
    clock: Clock
    db: Database
    server: FakeRatesServer
    http: HttpClients

    def service(self) -> FxService:
        return FxService(self.db, self.http.trusted, self.server.url)


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Env]:
    clock = Clock(next_weekday(2))  # a Wednesday
    db = Database(database_url, clock=clock)
    await migrate.upgrade(db)
    server = await FakeRatesServer(day=clock.now.date() - timedelta(days=1)).start()
    http = HttpClients(HttpOptions(attempts=1, backoff_base=0.01), allow_private=True)
    try:
        yield Env(clock, db, server, http)
    finally:
        await http.aclose()
        await server.stop()
        await db.dispose()


def test_parse_the_ecb_file() -> None:
    rates = parse_ecb(ecb_xml(date(2026, 11, 30)))
    assert rates.day == date(2026, 11, 30)
    assert rates.per_euro["USD"] == Decimal("1.0500") and rates.per_euro["CNY"] == Decimal("7.8")
    # 110 CNY in USD: 110 / 7.8 * 1.05
    assert rates.convert(Decimal(110), "CNY", "USD") == Decimal(110) / Decimal("7.8") * Decimal(
        "1.05"
    )
    assert rates.convert(Decimal(10), "EUR", "USD") == Decimal("10.5")
    assert rates.convert(Decimal(10), "XYZ", "USD") is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        ecb_xml(date(2026, 11, 30), {"USD": Decimal("-1")}),
        ecb_xml(date(2026, 11, 30), {"usd": Decimal("1")}),
    ],
)
def test_unusable_files_are_refused(body: bytes) -> None:
    with pytest.raises(BadRates):
        parse_ecb(body)


def test_business_day_rule() -> None:
    monday = next_weekday(0).date()
    assert previous_business_day(monday) == monday - timedelta(days=3)  # last Friday
    assert previous_business_day(monday + timedelta(days=1)) == monday  # Tuesday → Monday
    assert previous_business_day(monday + timedelta(days=5)) == monday + timedelta(days=4)  # Sat
    assert previous_business_day(monday + timedelta(days=6)) == monday + timedelta(days=4)  # Sun
    friday = monday - timedelta(days=3)
    assert is_current(friday, monday) and not is_current(friday, monday + timedelta(days=1))


async def test_fetched_at_most_once_a_day(env: Env) -> None:
    fx = env.service()
    rates = await fx.rates()  # Wednesday 10:00: nothing stored → fetch Tuesday's file
    assert rates is not None and rates.day == env.clock.now.date() - timedelta(days=1)
    assert env.server.hits == 1
    env.clock.now += timedelta(hours=8)  # Wednesday 18:00: Tuesday's file is current
    assert await fx.rates() == rates and env.server.hits == 1
    env.clock.now += timedelta(hours=15)  # Thursday 09:00: stale, but fetched 23 h ago
    assert await fx.rates() == rates and env.server.hits == 1
    env.server.day += timedelta(days=1)
    env.clock.now += timedelta(hours=2)  # Thursday 11:00: a day since the last fetch
    newer = await fx.rates()
    assert env.server.hits == 2 and newer is not None and newer.day == env.server.day
    # Another replica (or a restart) reads the same rates from the database.
    assert await env.service().rates() == newer and env.server.hits == 2


async def test_a_friday_file_is_current_all_weekend(env: Env) -> None:
    friday = next_weekday(4)
    env.clock.now = friday + timedelta(hours=8)  # Friday 18:00
    env.server.day = friday.date()
    fx = env.service()
    assert (await fx.rates()) is not None and env.server.hits == 1
    for days in (1, 2, 3):  # Saturday, Sunday, Monday: "last Friday" is current
        env.clock.now = friday + timedelta(days=days, hours=12)
        assert (await fx.rates()) is not None
    assert env.server.hits == 1
    env.clock.now = friday + timedelta(days=4, hours=12)  # Tuesday
    await fx.rates()
    assert env.server.hits == 2


async def test_failures_leave_totals_unconverted_and_retry_later(env: Env) -> None:
    env.server.status = 503
    fx = env.service()
    assert await fx.rates() is None and env.server.hits == 1
    env.clock.now += timedelta(minutes=30)
    assert await fx.rates() is None and env.server.hits == 1  # no hammering
    env.server.status = 200
    env.clock.now += timedelta(minutes=31)  # an hour after a failure with no rates at all
    assert await fx.rates() is not None and env.server.hits == 2


async def test_old_rates_are_not_used_forever(env: Env) -> None:
    fx = env.service()
    assert await fx.rates() is not None
    env.server.status = 503
    env.clock.now += timedelta(days=9)  # a week and more of failures
    assert await fx.rates() is None
    stored = await fx.stored()
    assert isinstance(stored, Rates)  # still known for /currency's list
