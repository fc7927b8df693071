"""A provider that hangs never freezes the chat, and /balance answers within its deadline.

Issue 12 item 3 and issue 14's /balance deadline: the real Application, the fake
Telegram, a fake provider that does not answer.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import DEEPSEEK, MOONSHOT, OPENROUTER, add, prime_failing
from tests.fakes.provider_server import Reply

HANG = 60.0  # longer than every timeout involved


async def three_keys(bot: RunningBot, uid: int) -> dict[str, str]:
    return {
        "ds": await add(bot, uid, "sk-deepseek0123456789abcdef", "deepseek", "ds"),
        "or": await add(bot, uid, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "router"),
        "moon": await add(bot, uid, "sk-moonshot0123456789abcdefgh", "moonshot", "kimi"),
    }


async def test_a_hanging_provider_never_holds_up_the_users_other_commands(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2101, "Ann")
        await three_keys(bot, ann.id)
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        bot.providers.reply("/v1/key", json=OPENROUTER)
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT, delay=HANG)
        loop = asyncio.get_running_loop()
        await bot.tg.send(ann, "/balance")
        await asyncio.sleep(1.0)
        asked = loop.time()
        await bot.tg.send(ann, "/help")
        helped = await bot.tg.wait_for_reply(ann, timeout=5, predicate=lambda m: "/add" in m.text)
        assert loop.time() - asked < 1.0, f"/help took {loop.time() - asked:.2f} s"
        assert not helped.edited
        # Meanwhile the fast keys' figures are shown; the hanging one is still being checked.
        [answer] = [m for m in bot.tg.messages(ann.id) if "Balances" in (m.text or "")]
        assert "¥110.00 left" in answer.text and "$74.50 left" in answer.text
        assert "Still checking kimi" in answer.text
        # So is /keys, and a second /balance of the same user.
        asked = loop.time()
        await bot.tg.send(ann, "/keys")
        await bot.tg.wait_for_reply(ann, timeout=5, predicate=lambda m: "Your keys" in m.text)
        assert loop.time() - asked < 1.0
        assert bot.tg.errors == []


@pytest.mark.slow
async def test_balance_answers_within_the_deadline_then_edits_in_the_late_answer(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2102, "Ann")
        ids = await three_keys(bot, ann.id)
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        bot.providers.reply("/v1/key", json=OPENROUTER)
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT)
        await prime_failing(bot, ann.id, ids["moon"])  # ¥49.59, two hours ago
        late = {**MOONSHOT, "data": {**MOONSHOT["data"], "available_balance": 12.5}}
        # The first attempt hangs (read timeout, 10 s); the retry answers after 9 s more.
        bot.providers.script(
            "/v1/users/me/balance",
            [Reply(200, json=MOONSHOT, delay=HANG), Reply(200, json=late, delay=9)],
        )
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await bot.tg.send(ann, "/balance")
        waiting = await bot.tg.wait_for_reply(
            ann, timeout=25, predicate=lambda m: "Still waiting" in m.text
        )
        took = loop.time() - sent
        assert took < 20, f"the answer took {took:.1f} s"
        text = waiting.text
        assert text.startswith("💰 Balances")
        assert "¥110.00 left" in text and "$74.50 left" in text
        assert "⏳ kimi · Moonshot (Kimi)\n⏳ no answer yet\nlast known: ¥49.59, 2 h ago" in text
        assert "Still waiting for kimi" in text
        assert "Total left" not in text  # no total while a figure is missing
        assert waiting.buttons() == []
        # The late answer is edited in: the final form, with totals and Refresh.
        final = await bot.tg.wait_for_reply(ann, timeout=20, predicate=lambda m: "as of" in m.text)
        assert final.message_id == waiting.message_id
        assert "✅ kimi · Moonshot (Kimi)\n¥12.50 left" in final.text
        assert "Still waiting" not in final.text and "Total left: ¥122.50 · $74.50" in final.text
        assert [b.text for b in final.buttons()] == ["🔄 Refresh"]
        assert len(bot.tg.messages(ann.id)) == 1
        assert bot.tg.errors == []


@pytest.mark.parametrize("press", ["k:chk:{id}", "al:chk:{id}", "bal:r"])
async def test_a_check_button_on_a_hanging_provider_never_holds_up_the_chat(
    make_settings, press: str
) -> None:
    """The key card's Check now, an alert's Check now and Refresh check in the background."""
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2103, "Ann")
        ids = await three_keys(bot, ann.id)
        bot.providers.reply("/user/balance", json=DEEPSEEK, delay=HANG)
        await bot.tg.send(ann, "/help")
        anchor = await bot.tg.wait_for_reply(ann)
        loop = asyncio.get_running_loop()
        qid = await bot.tg.press(ann, anchor.message_id, press.format(id=ids["ds"]), strict=False)
        await bot.tg.wait_for_answer(qid, timeout=3)
        asked = loop.time()
        await bot.tg.send(ann, "/start")
        await bot.tg.wait_for_reply(ann, timeout=5, predicate=lambda m: "encrypted" in m.text)
        assert loop.time() - asked < 1.0, f"/start took {loop.time() - asked:.2f} s"


async def test_an_answer_whose_message_was_deleted_meanwhile_is_sent_anew(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2104, "Ann")
        await three_keys(bot, ann.id)
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        bot.providers.reply("/v1/key", json=OPENROUTER)
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT, delay=1.5)
        await bot.tg.send(ann, "/balance")
        first = await bot.tg.wait_for_reply(ann)
        bot.tg._bot_msgs[(ann.id, first.message_id)].deleted = True  # the user deleted it
        final = await bot.tg.wait_for_reply(ann, timeout=5, predicate=lambda m: "as of" in m.text)
        assert final.message_id != first.message_id and "¥49.59 left" in final.text
        assert not [m for m in bot.tg.messages(ann.id) if "went wrong" in (m.text or "")]
