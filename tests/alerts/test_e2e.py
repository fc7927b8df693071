"""The living bot: /alerts, the alert buttons, and delivery through the fake Telegram."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from bot.alerts.preferences import AlertPreferences
from bot.alerts.sweep import AlertSweep
from bot.secret import Secret
from bot.storage.models import AlertPrefs, AlertState
from tests.alerts.conftest import Balances, poll_until
from tests.e2e.harness import RunningBot, running_bot, without_scheduled_sweep
from tests.fakes.telegram_api import BotMessage, FakeTelegram, button_data

LOW = "running low"


@asynccontextmanager
async def bot_with_balances(
    make_settings: Callable[..., Any], **overrides: Any
) -> AsyncIterator[tuple[RunningBot, Balances]]:
    async with running_bot(make_settings, **overrides) as bot:
        balances = Balances()
        balances.install(bot.providers)
        yield bot, balances


def service(bot: RunningBot) -> AlertPreferences:
    assert bot.services.alerts is not None
    return bot.services.alerts


def sweeper(bot: RunningBot) -> AlertSweep:
    assert bot.services.sweep is not None
    return bot.services.sweep


async def add_key(bot: RunningBot, owner: int, secret: str, label: str | None = None) -> str:
    added = await bot.services.keys.add(owner, Secret(secret), "deepseek", label=label)
    return added.key.id


async def checked_at(bot: RunningBot, key_id: str) -> Any:
    async with bot.services.db.session() as s:
        st = await s.get(AlertState, key_id, populate_existing=True)
        return None if st is None else st.checked_at


async def next_check(bot: RunningBot, key_id: str) -> None:
    """Wait until the scheduled sweep has checked this key once more."""
    before = await checked_at(bot, key_id)

    async def moved() -> bool:
        return await checked_at(bot, key_id) not in (None, before)

    await poll_until(moved)


def alerts_in(tg: FakeTelegram, chat: int, marker: str = LOW) -> list[BotMessage]:
    return [m for m in tg.messages(chat) if m.text and marker in m.text]


async def settle(seconds: float = 1.5) -> None:
    await asyncio.sleep(seconds)


async def test_scheduled_slide_alerts_once_and_again_after_top_up(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=1) as (bot, bal):
        ann = bot.tg.user(2001, "Ann", started=True)
        secret = "sk-e2eslide00000000000001"
        key_id = await add_key(bot, ann.id, secret, label="deep<&>seek")
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        for value in ["100", "60", "40", "39", "41", "38"]:
            bal.amounts[secret] = value
            await next_check(bot, key_id)
        await settle()
        lows = alerts_in(bot.tg, ann.id)
        assert len(lows) == 1
        text = lows[0].text or ""
        assert "deep<&>seek" in text and "$40.00" in text and "below your alert at $50." in text
        assert "sk-…0001" in text and secret not in bot.tg.transcript()
        assert {b.text for b in lows[0].buttons()} >= {"🔄 Check now", "⚙️ Change threshold"}
        for value in ["80", "30"]:
            bal.amounts[secret] = value
            await next_check(bot, key_id)
        await settle()
        assert len(alerts_in(bot.tg, ann.id)) == 2
        assert len(alerts_in(bot.tg, ann.id, "back above")) == 1


async def test_429s_and_a_dropped_connection_lose_and_double_nothing(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        users = [bot.tg.user(2100 + i, started=True) for i in range(4)]
        for i, user in enumerate(users):
            secret = f"sk-e2e429000000000000{i:04d}"
            key_id = await add_key(bot, user.id, secret)
            await service(bot).set_thresholds(user.id, [key_id], ["50"])
            bal.amounts[secret] = "10"
        bot.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", 1, count=5)
        bot.tg.drop_connection_next("sendMessage")
        await sweeper(bot).run()

        def all_arrived() -> bool | None:
            return all(alerts_in(bot.tg, u.id) for u in users) or None

        await bot.tg.wait_until(all_arrived, 30, lambda: bot.tg.transcript()[-2000:])
        await settle(2.5)
        assert [len(alerts_in(bot.tg, u.id)) for u in users] == [1, 1, 1, 1]
        assert len([e for e in bot.tg.errors if "Too Many" in e[2]]) == 5
        assert bot.services.outbox is not None
        assert await bot.services.outbox.counts() == {"sent": 4}


async def test_alerts_command_forms(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        without_scheduled_sweep(bot)  # paced replies outlast its first run: no checks here
        ann = bot.tg.user(2201, "Ann")
        k1 = await add_key(bot, ann.id, "sk-cmd00000000000000001", label="deepseek")
        k2 = await add_key(bot, ann.id, "sk-cmd00000000000000002", label="work")
        bal.amounts.update({"sk-cmd00000000000000001": "1000", "sk-cmd00000000000000002": "1000"})

        async def say(text: str) -> str:
            await bot.tg.send(ann, text)
            return (await bot.tg.wait_for_reply(ann)).text or ""

        async def thresholds() -> dict[str, list[str]]:
            async with bot.services.db.session() as s:
                rows = (await s.scalars(select(AlertState))).all()
                return {r.key_id: list(r.thresholds) for r in rows}

        assert "Alerts" in await say("/alerts")
        assert "below 50" in await say("/alerts deepseek 50")
        assert (await thresholds())[k1] == ["50"]
        await say("/alerts deepseek 5 50 20")
        assert (await thresholds())[k1] == ["50", "20", "5"]
        reply = await say("/alerts work 20%")
        assert "20%" in reply and (await thresholds())[k2] == ["20%"]
        before = await thresholds()
        assert "Nothing was changed" in await say("/alerts deepseek lots")
        assert "Nothing was changed" in await say("/alerts deepseek -5")
        assert "No key named" in await say("/alerts nosuch 5")
        assert await thresholds() == before
        assert "off" in await say("/alerts all off")
        assert await thresholds() == {k1: [], k2: []}
        await say("/alerts all 10")
        assert await thresholds() == {k1: ["10"], k2: ["10"]}
        overview = await say("/alerts")
        assert "below 10" in overview and "expiry ✓" in overview
        assert "digest" in (await say("/alerts digest on")).lower()
        async with bot.services.db.session() as s:
            prefs = await s.get(AlertPrefs, ann.id)
            assert prefs is not None and prefs.digest
        li = bot.tg.user(2202, "Li", language_code="zh-hans")
        await add_key(bot, li.id, "sk-cmd00000000000000003", label="k")
        await bot.tg.send(li, "/alerts k 5")
        assert "余额不足提醒" in ((await bot.tg.wait_for_reply(li)).text or "")


async def test_alert_buttons_and_ownership(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        ann = bot.tg.user(2301, "Ann", started=True)
        secret = "sk-btn00000000000000001"
        key_id = await add_key(bot, ann.id, secret, label="main")
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        await sweeper(bot).run()
        alert = await bot.tg.wait_for_reply(ann)
        assert LOW in (alert.text or "")

        # Someone else replaying Ann's callback data gets "not found", nothing changes.
        eve = bot.tg.user(2399, "Eve")
        await bot.tg.send(eve, "/start")
        own = await bot.tg.wait_for_reply(eve)
        for data in (button_data(alert, "Mute"), button_data(alert, "topped"), f"al:key:{key_id}"):
            qid = await bot.tg.press(eve, own.message_id, data, strict=False)
            answer = await bot.tg.wait_for_answer(qid)
            assert answer.show_alert and "not found" in (answer.text or "")
        assert (await service(bot).get(ann.id, key_id)).muted_until is None  # type: ignore[union-attr]

        qid = await bot.tg.press(ann, alert.message_id, button_data(alert, "Mute"))
        assert "Muted until" in ((await bot.tg.wait_for_answer(qid)).text or "")
        assert (await service(bot).get(ann.id, key_id)).muted_until is not None  # type: ignore[union-attr]

        bal.amounts[secret] = "80"
        await bot.tg.press(ann, alert.message_id, button_data(alert, "topped"))
        checked = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Thanks" in (m.text or ""))
        assert "$80.00" in (checked.text or "")

        await bot.tg.press(ann, alert.message_id, button_data(alert, "Change threshold"))
        picker = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Pick" in (m.text or ""))
        await bot.tg.press(ann, picker.message_id, button_data(picker, "$20"))
        await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert (await service(bot).get(ann.id, key_id)).thresholds == ("20",)  # type: ignore[union-attr]

        await bot.tg.press(ann, alert.message_id, button_data(alert, "Check now"))
        again = await bot.tg.wait_for_reply(ann, predicate=lambda m: "$80.00" in (m.text or ""))
        assert "Thanks" not in (again.text or "")


async def test_blocked_user_is_paused_then_resumed(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        ann = bot.tg.user(2401, "Ann", started=True)
        secret = "sk-blk00000000000000001"
        key_id = await add_key(bot, ann.id, secret)
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        bot.tg.block(ann.id)
        await sweeper(bot).run()
        outbox = bot.services.outbox
        assert outbox is not None

        async def paused() -> bool:
            async with bot.services.db.session() as s:
                prefs = await s.get(AlertPrefs, ann.id, populate_existing=True)
                return prefs is not None and prefs.paused_at is not None

        await poll_until(paused)
        await settle(2)
        tries = len(
            [c for c in bot.tg.calls_to("sendMessage") if str(c.params["chat_id"]) == str(ann.id)]
        )
        assert tries == 1  # not retried while blocked
        bot.tg.unblock(ann.id)
        await bot.tg.send(ann, "/help")
        await bot.tg.wait_for_reply(ann)
        await bot.tg.wait_for_reply(ann, predicate=lambda m: LOW in (m.text or ""))
        await settle(0.5)
        assert await outbox.counts() == {"sent": 1}
