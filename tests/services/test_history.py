"""HistoryService: readings with windows, pace by the forecast's rules, series for charts,
and the snapshot retention policy — on SQLite and PostgreSQL, with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot.alerts.rules import threshold_amount
from bot.billing.models import BalanceResult, CheckOutcome, FigureKind, Unit, Window
from bot.crypto.masterkey import open_vault
from bot.secret import Secret
from bot.services.balances import record_rows
from bot.services.history import (
    KEEP_DAILY_FOR,
    KEEP_RECENT_MAX,
    HistoryService,
    KeyInfo,
    prune_snapshots,
)
from bot.services.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import BalanceSnapshot

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Env:
    db: Database
    keys: KeyService
    history: HistoryService


@pytest.fixture
async def env(make_settings, database_url: str) -> AsyncIterator[Env]:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=database_url)
    db = Database(database_url, clock=lambda: NOW)
    try:
        keys = KeyService(db, await open_vault(settings, db))
        yield Env(db, keys, HistoryService(db))
    finally:
        await db.dispose()


async def add_key(env: Env, owner: int, label: str, provider: str = "deepseek") -> str:
    secret = Secret(f"sk-{label}-0123456789abcdef0123456789")
    return (await env.keys.add(owner, secret, provider, label=label)).key.id


def money(at: datetime, remaining: str, currency: str = "CNY", **kw: object) -> BalanceResult:
    return BalanceResult(
        "deepseek",
        FigureKind.BALANCE,
        currency=currency,
        remaining=Decimal(remaining),
        fetched_at=at,
        **kw,  # type: ignore[arg-type]
    )


async def record(env: Env, owner: int, key_id: str, *results: BalanceResult) -> None:
    for result in results:  # one statement per reading, as checks arrive
        async with env.db.session() as s:
            await record_rows(s, [(owner, CheckOutcome(key_id, result.provider, result))], NOW)


async def test_two_readings_never_give_a_pace(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    await record(env, 1, kid, money(NOW - timedelta(hours=20), "30"), money(NOW, "20"))
    assert await env.history.paces(1) == {}


async def test_pace_follows_the_forecast_rules(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    await record(
        env,
        1,
        kid,
        money(NOW - timedelta(days=2), "130"),
        money(NOW - timedelta(days=1), "120"),
        money(NOW, "110"),
    )
    pace = (await env.history.paces(1))[kid]
    assert round(pace.per_day, 9) == 10
    assert pace.currency == "CNY" and pace.remaining == Decimal(110)
    assert pace.runs_out_at is not None
    assert abs(pace.runs_out_at - (NOW + timedelta(days=11))) < timedelta(seconds=1)


async def test_a_top_up_is_not_negative_spending(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    await record(
        env,
        1,
        kid,
        money(NOW - timedelta(days=2), "30"),
        money(NOW - timedelta(days=1), "20"),  # spent 10
        money(NOW - timedelta(hours=12), "120"),  # topped up 100
        money(NOW, "110"),  # spent 10
    )
    pace = (await env.history.paces(1))[kid]
    assert round(pace.per_day, 9) == 10
    history = await env.history.history(
        1, [KeyInfo(kid, "ds", "deepseek")], 7, interval=timedelta(hours=1)
    )
    [series] = history.balances
    assert series.spent == Decimal(20)
    assert [(t, a) for t, a, _ in series.top_ups] == [(NOW - timedelta(hours=12), Decimal(100))]


async def test_readings_are_scoped_by_owner(env: Env) -> None:
    mine = await add_key(env, 1, "mine")
    theirs = await add_key(env, 2, "theirs")
    await record(env, 1, mine, money(NOW - timedelta(hours=2), "5"))
    await record(env, 2, theirs, money(NOW - timedelta(hours=2), "7"))
    assert set(await env.history.readings(1)) == {mine}
    assert await env.history.readings(1, [theirs]) == {}
    assert [r.label for r in await env.history.export(1)] == ["mine"]


async def test_windows_and_units_are_stored_with_each_reading(env: Env) -> None:
    kid = await add_key(env, 1, "plan", "kimi-code")
    for hours, pct in ((5, "10"), (3, "40"), (0, "75.5")):
        window = Window("5h", used_pct=Decimal(pct), resets_at=NOW + timedelta(hours=2))
        result = BalanceResult(
            "kimi-code",
            FigureKind.QUOTA,
            windows=(window,),
            fetched_at=NOW - timedelta(hours=hours),
        )
        await record(env, 1, kid, result)
    points = BalanceResult(
        "poe", FigureKind.BALANCE, remaining=Decimal(900), unit=Unit.POINTS, fetched_at=NOW
    )
    poe = await add_key(env, 1, "poe", "poe")
    await record(env, 1, poe, points)
    found = await env.history.readings(1)
    assert [r.windows[0].percent_used for r in found[kid]] == [
        Decimal("10"),
        Decimal("40"),
        Decimal("75.5"),
    ]
    assert found[poe][0].unit == "points" and found[poe][0].currency is None
    history = await env.history.history(
        1, [KeyInfo(kid, "plan", "kimi-code")], 7, interval=timedelta(hours=1)
    )
    [window] = history.windows
    assert window.name == "5h" and [p for _, p in window.points][-1] == Decimal("75.5")
    assert history.balances == [] and history.waiting == []


async def test_too_little_history_says_when_a_chart_is_possible(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    spend = await add_key(env, 1, "admin", "openai-admin")
    await record(env, 1, kid, money(NOW - timedelta(minutes=10), "30"))
    await record(
        env,
        1,
        spend,
        BalanceResult("openai-admin", FigureKind.SPEND, used=Decimal(3), fetched_at=NOW),
    )
    keys = [KeyInfo(kid, "ds", "deepseek"), KeyInfo(spend, "admin", "openai-admin")]
    history = await env.history.history(1, keys, 30, interval=timedelta(hours=1))
    assert history.balances == []
    [waiting] = history.waiting
    assert waiting.readings == 1
    assert waiting.possible_at == NOW + timedelta(minutes=50)  # an hour after the first
    assert [k.label for k in history.no_figures] == ["admin"]


async def test_thresholds_become_levels_of_the_series(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    await record(
        env,
        1,
        kid,
        money(NOW - timedelta(days=1), "80", total=Decimal(200)),
        money(NOW, "60", total=Decimal(200)),
    )
    history = await env.history.history(
        1,
        [KeyInfo(kid, "ds", "deepseek")],
        30,
        interval=timedelta(hours=1),
        thresholds={kid: ["50", "10%"]},
        threshold_amount=threshold_amount,
    )
    assert history.balances[0].thresholds == [Decimal(50), Decimal(20)]


# -- retention ------------------------------------------------------------------------------


async def sweep_prune(env: Env, now: datetime) -> None:
    """AlertSweep.prune, as the scheduled sweep runs it (billing is never contacted)."""
    from bot.alerts.outbox import OutboxService
    from bot.alerts.sweep import AlertSweep

    sweep = AlertSweep(env.db, env.keys, None, OutboxService(env.db))  # type: ignore[arg-type]
    await sweep.prune(now)


async def count_snapshots(db: Database, key_id: str) -> int:
    async with db.session() as s:
        stmt = select(func.count()).where(BalanceSnapshot.key_id == key_id)
        return int(await s.scalar(stmt) or 0)


async def test_ninety_days_of_daily_points_survive_a_five_minute_sweep(env: Env) -> None:
    """Regression: one cap of 500 over all rows let two days of 5-minute readings (576)
    push every daily point out, so a 90-day chart had two days of data."""
    kid = await add_key(env, 1, "ds")
    rows = []
    for day in range(3, 100):  # one reading per day, 3..99 days ago (thinned already)
        rows.append(NOW - timedelta(days=day, hours=1))
    step = timedelta(minutes=5)
    t = NOW - timedelta(days=2) + step
    while t <= NOW:
        rows.append(t)
        t += step
    async with env.db.session() as s:
        await s.execute(
            BalanceSnapshot.__table__.insert(),
            [{"key_id": kid, "taken_at": at, "kind": "balance", "remaining": "1"} for at in rows],
        )
    await sweep_prune(env, NOW)  # the sweep's hourly housekeeping applies the policy
    found = (await env.history.readings(1))[kid]
    recent = [r for r in found if r.taken_at >= NOW - timedelta(days=2)]
    daily = [r for r in found if r.taken_at < NOW - timedelta(days=2)]
    assert len(recent) == KEEP_RECENT_MAX
    assert recent[-1].taken_at == NOW  # the newest are kept
    assert len(daily) == 97
    in_90_days = {r.taken_at.date() for r in found if r.taken_at >= NOW - timedelta(days=90)}
    assert len(in_90_days) >= 89


async def test_old_days_keep_their_last_reading_and_expire(env: Env) -> None:
    kid = await add_key(env, 1, "ds")
    day = (NOW - timedelta(days=10)).replace(hour=12, minute=0, second=0)
    times = [day - timedelta(hours=3), day, day + timedelta(hours=3)]
    times.append(NOW - KEEP_DAILY_FOR - timedelta(days=1))
    async with env.db.session() as s:
        await s.execute(
            BalanceSnapshot.__table__.insert(),
            [{"key_id": kid, "taken_at": at, "kind": "balance", "remaining": "1"} for at in times],
        )
        await prune_snapshots(s, NOW)
    found = (await env.history.readings(1))[kid]
    assert [r.taken_at for r in found] == [day + timedelta(hours=3)]
