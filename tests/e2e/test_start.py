"""The living bot: /start, /help, the command menu, the allow-list, restarts."""

from __future__ import annotations

import pytest

from bot.secret import Secret
from tests.e2e.harness import running_bot


async def test_start_and_help_in_english(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann", language_code="en")
        await bot.tg.send(ann, "/start")
        reply = await bot.tg.wait_for_reply(ann)
        assert "encrypted" in reply.text
        assert "/add" in reply.text and "deleted" in reply.text
        await bot.tg.send(ann, "/help")
        reply = await bot.tg.wait_for_reply(ann)
        assert "/balance" in reply.text and "/keys" in reply.text


async def test_start_offers_add_and_balance_buttons(make_settings) -> None:
    from tests.e2e.test_balance import DEEPSEEK
    from tests.fakes.telegram_api import button_data

    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        ann = bot.tg.user(1003, "Ann")
        await bot.tg.send(ann, "/start")
        hello = await bot.tg.wait_for_reply(ann)
        assert [b.text for b in hello.buttons()] == ["➕ Add a key", "💰 Balance"]
        await bot.tg.press(ann, hello.message_id, button_data(hello, "Balance"))
        assert "no keys yet" in (await bot.tg.wait_for_reply(ann)).text
        await bot.tg.press(ann, hello.message_id, button_data(hello, "Add a key"))
        picker = await bot.tg.wait_for_reply(ann)
        assert "Which provider" in picker.text  # the guided /add
        await bot.services.keys.add(ann.id, Secret("sk-deepseek0123456789abcdef"), "deepseek")
        await bot.tg.press(ann, hello.message_id, button_data(hello, "Balance"))
        answer = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in m.text)
        assert "¥110.00 left" in answer.text
        # In a group there are no buttons: keys and figures live in the private chat.
        await bot.tg.send(ann, "/start", chat_type="group", chat_id=-5001)
        in_group = await bot.tg.wait_for_reply(-5001)
        assert in_group.buttons() == []
        assert bot.tg.errors == []


async def test_start_in_chinese_for_zh_hans(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        li = bot.tg.user(1002, "Li", language_code="zh-hans")
        await bot.tg.send(li, "/start")
        reply = await bot.tg.wait_for_reply(li)
        assert "加密" in reply.text


async def test_command_menu_registered_in_both_languages(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        calls = bot.tg.calls_to("setMyCommands")
        langs = {c.params.get("language_code") for c in calls}
        assert None in langs and "zh" in langs
        names = [c["command"] for c in calls[0].params["commands"]]
        assert {"start", "add", "balance", "keys", "alerts", "help"} <= set(names)


async def test_allow_list_refuses_others_politely_once(make_settings) -> None:
    async with running_bot(make_settings, allowed_user_ids=frozenset({1001})) as bot:
        eve = bot.tg.user(6666, "Eve")
        await bot.tg.send(eve, "/start")
        reply = await bot.tg.wait_for_reply(eve)
        assert "private bot" in reply.text
        await bot.tg.assert_no_reply(eve, within=0.3)
        async with bot.services.db.session() as s:
            from bot.storage.repositories import UserRepo

            assert await UserRepo(s).get(6666) is None  # nothing stored for strangers
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/start")
        assert "encrypted" in (await bot.tg.wait_for_reply(ann)).text


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_restart_keeps_users(make_settings, lang: str) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann", language_code=lang)
        await bot.tg.send(ann, "/start")
        await bot.tg.wait_for_reply(ann)
    async with running_bot(make_settings) as bot, bot.services.db.session() as s:
        from bot.storage.repositories import UserRepo

        assert await UserRepo(s).get(1001) is not None


@pytest.mark.parametrize("command", ["/balance", "/keys", "/alerts", "/balance@fake_balance_bot"])
async def test_key_commands_never_answer_in_groups(make_settings, command: str) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.services.keys.add(
            ann.id, Secret("sk-groupsecret123456789"), "deepseek", label="private-label"
        )
        await bot.tg.send(ann, command, chat_type="group", chat_id=-100123)
        reply = await bot.tg.wait_for_reply(-100123)
        assert "private chat" in reply.text
        assert "private-label" not in reply.text
        assert reply.buttons()[0].url == "https://t.me/fake_balance_bot"
        assert bot.providers.count() == 0


async def test_editing_a_command_does_not_run_it_again(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/start")
        await bot.tg.wait_for_reply(ann)
        await bot.tg.send(ann, "/help", edited=True)
        await bot.tg.assert_no_reply(ann, within=0.5)
        assert bot.tg.errors == []
