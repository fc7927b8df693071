"""Buttons pressed on a group message never show anything of a key (issue 11 item 11).

Callback data is written by the client: a user can "press" `k:open:<their key>` on any bot
message they can see, including one in a group. Answered there, the group message would
turn into the presser's key card (label, figures, hint) for every member to read.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_add_keys import GROUP
from tests.e2e.test_balance import DEEPSEEK, add


@pytest.mark.parametrize(
    "data", ["k:open:{id}", "k:list", "al:key:{id}", "k:chk:{id}", "al:chk:{id}"]
)
async def test_key_buttons_pressed_in_a_group_show_nothing(make_settings, data: str) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        ann = bot.tg.user(3001, "Ann")
        key_id = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "secret-project")
        await bot.tg.send(ann, "/balance", chat_type="supergroup")
        pointer = await bot.tg.wait_for_reply(GROUP)
        assert "private chat" in pointer.text
        before = bot.tg.messages(GROUP)
        qid = await bot.tg.press(
            ann, pointer.message_id, data.format(id=key_id), chat_id=GROUP, strict=False
        )
        answer = await bot.tg.wait_for_answer(qid)
        assert answer.text is not None and "private chat" in answer.text
        await bot.tg.assert_no_reply(GROUP)
        assert bot.tg.messages(GROUP) == before  # not edited into a key card
        assert "secret-project" not in bot.tg.transcript()
        assert bot.providers.count() == 0
