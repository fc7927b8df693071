"""Plan-window alerts through the real sweep: the 80/95 % ladder, "used up", "refilled"
after a reset (and never for a quiet window), and the sweep's faster schedule near a
reset — SQLite and PostgreSQL, a fake Kimi Code over HTTP, a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.alerts import windows
from bot.storage.models import AlertState
from tests.alerts.conftest import Rig
from tests.fakes.provider_server import FakeProviderServer, Reply

USER = 5101
FIVE_HOURS = timedelta(hours=5)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Plan:
    """One Kimi Code key's plan: a 5-hour window of 200 requests and a weekly one."""

    used: int = 0  # in the 5-hour window
    resets_at: datetime | None = None
    weekly_used: int = 0
    weekly_resets_at: datetime | None = None
    show_five: bool = True  # Kimi lists its 5-hour limit in `limits`, which may be empty


@dataclass
class KimiPlans:
    """The fake `GET /v1/usages` of Kimi Code, per key (Bearer secret)."""

    plans: dict[str, Plan] = field(default_factory=dict)

    def usages(self, request: web.Request) -> Reply:
        secret = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        plan = self.plans.get(secret)
        if plan is None:
            return Reply(401, json={"error": {"message": "invalid", "type": "auth"}})
        five: dict[str, Any] = {"limit": "200", "used": str(plan.used),
                                "remaining": str(max(0, 200 - plan.used))}  # fmt: skip
        if plan.resets_at is not None:
            five["resetTime"] = _iso(plan.resets_at)
        weekly: dict[str, Any] = {"limit": "2048", "used": str(plan.weekly_used)}
        if plan.weekly_resets_at is not None:
            weekly["resetTime"] = _iso(plan.weekly_resets_at)
        limits = [{"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
                   "detail": five}]  # fmt: skip
        return Reply(200, json={"usage": weekly, "limits": limits if plan.show_five else []})

    def install(self, server: FakeProviderServer) -> None:
        server.handle("/v1/usages", self.usages)


async def kimi(rig: Rig, secret: str, plan: Plan) -> tuple[str, KimiPlans]:
    plans = KimiPlans({secret: plan})
    plans.install(rig.providers)
    return await rig.add_key(USER, secret, provider="kimi-code", label="kimi"), plans


async def state(rig: Rig, key_id: str) -> AlertState:
    async with rig.db.session() as s:
        row = await s.scalar(
            select(AlertState)
            .where(AlertState.key_id == key_id)
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row


async def window_events(rig: Rig) -> list[tuple[str, str, str | None]]:
    """(kind, window, rung) of every window event so far, in order."""
    return [
        (r.kind, r.payload.get("window"), r.payload.get("rung"))
        for r in await rig.events()
        if r.kind in windows.KINDS
    ]


async def test_ladder_fires_80_and_95_once_each_then_used_up_then_refilled(rig: Rig) -> None:
    secret = "sk-kimi-ladder000000000001"
    plan = Plan(resets_at=rig.clock.now + FIVE_HOURS)
    key_id, _ = await kimi(rig, secret, plan)
    for used in (20, 100, 161, 170, 185, 191, 194, 189, 192):  # 80 %, 95 %, jitter
        plan.used = used
        await rig.sweep(minutes=10)
    assert await window_events(rig) == [("window_low", "5h", "80"), ("window_low", "5h", "95")]
    low = [r for r in await rig.events() if r.kind == "window_low"]
    assert low[0].payload["pct"] == "80.5" and low[0].payload["label"] == "kimi"
    assert low[0].payload["provider"] == "kimi-code"
    assert low[0].payload["resets_at"] == plan.resets_at.isoformat()
    assert secret not in str([r.payload for r in await rig.events()])

    plan.used = 200  # used up: once, however often it is seen
    for _ in range(3):
        await rig.sweep(minutes=10)
    assert [k for k, _, _ in await window_events(rig)][-1] == "window_out"
    assert len(await window_events(rig)) == 3

    # The window resets: the provider reports a new period with little used.
    old_reset = plan.resets_at
    rig.clock.now = old_reset + timedelta(seconds=30)
    plan.used, plan.resets_at = 3, old_reset + FIVE_HOURS
    await rig.sweep(seconds=40)
    await rig.sweep(minutes=10)
    assert [k for k, _, _ in await window_events(rig)] == [
        "window_low",
        "window_low",
        "window_out",
        "window_refill",
    ]
    memory = (await state(rig, key_id)).memory["win"]
    assert memory["5h"]["f"] == [] and memory["weekly"]["f"] == []
    # The next period warns again, once per rung.
    plan.used = 165
    await rig.sweep(minutes=10)
    await rig.sweep(minutes=10)
    assert (await window_events(rig))[-1] == ("window_low", "5h", "80")
    assert len({r.idem_key for r in await rig.events()}) == len(await rig.events())


async def test_a_quiet_window_says_nothing_across_many_resets(rig: Rig) -> None:
    secret = "sk-kimi-quiet0000000000001"
    plan = Plan(resets_at=rig.clock.now + FIVE_HOURS, weekly_resets_at=rig.clock.now
                + timedelta(days=7))  # fmt: skip
    key_id, _ = await kimi(rig, secret, plan)
    for _period in range(6):  # 30 hours: six resets of the 5-hour window
        for used in (10, 60, 120, 150):  # up to 75 %: never at a rung
            plan.used = used
            await rig.sweep(hours=1, minutes=10)
        rig.clock.now = plan.resets_at + timedelta(seconds=5)
        plan.used, plan.resets_at = 0, plan.resets_at + FIVE_HOURS
        await rig.sweep(seconds=1)
    assert await window_events(rig) == []
    assert await rig.kinds() == []
    # Nothing to wait for: the key stays on the ordinary schedule.
    st = await state(rig, key_id)
    assert st.next_check_at == st.checked_at + rig.sweeper.interval


async def test_a_reset_between_two_checks_rearms_even_if_usage_climbed_again(rig: Rig) -> None:
    secret = "sk-kimi-climb0000000000001"
    plan = Plan(resets_at=rig.clock.now + timedelta(hours=1))
    await kimi(rig, secret, plan)
    plan.used = 170  # 85 %: the 80 % warning
    await rig.sweep()
    # Missed the reset: one check later the new period is at 82 % already.
    rig.clock.now = plan.resets_at + timedelta(hours=1)
    plan.used, plan.resets_at = 164, plan.resets_at + FIVE_HOURS
    await rig.sweep()
    assert await window_events(rig) == [("window_low", "5h", "80"), ("window_low", "5h", "80")]


async def test_window_alerts_off_and_custom_rungs(rig: Rig) -> None:
    secret = "sk-kimi-rungs0000000000001"
    plan = Plan(resets_at=rig.clock.now + FIVE_HOURS)
    key_id, _ = await kimi(rig, secret, plan)
    await rig.alerts.set_window_rungs(USER, [key_id], windows.parse_rungs(["50%", "90%"]))
    for used in (90, 110, 170, 185):  # 45, 55, 85, 92.5 %
        plan.used = used
        await rig.sweep()
    assert await window_events(rig) == [("window_low", "5h", "50"), ("window_low", "5h", "90")]
    await rig.alerts.set_window_rungs(USER, [key_id], [])
    plan.used = 200
    await rig.sweep()
    plan.used = 0
    await rig.sweep()
    assert len(await window_events(rig)) == 2  # off: no "used up", no "refilled"
    assert (await state(rig, key_id)).memory["win"] == {}


async def test_a_window_that_disappears_is_forgotten(rig: Rig) -> None:
    secret = "sk-kimi-gone00000000000001"
    plan = Plan(used=170, resets_at=rig.clock.now + FIVE_HOURS)  # 85 %
    key_id, _ = await kimi(rig, secret, plan)
    await rig.sweep()
    assert await window_events(rig) == [("window_low", "5h", "80")]
    assert set((await state(rig, key_id)).memory["win"]) == {"5h", "weekly"}
    plan.show_five = False  # the provider stops listing it: its memory goes
    await rig.sweep()
    assert set((await state(rig, key_id)).memory["win"]) == {"weekly"}
    plan.show_five, plan.used = True, 0  # back, empty: nobody is told "refilled" twice
    await rig.sweep()
    assert await window_events(rig) == [("window_low", "5h", "80")]


async def test_money_alerts_and_memory_of_money_keys_are_untouched(rig: Rig) -> None:
    secret = "sk-money00000000000000001"
    key_id = await rig.add_key(USER, secret)
    rig.balances.amounts[secret] = "10"
    await rig.alerts.set_thresholds(USER, [key_id], ["50"])
    await rig.sweep()
    st = await state(rig, key_id)
    assert "win" not in st.memory and await rig.kinds() == ["low"]
    assert st.next_check_at == st.checked_at + rig.sweeper.interval


# -- the sweep's schedule ------------------------------------------------------------------


async def test_warned_window_is_checked_right_after_its_reset_not_an_hour_later(
    rig: Rig,
) -> None:
    rig.sweeper.interval = timedelta(hours=1)  # ALERT_INTERVAL_SECONDS=3600
    warned = Plan(used=170, resets_at=rig.clock.now + timedelta(minutes=20))
    quiet = Plan(used=20, resets_at=rig.clock.now + timedelta(minutes=20))
    plans = KimiPlans({"sk-kimi-warned000000000001": warned, "sk-kimi-quiet1000000000001": quiet})
    plans.install(rig.providers)
    warned_id = await rig.add_key(USER, "sk-kimi-warned000000000001", "kimi-code", "warned")
    quiet_id = await rig.add_key(USER + 1, "sk-kimi-quiet1000000000001", "kimi-code", "quiet")
    await rig.sweep(seconds=1)
    assert await window_events(rig) == [("window_low", "5h", "80")]
    st = await state(rig, warned_id)
    assert st.next_check_at == warned.resets_at + windows.REFILL_GRACE
    assert (await state(rig, quiet_id)).next_check_at == st.checked_at + timedelta(hours=1)

    # Ticks before the reset check nothing; the first tick after reset + grace checks
    # the warned key (and only it), and "refilled" is queued — 21 minutes, not an hour.
    requests = rig.providers.count("/v1/usages")
    for _ in range(19):
        await rig.sweep(minutes=1)
    assert rig.providers.count("/v1/usages") == requests
    for plan in (warned, quiet):
        plan.used, plan.resets_at = 2, plan.resets_at + FIVE_HOURS
    await rig.sweep(minutes=2, seconds=1)
    assert rig.providers.count("/v1/usages") == requests + 1
    assert (await window_events(rig))[-1] == ("window_refill", "5h", None)
    after = await state(rig, warned_id)
    assert after.next_check_at == after.checked_at + timedelta(hours=1)


async def test_a_window_climbing_near_a_rung_is_checked_more_often_but_bounded(rig: Rig) -> None:
    rig.sweeper.interval = timedelta(hours=1)
    plan = Plan(used=100, resets_at=rig.clock.now + timedelta(hours=4))
    key_id, _ = await kimi(rig, "sk-kimi-near00000000000001", plan)
    await rig.sweep(seconds=1)  # 50 %: far from 80
    st = await state(rig, key_id)
    assert st.next_check_at == st.checked_at + timedelta(hours=1)
    plan.used = 146  # 73 %, climbing: within 10 points of 80
    await rig.sweep(hours=1)
    st = await state(rig, key_id)
    assert st.next_check_at == st.checked_at + windows.NEAR_EVERY
    plan.used = 146  # idle near the rung: back to the ordinary schedule
    await rig.sweep(minutes=10)
    st = await state(rig, key_id)
    assert st.next_check_at == st.checked_at + timedelta(hours=1)
    # A warned window resetting in a minute: checked no sooner than MIN_GAP from now.
    plan.used, plan.resets_at = 170, rig.clock.now + timedelta(hours=1, minutes=1)
    await rig.sweep(hours=1)
    st = await state(rig, key_id)
    assert st.next_check_at == st.checked_at + windows.MIN_GAP


# -- the daily digest ----------------------------------------------------------------------


async def test_the_daily_digest_shows_each_keys_windows(rig: Rig) -> None:
    from bot.alerts import rules
    from bot.billing.registry import default_registry
    from bot.handlers.alert_messages import render

    plan = Plan(used=170, resets_at=rig.clock.now + FIVE_HOURS, weekly_used=2048)
    await kimi(rig, "sk-kimi-digest000000000001", plan)
    money = "sk-digestmoney00000000001"
    await rig.add_key(USER, money, label="ds")
    rig.balances.amounts[money] = "42.50"
    await rig.sweep()
    await rig.alerts.set_delivery(USER, digest=True)
    assert await rig.digest.enqueue_due(rig.clock.now) == 1
    [row] = [r for r in await rig.events(USER) if r.kind == rules.DIGEST]
    kimi_entry = next(e for e in row.payload["keys"] if e["label"] == "kimi")
    # only what the digest shows is queued: name, share, state per window
    assert kimi_entry["windows"] == [
        {"window": "5h", "pct": "85.0", "state": "ok"},
        {"window": "weekly", "pct": "100.0", "state": "exhausted"},
    ]
    items = [i for i in await rig.outbox.claim(50) if i.kind == rules.DIGEST]
    text, _ = render(items[0], rig.clock.now, default_registry())
    assert "• <b>kimi</b> <code>sk-…0001</code>: 5-hour 85 % · weekly used up · " in text
    assert "• <b>ds</b> <code>sk-…0001</code>: $42.50 · " in text
    zh, _ = render(replace(items[0], language="zh"), rig.clock.now, default_registry())
    assert ": 5 小时 85 % · 每周 已用完 · " in zh
