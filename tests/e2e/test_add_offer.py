"""After /add, the bot offers a low-balance alert (off until set) with preset thresholds."""

from __future__ import annotations

from tests.e2e.harness import running_bot
from tests.e2e.test_add import DEEPSEEK_OK, canary, reply
from tests.fakes.telegram_api import button_data


async def test_saved_balance_key_offers_an_alert(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        done = await reply(bot, ann)
        assert "Saved deepseek" in done.text
        qid = await bot.tg.press(ann, done.message_id, button_data(done, "Alert me"))
        await bot.tg.wait_for_answer(qid)
        presets = await reply(bot, ann)
        choice = presets.buttons()[0]
        qid = await bot.tg.press(ann, presets.message_id, choice.callback_data)
        await bot.tg.wait_for_answer(qid)
        [key] = await bot.services.keys.list(ann.id)
        alerts = bot.services.alerts
        assert alerts is not None
        view = await alerts.get(ann.id, key.id)
        assert view is not None and len(view.thresholds) == 1
        assert bot.tg.errors == []


async def test_validity_only_key_gets_no_offer(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/v1/models", json={"object": "list", "data": []})
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add sk-proj-abcdefT3BlbkFJ0123456789abcdef0123")
        done = await reply(bot, ann)
        assert "Saved openai" in done.text
        assert done.buttons() == []


async def test_offered_thresholds_are_below_the_balance_and_name_its_currency(
    make_settings,
) -> None:
    """Issue 12 item 4: a Moonshot key at ¥49.59 was offered [50.00] and alerted at once."""
    import asyncio

    from tests.e2e.test_balance import MOONSHOT

    async with running_bot(make_settings, alert_interval_seconds=1) as bot:
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT)
        ann = bot.tg.user(1002, "Ann")
        await bot.tg.send(ann, "/add sk-moonshot0123456789abcdefgh provider=moonshot")
        done = await reply(bot, ann)
        assert "¥49.59 left" in done.text
        qid = await bot.tg.press(ann, done.message_id, button_data(done, "Alert me"))
        await bot.tg.wait_for_answer(qid)
        presets = await reply(bot, ann)
        assert presets.text.startswith("Now ¥49.59 left.")
        assert [b.text for b in presets.buttons()] == ["¥25", "¥10", "¥5", "« Back"]
        qid = await bot.tg.press(ann, presets.message_id, button_data(presets, "¥25"))
        assert (await bot.tg.wait_for_answer(qid)).text == "🔔 Alert below ¥25 set."
        confirmed = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert "low balance: below ¥25" in confirmed.text
        await asyncio.sleep(2.5)  # the sweep runs every second here
        assert not [m for m in bot.tg.messages(ann.id) if "running low" in (m.text or "")]
        await bot.tg.send(ann, "/alerts")
        overview = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Alerts" in m.text)
        assert "low balance: below ¥25" in overview.text
        assert bot.tg.errors == []
