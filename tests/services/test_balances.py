"""BalanceService and key_status / balance_snapshots, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot.billing.errors import ErrorKind
from bot.billing.models import FigureKind
from bot.billing.service import BillingService
from bot.crypto.masterkey import open_vault
from bot.secret import Secret
from bot.services.balances import (
    BalanceService,
    ManualCheckLimiter,
    result_from_json,
    result_to_json,
)
from bot.services.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import BalanceSnapshot, KeyStatus
from tests.e2e.harness import provider_overrides
from tests.fakes.provider_server import FakeProviderServer, Reply

OK = {"is_available": True, "balance_infos": [{"currency": "CNY", "total_balance": "12.30"}]}


@dataclass
class Env:
    db: Database
    keys: KeyService
    billing: BillingService
    balances: BalanceService
    providers: FakeProviderServer


@pytest.fixture
async def env(make_settings, database_url: str) -> AsyncIterator[Env]:  # type: ignore[no-untyped-def]
    providers = await FakeProviderServer().start()
    settings = make_settings(
        database_url=database_url, provider_base_urls=provider_overrides(providers.url)
    )
    db = Database(database_url)
    try:
        keys = KeyService(db, await open_vault(settings, db))
        async with BillingService(settings) as billing:
            yield Env(db, keys, billing, BalanceService(db, keys, billing), providers)
    finally:
        await db.dispose()
        await providers.stop()


async def count(db: Database, model: type) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_success_then_failure_keeps_last_known(env: Env) -> None:
    env.providers.script("/user/balance", [Reply(200, json=OK), Reply(500, json={})])
    added = await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    [first] = await env.balances.check_user(1)
    assert first.ok and first.result is not None and first.result.remaining == Decimal("12.30")
    env.billing.clear_cache()
    [second] = await env.balances.check_user(1)
    assert second.error is ErrorKind.PROVIDER_ERROR
    assert second.last_known is not None and second.last_known.remaining == Decimal("12.30")
    assert second.last_known_at == first.result.fetched_at
    status = (await env.balances.statuses(1))[added.key.id]
    assert status.failing and status.consecutive_failures == 1
    assert status.last_error_kind is ErrorKind.PROVIDER_ERROR
    assert await count(env.db, BalanceSnapshot) == 1
    async with env.db.session() as s:
        snap = await s.scalar(select(BalanceSnapshot))
        assert snap is not None and snap.remaining == "12.30" and snap.currency == "CNY"


async def test_cached_reading_adds_no_second_snapshot(env: Env) -> None:
    env.providers.reply("/user/balance", json=OK)
    await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    await env.balances.check_user(1, manual=False)
    [again] = await env.balances.check_user(1, manual=False)
    assert again.from_cache
    assert env.providers.count("/user/balance") == 1
    assert await count(env.db, BalanceSnapshot) == 1


async def test_a_manual_check_asks_the_provider_afresh(env: Env) -> None:
    """/balance right after a top-up shows the new figure, not the 30 s cache's."""
    low = {"is_available": True, "balance_infos": [{"currency": "CNY", "total_balance": "25"}]}
    env.providers.script("/user/balance", [Reply(200, json=low), Reply(200, json=OK)])
    await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    [first] = await env.balances.check_user(1)
    [again] = await env.balances.check_user(1)
    assert first.result is not None and first.result.remaining == Decimal("25")
    assert again.result is not None and again.result.remaining == Decimal("12.30")
    assert not again.from_cache and env.providers.count("/user/balance") == 2


async def test_scoped_by_owner_and_labels(env: Env) -> None:
    env.providers.reply("/user/balance", json=OK)
    a = await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="a")
    await env.keys.add(1, Secret("sk-deepseek0123456789abcdeX"), "deepseek", label="b")
    assert await env.balances.check_key(2, a.key.id) is None  # someone else's key id
    assert [r.key.label for r in await env.balances.check_user(1, ["b"])] == ["b"]
    assert await env.balances.statuses(2) == {}


async def test_limit_serves_stored_results_without_requests(env: Env) -> None:
    env.balances.limiter = ManualCheckLimiter(limit=2)
    env.providers.reply("/user/balance", json=OK)
    await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    await env.keys.add(1, Secret("sk-moonshot0123456789abcdefgh"), "moonshot", label="new")
    for _ in range(2):
        env.billing.clear_cache()
        await env.balances.check_user(1, ["ds"])
    before = len(env.providers.requests)
    reports = await env.balances.check_user(1)
    assert len(env.providers.requests) == before
    ds, new = reports
    assert not ds.fresh and ds.result is not None and ds.result.remaining == Decimal("12.30")
    assert not new.fresh and new.error is ErrorKind.RATE_LIMITED  # never checked: no guess
    assert (await env.balances.check_user(1, manual=False))[0].fresh  # scheduler: no limit


async def test_status_and_snapshots_go_with_the_key(env: Env) -> None:
    env.providers.reply("/user/balance", json=OK)
    added = await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    await env.balances.check_user(1)
    assert await count(env.db, KeyStatus) == 1
    assert await env.keys.delete(1, added.key.id)
    assert await count(env.db, KeyStatus) == 0
    assert await count(env.db, BalanceSnapshot) == 0


def test_result_json_round_trip_is_exact() -> None:
    from datetime import UTC, datetime

    from bot.billing.models import BalanceResult, KeyState

    original = BalanceResult(
        provider="relay", kind=FigureKind.BALANCE, currency="USD",
        remaining=Decimal("4.887614"), total=Decimal("5.00004"), used=Decimal("0.112426"),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC), state=KeyState.OK,
        extras={"plan": "Explore", "n": 3},
    )  # fmt: skip
    back = result_from_json(result_to_json(original))
    assert back == original
    assert result_from_json({"provider": "x", "kind": "nonsense"}) is None


def _windowed_results():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from bot.billing.models import BalanceResult, KeyState, Unit, Window, WindowState

    reset = datetime(2026, 12, 1, 14, 20, tzinfo=UTC)
    quota = BalanceResult(
        provider="kimi-code", kind=FigureKind.QUOTA, state=KeyState.EXHAUSTED,
        windows=(
            Window("5h", used=Decimal("100"), limit=Decimal("100"), unit=Unit.REQUESTS,
                   resets_at=reset, period=timedelta(hours=5), state=WindowState.EXHAUSTED),
            Window("weekly", used_pct=Decimal("37.5"), resets_at=reset + timedelta(days=3)),
            Window("monthly", used=Decimal("1.25"), limit=Decimal("20"), unit=Unit.MONEY,
                   currency="USD", period=timedelta(days=30)),
            Window("MiniMax-M2", state=WindowState.UNLIMITED),
        ),
        fetched_at=reset - timedelta(hours=1),
    )  # fmt: skip
    points = BalanceResult(
        provider="poe", kind=FigureKind.BALANCE, remaining=Decimal(12345), unit=Unit.POINTS,
        fetched_at=reset - timedelta(hours=1),
    )  # fmt: skip
    return quota, points


def test_windows_and_unit_round_trip_through_json() -> None:
    import json

    for original in _windowed_results():
        stored = json.loads(json.dumps(result_to_json(original)))  # as the JSON column does
        assert result_from_json(stored) == original
    quota, _ = _windowed_results()
    broken = result_to_json(quota)
    broken["windows"][0]["used_pct"] = "250"  # outside 0-100: unusable, not clamped
    assert result_from_json(broken) is None
    old_row = result_to_json(quota)
    del old_row["windows"], old_row["unit"]  # a row written before windows existed
    back = result_from_json(old_row)
    assert back is not None and back.windows == () and back.unit is None


async def test_windows_and_unit_survive_key_status_storage(env: Env) -> None:
    from bot.billing.models import CheckOutcome

    quota, points = _windowed_results()
    a = await env.keys.add(1, Secret("sk-kimi-0123456789abcdef"), "deepseek", label="plan")
    b = await env.keys.add(1, Secret("sk-poe-0123456789abcdef"), "deepseek", label="poe")
    await env.balances.record(
        1, [CheckOutcome(a.key.id, "kimi-code", result=quota),
            CheckOutcome(b.key.id, "poe", result=points)]
    )  # fmt: skip
    statuses = await env.balances.statuses(1)
    assert statuses[a.key.id].last_result == quota
    assert statuses[b.key.id].last_result == points
    async with env.db.session() as s:
        kinds = set((await s.scalars(select(BalanceSnapshot.kind))).all())
    assert kinds == {"quota", "balance"}


async def test_the_sweep_makes_way_before_the_answers_database_reads(env: Env) -> None:
    """Issue 17 item 1: the sweep's share of the limits and of each event-loop iteration
    shrinks as soon as a user's answer starts (its key and status reads wait for loop
    iterations too), not only once its checks are sent."""
    env.providers.reply("/user/balance", json=OK)
    await env.keys.add(1, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds")
    order: list[str] = []
    make_way, requests = env.billing.make_way, env.keys.requests

    def logged_make_way() -> None:
        order.append("make way")
        make_way()

    async def logged_requests(*a, **kw):  # type: ignore[no-untyped-def]
        order.append("read keys")
        return await requests(*a, **kw)

    env.billing.make_way = logged_make_way  # type: ignore[method-assign]
    env.keys.requests = logged_requests  # type: ignore[method-assign]
    [report] = await env.balances.check_user(1)
    assert report.ok
    assert order == ["make way", "read keys"]
