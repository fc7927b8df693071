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
