"""The sweep and the event state machine on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from bot.alerts.rules import BadSpec, parse_specs
from bot.storage.models import AlertState, BalanceSnapshot
from tests.alerts.conftest import Rig

USER = 5001


async def low_thresholds(rig: Rig) -> list[str]:
    return [r.payload["threshold"] for r in await rig.events() if r.kind == "low"]


async def slide(rig: Rig, key: str, values: list[object]) -> None:
    for value in values:
        rig.balances.amounts[key] = value
        await rig.sweep()


async def test_slide_with_jitter_alerts_once_then_again_after_top_up(rig: Rig) -> None:
    secret = "sk-slide0000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await slide(rig, secret, ["100", "60", "40", "39", "41", "38"])
    assert await rig.kinds() == ["low"]
    event = (await rig.events())[0]
    assert event.payload["remaining"] == "40" and event.payload["threshold"] == "50"
    assert event.payload["hint"].startswith("sk-…") and secret not in str(event.payload)
    await slide(rig, secret, ["80"])
    assert await rig.kinds() == ["low", "recovered"]
    await slide(rig, secret, ["30"])
    assert await rig.kinds() == ["low", "recovered", "low"]
    idem = [r.idem_key for r in await rig.events()]
    assert len(set(idem)) == 3


async def test_ladder_fires_each_rung_once(rig: Rig) -> None:
    secret = "sk-ladder000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], parse_specs(["50", "20", "5"]))
    await slide(rig, secret, ["70", "45", "40", "19", "20.5", "18", "4.9", "4", "0"])
    assert await low_thresholds(rig) == ["50", "20", "5"]


async def test_jump_through_several_rungs_is_one_alert(rig: Rig) -> None:
    secret = "sk-jump0000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], parse_specs(["5", "50", "20"]))
    await slide(rig, secret, ["100", "3", "2"])
    assert await low_thresholds(rig) == ["5"]


async def test_percentage_thresholds_use_the_total(rig: Rig) -> None:
    secret = "sk-pct00000000000000001"
    key_id = await rig.add_key(USER, secret, provider="relay")  # total is 100
    await rig.alerts.set_thresholds(USER, [key_id], parse_specs(["50%", "20%"]))
    await slide(rig, secret, [Decimal("80"), Decimal("49"), Decimal("30"), Decimal("19.5")])
    events = [r for r in await rig.events() if r.kind == "low"]
    assert [e.payload["threshold"] for e in events] == ["50%", "20%"]
    assert Decimal(events[0].payload["threshold_amount"]) == 50


async def test_percentage_without_total_never_fires(rig: Rig) -> None:
    secret = "sk-pct00000000000000002"
    key_id = await rig.add_key(USER, secret)  # deepseek: no total
    await rig.alerts.set_thresholds(USER, [key_id], ["50%"])
    await slide(rig, secret, ["100", "1", "0"])
    assert await rig.kinds() == []


async def test_zero_is_low_but_no_thresholds_means_no_low_alert(rig: Rig) -> None:
    a, b = "sk-zero00000000000000001", "sk-zero00000000000000002"
    ka = await rig.add_key(USER, a)
    await rig.add_key(USER + 1, b)
    await rig.alerts.set_thresholds(USER, [ka], ["1"])
    rig.balances.amounts.update({a: "0", b: "0"})
    await rig.sweep()
    assert await rig.kinds(USER) == ["low"]
    assert await rig.kinds(USER + 1) == []  # low-balance is off until set


async def test_expiry_in_five_days_then_expired(rig: Rig) -> None:
    secret = "sk-exp000000000000000001"
    await rig.add_key(USER, secret, provider="relay")
    rig.balances.amounts[secret] = Decimal("90")
    rig.balances.expiry[secret] = int((rig.clock.now + timedelta(days=5)).timestamp())
    for _ in range(3):
        await rig.sweep()
    assert await rig.kinds() == ["expires"]
    rig.balances.expiry[secret] = int((rig.clock.now - timedelta(hours=1)).timestamp())
    for _ in range(3):
        await rig.sweep()
    assert await rig.kinds() == ["expires", "expired"]


async def test_expiry_within_a_day_then_renewed(rig: Rig) -> None:
    secret = "sk-exp000000000000000002"
    await rig.add_key(USER, secret, provider="relay")
    rig.balances.amounts[secret] = Decimal("90")
    rig.balances.expiry[secret] = int((rig.clock.now + timedelta(days=6)).timestamp())
    await rig.sweep()
    await rig.sweep(days=5, hours=12)  # now 12 h left
    rig.balances.expiry[secret] = int((rig.clock.now + timedelta(days=30)).timestamp())
    await rig.sweep()  # renewed: nothing to say, stage reset
    assert [(r.kind, r.payload["stage"]) for r in await rig.events()] == [
        ("expires", 1),
        ("expires", 2),
    ]


async def test_revoked_key_alerts_once(rig: Rig) -> None:
    secret = "sk-rev000000000000000001"
    await rig.add_key(USER, secret)
    await slide(rig, secret, ["10", 401, 401, 401])
    assert await rig.kinds() == ["revoked"]


async def test_three_failing_sweeps_are_no_event_but_a_day_is_one(rig: Rig) -> None:
    secret = "sk-fail00000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await slide(rig, secret, ["40", 500, 500, 500])
    assert await rig.kinds() == ["low"]  # the 500s neither alert nor re-arm
    for _ in range(25):
        await rig.sweep(hours=1)
    assert await rig.kinds() == ["low", "stale"]
    stale = (await rig.events())[-1]
    assert stale.payload["error"] == "provider_error"
    await slide(rig, secret, ["39", 500])
    assert await rig.kinds() == ["low", "stale"]  # still below: no second low alert


async def test_mute_records_and_tells_the_crossing_once_it_is_over(rig: Rig) -> None:
    """A mute silences, it does not hide: the rung crossed while muted is told once the
    mute is over, if the balance is still below it (issue 11). It used to be never told."""
    secret = "sk-mute00000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await rig.alerts.mute(USER, key_id, rig.clock.now + timedelta(hours=24))
    await slide(rig, secret, ["40", "30"])
    assert await rig.kinds() == []
    rig.clock.advance(hours=25)
    await slide(rig, secret, ["20"])
    # Still below 50 after the mute: told now, once. (40 → 30 → 20 over 25 h is a real
    # burn rate, so a run-out forecast is due as well.)
    assert await rig.kinds() == ["low", "forecast"]
    low = (await rig.events())[0]
    assert low.payload["threshold"] == "50" and low.payload["remaining"] == "20"
    await slide(rig, secret, ["19", "18"])
    assert await rig.kinds() == ["low", "forecast"]


async def test_a_crossing_that_recovered_during_the_mute_is_not_told(rig: Rig) -> None:
    secret = "sk-mute00000000000000002"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await rig.alerts.mute(USER, key_id, rig.clock.now + timedelta(hours=24))
    await slide(rig, secret, ["40", "90"])  # crossed, then topped up, all while muted
    rig.clock.advance(hours=25)
    await slide(rig, secret, ["88"])
    assert await rig.kinds() == []


async def test_forecast_from_snapshots(rig: Rig) -> None:
    secret = "sk-fc000000000000000001"
    key_id = await rig.add_key(USER, secret)
    start = rig.clock.now
    async with rig.db.session() as s:  # 10 a day for the last two days
        for hours, value in ((48, "45"), (36, "40"), (24, "35"), (12, "30")):
            s.add(BalanceSnapshot(key_id=key_id, taken_at=start - timedelta(hours=hours),
                                  kind="balance", currency="USD", remaining=value))  # fmt: skip
    await slide(rig, secret, ["25", "24.9"])  # 25 left at ~10/day → 2.5 days
    events = await rig.events()
    assert [e.kind for e in events] == ["forecast"]
    assert events[0].payload["runs_out_at"] > start.isoformat()


async def test_forecast_skips_legacy_rows_in_the_window(rig: Rig) -> None:
    """Rows stored before figures were bounded neither break the batch nor count: '1E+1000000'
    made figure_fault raise (decimal.Overflow) and the key's check fail every sweep."""
    secret = "sk-fc000000000000000002"
    key_id = await rig.add_key(USER, secret)
    start = rig.clock.now
    readings = [(50, "NaN"), (48, "45"), (40, "1E+1000000"), (36, "40"), (30, "9E+999999"),
                (24, "35"), (18, "garbage"), (12, "30"), (6, "-Infinity")]  # fmt: skip
    async with rig.db.session() as s:
        for hours, value in readings:
            s.add(BalanceSnapshot(key_id=key_id, taken_at=start - timedelta(hours=hours),
                                  kind="balance", currency="USD", remaining=value))  # fmt: skip
    await slide(rig, secret, ["25", "24.9"])  # 25 left at ~10/day → 2.5 days
    events = await rig.events()
    assert [e.kind for e in events] == ["forecast"]
    runs_out = datetime.fromisoformat(events[0].payload["runs_out_at"])
    assert abs(runs_out - (start + timedelta(days=2.5))) < timedelta(hours=3)


async def test_a_top_up_in_the_window_restarts_the_forecast(rig: Rig) -> None:
    secret = "sk-fc000000000000000003"
    key_id = await rig.add_key(USER, secret)
    start = rig.clock.now
    async with rig.db.session() as s:
        for hours, value in ((48, "45"), (36, "40"), (24, "35"), (12, "30")):
            s.add(BalanceSnapshot(key_id=key_id, taken_at=start - timedelta(hours=hours),
                                  kind="balance", currency="USD", remaining=value))  # fmt: skip
    await slide(rig, secret, ["90"])  # topped up: no forecast, and the fall before is not a pace
    assert await rig.kinds() == []
    await slide(rig, secret, ["89.9"])  # ~7.5/day over the window: 12 days, no forecast
    assert await rig.kinds() == []


async def test_each_key_has_a_row_and_cascade_on_delete(rig: Rig) -> None:
    secret = "sk-del000000000000000001"
    key_id = await rig.add_key(USER, secret)
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await slide(rig, secret, ["10"])
    assert await rig.kinds() == ["low"]
    assert await rig.keys.delete(USER, key_id)
    async with rig.db.session() as s:
        assert await s.get(AlertState, key_id) is None
        left = await s.execute(text("SELECT count(*) FROM alert_outbox"))
        assert left.scalar() == 0
        snaps = await s.scalars(select(BalanceSnapshot).where(BalanceSnapshot.key_id == key_id))
        assert snaps.all() == []


async def test_claims_are_exclusive_and_leases_expire(rig: Rig) -> None:
    for i in range(5):
        await rig.add_key(USER, f"sk-lease0000000000000{i:03d}")
    await rig.sweeper.ensure_rows(rig.clock.now)
    now = rig.clock.now
    first = await rig.sweeper.claim(now, 3)
    other = type(rig.sweeper)(rig.db, rig.keys, rig.billing, rig.outbox, interval=60, lease=30)
    second = await other.claim(now, 10)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    assert await other.claim(now, 10) == []
    assert sorted(await other.claim(now + timedelta(seconds=181), 10)) == sorted(first + second)


async def test_outbox_claim_is_exclusive_and_idempotent(rig: Rig) -> None:
    from bot.alerts.outbox import OutboxService, enqueue

    await rig.keys.add(
        USER, __import__("bot.secret").secret.Secret("sk-ob0000000000000001"), "deepseek"
    )
    now = rig.clock.now
    async with rig.db.session() as s:
        assert await enqueue(s, idem_key="x:1", user_id=USER, key_id=None, kind="low",
                             payload={}, now=now)  # fmt: skip
        assert not await enqueue(s, idem_key="x:1", user_id=USER, key_id=None, kind="low",
                                 payload={}, now=now)  # fmt: skip
    a = rig.outbox
    b = OutboxService(rig.db, clock=rig.clock)
    got_a = await a.claim(10)
    assert len(got_a) == 1 and await b.claim(10) == []
    await a.mark_sent(got_a[0].id)
    rig.clock.advance(minutes=5)
    assert await b.claim(10) == []


def test_parse_specs() -> None:
    assert parse_specs(["5", "50", "20"]) == ["50", "20", "5"]
    assert parse_specs(["20%", "50%"]) == ["50%", "20%"]
    assert parse_specs(["2,5"]) == ["2.5"]
    for bad in (["-1"], ["0"], ["100%"], ["abc"], ["1", "2", "3", "4", "5", "6"], ["1e9"]):
        with pytest.raises(BadSpec):
            parse_specs(bad)


async def test_siliconflow_retired_balance_route_never_alerts(rig: Rig) -> None:
    """.cn /v1/user/info answers 410/20092 since 2026-08-14: the key works, so a day of
    sweeps brings neither a revoked-key alert nor a "checks failing" one."""
    rig.providers.reply("/v1/user/info", 410, json={"code": 20092, "message": "discontinued"})
    rig.providers.reply("/v1/models", json={"object": "list", "data": []})
    key_id = await rig.add_key(USER, "sk-sfretired00000000000001", provider="siliconflow")
    for _ in range(3):
        await rig.sweep(hours=13)
    assert await rig.kinds() == []
    async with rig.db.session() as s:
        state = (await s.execute(select(AlertState).where(AlertState.key_id == key_id))).scalar()
    assert state is not None and not state.memory.get("rev") and state.failing_since is None


async def test_the_sweep_keeps_readings_only_when_asked_to(rig: Rig) -> None:
    """Regression: `record` was tested with `is not None`, so record=False still wrote
    key_status and snapshots."""
    secret = "sk-record00000000000001"
    key_id = await rig.add_key(USER, secret)
    rig.balances.amounts[secret] = "12"

    async def snapshots() -> int:
        async with rig.db.session() as s:
            rows = await s.scalars(select(BalanceSnapshot).where(BalanceSnapshot.key_id == key_id))
            return len(list(rows))

    rig.sweeper.record = False
    await rig.sweep()
    assert await snapshots() == 0
    rig.sweeper.record = True
    await rig.sweep(hours=2)
    assert await snapshots() == 1
