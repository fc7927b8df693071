"""Plan windows end to end: /balance and the /keys card show each window on one line.

Real Application, fake Telegram, a fake Kimi Code (`/v1/usages`) over HTTP. Reset times
are relative to the real clock (the suite also runs 400 days ahead).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.storage.models import AlertState
from tests.alerts.conftest import poll_until
from tests.alerts.test_windows import KimiPlans, Plan
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import add
from tests.e2e.test_keys import open_keys, press
from tests.fakes.telegram_api import BotMessage, button_data

KIMI_SECRET = "sk-kimi-window0123456789abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def kimi_usages(five_used: int, five_resets: datetime, week_used: int, week_resets: datetime,
                ) -> dict[str, Any]:  # fmt: skip
    """Kimi Code's answer: a 5-hour limit of 200 requests and a weekly one of 2048."""
    return {
        "usage": {"limit": "2048", "used": str(week_used),
                  "remaining": str(2048 - week_used), "resetTime": iso(week_resets)},
        "limits": [{"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
                    "detail": {"limit": "200", "used": str(five_used),
                               "remaining": str(200 - five_used),
                               "resetTime": iso(five_resets)}}],
    }  # fmt: skip


def local_hhmm(when: datetime) -> str:
    return when.astimezone(SHANGHAI).strftime("%H:%M")


async def set_zone(bot: RunningBot, user: Any, zone: str) -> None:
    await bot.tg.send(user, f"/tz {zone}")
    assert zone in (await bot.tg.wait_for_reply(user)).text


async def test_balance_and_keys_card_show_one_line_per_window(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4101, "Ann")
        await set_zone(bot, ann, "Asia/Shanghai")
        await add(bot, ann.id, KIMI_SECRET, "kimi-code", "kimi")
        now = datetime.now(UTC).replace(microsecond=0)
        # 2 h 10 min before the 5-hour reset: 58 % of the window's time is gone and 70 %
        # of its requests are used, so the line carries the pace mark.
        five_resets = now + timedelta(hours=2, minutes=10)
        week_resets = now + timedelta(days=3, hours=1)
        bot.providers.reply("/v1/usages", json=kimi_usages(140, five_resets, 214, week_resets))
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann, timeout=10)
        lines = reply.text.splitlines()
        assert "✅ kimi · Kimi Code" in lines
        five = next(line for line in lines if line.startswith("5-hour"))
        assert five.startswith("5-hour ▓▓▓▓▓░░░ 70 % · 60 requests left · ")
        assert f"resets {local_hhmm(five_resets)}, in 2 h 10 min" in five
        assert five.endswith("⚡ only 56 % of the time gone")
        week = next(line for line in lines if line.startswith("weekly"))
        assert week.startswith("weekly ▓░░░░░░░ 10 % · 1,834 requests left · resets ")
        assert week.endswith(f"{local_hhmm(week_resets)}, in 3 d 1 h")
        assert KIMI_SECRET not in bot.tg.transcript()

        # The /keys card shows the same lines (from the stored reading).
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "kimi"))
        card = await bot.tg.wait_for_reply(ann)
        assert "5-hour ▓▓▓▓▓░░░ 70 % · 60 requests left · resets " in card.text
        assert "weekly ▓░░░░░░░ 10 % · 1,834 requests left" in card.text

        # In Chinese, the same line in Chinese words.
        await bot.tg.send(ann, "/lang zh")
        await bot.tg.wait_for_reply(ann)
        bot.services.billing.clear_cache()
        await bot.tg.send(ann, "/balance")
        zh = await bot.tg.wait_for_reply(ann, timeout=10)
        assert "5 小时 ▓▓▓▓▓░░░ 已用 70 % · 剩余 60 次请求 · " in zh.text
        assert f"{local_hhmm(five_resets)} 重置，还有 2 小时" in zh.text
        assert bot.tg.errors == []


# -- window alerts, delivered -----------------------------------------------------------------


def window_alerts(bot: RunningBot, uid: int) -> list[BotMessage]:
    return [m for m in bot.tg.messages(uid) if m.text and " window " in m.text]


async def checks_seen(bot: RunningBot, n: int) -> None:
    """Wait until the scheduled sweep has asked the fake Kimi `n` more times."""
    target = bot.providers.count("/v1/usages") + n

    async def done() -> bool:
        return bot.providers.count("/v1/usages") >= target

    await poll_until(done, 15)


async def test_window_ladder_used_up_and_refilled_arrive_once_each(make_settings) -> None:
    async with running_bot(make_settings, alert_interval_seconds=1) as bot:
        ann = bot.tg.user(4102, "Ann", started=True)
        secret = "sk-kimi-e2e-ladder0000000001"
        now = datetime.now(UTC).replace(microsecond=0)
        plan = Plan(used=40, resets_at=now + timedelta(hours=2))
        KimiPlans({secret: plan}).install(bot.providers)
        await add(bot, ann.id, secret, "kimi-code", "kimi")
        for used in (40, 170, 175, 192, 194):  # 20 %, 85 % (80 rung), 96 % (95 rung)
            plan.used = used
            await checks_seen(bot, 2)
        await bot.tg.wait_until(
            lambda: len(window_alerts(bot, ann.id)) >= 2 or None,
            10,
            lambda: bot.tg.transcript()[-1500:],
        )
        hhmm = plan.resets_at.strftime("%H:%M")
        first, second = window_alerts(bot, ann.id)[:2]
        # "in 2 h" unless the machine took over a minute to get here
        expected = (
            rf"⚠️ kimi · Kimi Code · 5-hour window 85 % used, resets {hhmm} "
            r"\(in (2 h|1 h 5\d min)\)\."
        )
        assert re.match(expected, first.text), first.text
        assert "5-hour window 96 % used" in second.text
        assert {b.text for b in first.buttons()} >= {"🔄 Check now", "🔕 Mute 24 h"}

        # Used up, with a reset a few seconds away; then the new period.
        plan.used, plan.resets_at = 200, datetime.now(UTC) + timedelta(seconds=3)
        await checks_seen(bot, 2)
        await bot.tg.wait_until(
            lambda: len(window_alerts(bot, ann.id)) >= 3 or None,
            10,
            lambda: bot.tg.transcript()[-1500:],
        )
        assert "5-hour window used up — resets " in window_alerts(bot, ann.id)[2].text
        while datetime.now(UTC) < plan.resets_at:
            await checks_seen(bot, 1)
        plan.used, plan.resets_at = 1, plan.resets_at + timedelta(hours=5)
        await checks_seen(bot, 3)
        await bot.tg.wait_until(
            lambda: len(window_alerts(bot, ann.id)) >= 4 or None,
            10,
            lambda: bot.tg.transcript()[-1500:],
        )
        refill = window_alerts(bot, ann.id)[3].text
        assert refill.startswith("✅ kimi · Kimi Code · 5-hour window refilled: 0 % used now.")
        assert "Next reset " in refill
        await checks_seen(bot, 3)
        await asyncio.sleep(1.5)
        assert len(window_alerts(bot, ann.id)) == 4  # each once
        assert secret not in bot.tg.transcript()
        assert bot.tg.errors == []


# -- /alerts … window ---------------------------------------------------------------------


async def test_alerts_window_forms(make_settings) -> None:
    async with running_bot(make_settings, alert_interval_seconds=3600) as bot:
        ann = bot.tg.user(4103, "Ann")
        now = datetime.now(UTC).replace(microsecond=0)
        plan = Plan(used=104, resets_at=now + timedelta(hours=3))
        plans = KimiPlans({"sk-kimi-e2e-forms00000000001": plan})
        plans.install(bot.providers)
        kimi = await add(bot, ann.id, "sk-kimi-e2e-forms00000000001", "kimi-code", "kimi")
        bot.providers.reply("/user/balance", json={"is_available": True, "balance_infos": [
            {"currency": "USD", "total_balance": "50", "granted_balance": "0",
             "topped_up_balance": "50"}]})  # fmt: skip
        ds = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")

        async def say(text: str) -> str:
            await bot.tg.send(ann, text)
            return (await bot.tg.wait_for_reply(ann)).text or ""

        async def rungs() -> dict[str, list[str] | None]:
            async with bot.services.db.session() as s:
                rows = {r.key_id: r.window_rungs for r in await s.scalars(select(AlertState))}
            # No row yet and a row with no rungs both mean the default ladder: the first
            # sweep (5 s after start) adds the rows whenever it runs during the test.
            return {key: rows.get(key) for key in (kimi, ds)}

        # Before anything is chosen: the default ladder, shown for the plan key only.
        overview = await say("/alerts")
        kimi_part, ds_part = overview.split("\nds ")[0], overview.split("\nds ")[1]
        assert "plan windows: alerts at 80 % · 95 % used, used up, refilled" in kimi_part
        assert "plan windows" not in ds_part.split("\n\n")[0]
        # The syntax, window alerts included, is behind the overview's "How to set" button.
        assert "/alerts LABEL window 80% 95%" not in overview
        [shown] = [m for m in bot.tg.messages(ann.id) if m.text == overview]
        await bot.tg.press(ann, shown.message_id, button_data(shown, "How to set"))
        assert "/alerts LABEL window 80% 95%" in (await bot.tg.wait_for_reply(ann)).text

        reply = await say("/alerts kimi window 90% 70%")
        assert reply == (
            "🔔 Plan-window alerts for kimi: at 70 % · 90 % used, when a window is used up, "
            "and when it refills."
        )
        assert (await rungs())[kimi] == ["70", "90"]
        assert "plan windows: alerts at 70 % · 90 % used" in await say("/alerts")

        # Bad forms: a friendly reply, nothing changed.
        before = await rungs()
        for bad in ("window", "window 0%", "window 100%", "window 120%", "window abc",
                    "window 80% off", "window 1% 2% 3% 4% 5% 6%", "window -5%"):  # fmt: skip
            text = await say(f"/alerts kimi {bad}")
            assert "Nothing was changed" in text, (bad, text)
        assert "No key named" in await say("/alerts nosuch window 80%")
        assert await rungs() == before

        # A money key gets the setting with a note; `all` sets every key; off turns it off.
        note = await say("/alerts ds window 50%")
        assert "Note: ds has shown no plan windows so far" in note
        assert "🔔 Plan-window alerts for kimi, ds: at 85 % used" in await say(
            "/alerts all window 85%"
        )
        assert await rungs() == {kimi: ["85"], ds: ["85"]}
        assert await say("/alerts kimi window off") == "🔕 Plan-window alerts off for kimi."
        assert (await rungs())[kimi] == []
        assert "plan windows: alerts off" in await say("/alerts")
        # the money settings were never touched
        assert (await service_view(bot, ann.id, ds)).thresholds == ()

        # The key view shows the last reading's windows once the key was checked.
        await say("/alerts kimi window 80% 95%")
        assert bot.services.sweep is not None
        await bot.services.sweep.check_now(ann.id, kimi)
        view = await say("/alerts kimi")
        assert "plan windows: alerts at 80 % · 95 % used" in view
        assert "windows: 5-hour 52 % · weekly 0 %, " in view

        # In Chinese
        li = bot.tg.user(4104, "Li", language_code="zh-hans")
        await add(bot, li.id, "sk-kimi-e2e-forms00000000002", "kimi-code", "k")
        await bot.tg.send(li, "/alerts k window 70%")
        assert "套餐窗口提醒" in ((await bot.tg.wait_for_reply(li)).text or "")
        await bot.tg.send(li, "/alerts k window nope")
        assert "没有做任何更改" in ((await bot.tg.wait_for_reply(li)).text or "")
        assert bot.tg.errors == []


async def service_view(bot: RunningBot, owner: int, key_id: str) -> Any:
    assert bot.services.alerts is not None
    view = await bot.services.alerts.get(owner, key_id)
    assert view is not None
    return view


async def test_the_sweep_looks_for_due_keys_every_minute_with_an_hourly_interval(
    make_settings,
) -> None:
    """Keys fall due hourly, but a warned window's key is due right after its reset
    (tests/alerts/test_windows.py): the scheduled sweep must look at least every minute."""
    async with running_bot(make_settings, alert_interval_seconds=3600) as bot:
        assert bot.app.job_queue is not None
        [job] = bot.app.job_queue.get_jobs_by_name("alerts-sweep")
        assert job.job.trigger.interval == timedelta(seconds=60)
        assert bot.services.sweep is not None
        assert bot.services.sweep.interval == timedelta(hours=1)
    async with running_bot(make_settings, alert_interval_seconds=5) as bot:
        assert bot.app.job_queue is not None
        [job] = bot.app.job_queue.get_jobs_by_name("alerts-sweep")
        assert job.job.trigger.interval == timedelta(seconds=5)
