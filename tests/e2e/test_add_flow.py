"""The /add dialogue when keys arrive out of turn (issue 12 item 8 and "beyond").

A key pasted while an earlier one waits for a button replaces it (and says so) instead of
being lost; the same key again repeats the question; a key already saved is named before
any question; a key pasted before the relay's address is kept; a key pasted with no
command is offered for adding. Every key is a canary checked against the transcript and
the database files afterwards.
"""

from __future__ import annotations

import secrets

from tests.e2e.harness import running_bot
from tests.e2e.test_add import (
    DEEPSEEK_OK,
    assert_nowhere,
    canary,
    choose,
    deletions_of,
    flow_row,
    press,
    reply,
    script_relay,
    stored_keys,
)
from tests.fakes.telegram_api import button_data

OPENROUTER_OK = {"data": {"limit": 10, "limit_remaining": 4.25}}


def openrouter_key() -> str:
    return "sk-or-v1-CANARY" + secrets.token_hex(24)


async def test_a_new_key_while_an_earlier_one_waits_replaces_it(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/api/v1/key", json=OPENROUTER_OK)
        bot.providers.reply("/v1/key", json=OPENROUTER_OK)
        ann = bot.tg.user(1001, "Ann")
        first = canary()  # bare sk-: the bot asks which provider
        await bot.tg.send(ann, f"/add {first} home")
        pick = await reply(bot, ann)
        assert "Which provider" in pick.text
        second = openrouter_key()
        mid = await bot.tg.send(ann, second)
        done = await reply(bot, ann)
        assert "was not saved" in done.text and f"…{first[-4:]}" in done.text
        assert "Saved openrouter" in done.text and "4.25" in done.text
        assert deletions_of(bot, ann.id, mid) == 1
        [row] = await stored_keys(bot, ann.id)
        assert row.provider == "openrouter"
        # The earlier key's buttons belong to a flow that is gone.
        qid = await bot.tg.press(ann, pick.message_id, button_data(pick, "DeepSeek"))
        assert "expired" in ((await bot.tg.wait_for_answer(qid)).text or "")
        assert len(await stored_keys(bot, ann.id)) == 1
        await assert_nowhere(bot, first)
        await assert_nowhere(bot, second)


async def test_the_same_key_again_repeats_the_question(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key}")
        pick = await reply(bot, ann)
        mid = await bot.tg.send(ann, key)
        again = await reply(bot, ann)
        assert "already have" in again.text and deletions_of(bot, ann.id, mid) == 1
        row = await flow_row(bot, ann.id)
        assert row is not None and row.step == "pick" and row.sealed is not None
        await press(bot, ann, pick, "DeepSeek")  # the question still stands
        assert "Saved deepseek" in (await reply(bot, ann)).text
        await assert_nowhere(bot, key)


async def test_a_saved_key_is_named_before_any_question(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} provider=deepseek")
        assert "Saved deepseek" in (await reply(bot, ann)).text
        checks = bot.providers.count()
        mid = await bot.tg.send(ann, f"/add {key}")  # bare sk-: would need a provider
        answer = await reply(bot, ann)
        assert "already saved as <b>deepseek</b>" in answer.raw_text
        assert "Which provider" not in answer.text and not answer.buttons()
        assert deletions_of(bot, ann.id, mid) == 1
        assert await flow_row(bot, ann.id) is None
        # pasted at the label step of a guided /add, too
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "Detect")
        await reply(bot, ann)
        await bot.tg.send(ann, key)
        assert "already saved" in (await reply(bot, ann)).text
        assert await flow_row(bot, ann.id) is None
        assert bot.providers.count() == checks  # no provider asked either time
        assert len(await stored_keys(bot, ann.id)) == 1
        await assert_nowhere(bot, key)


async def test_a_key_pasted_before_the_relay_address_is_kept(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await choose(bot, ann, await reply(bot, ann), "Self-hosted", "OpenAI-compatible relay")
        assert "base URL" in (await reply(bot, ann)).text
        key = canary()
        mid = await bot.tg.send(ann, key)
        kept = await reply(bot, ann)
        assert "Got the key" in kept.text and "base URL" in kept.text
        assert deletions_of(bot, ann.id, mid) == 1
        row = await flow_row(bot, ann.id)
        assert row is not None and row.sealed is not None and row.step == "url"
        await bot.tg.send(ann, bot.providers.url)
        done = await reply(bot, ann)  # no label or key question: both are known
        assert "Saved relay" in done.text and "4.20" in done.text
        await assert_nowhere(bot, key)


async def test_a_key_pasted_without_a_command_is_offered(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/api/v1/key", json=OPENROUTER_OK)
        bot.providers.reply("/v1/key", json=OPENROUTER_OK)
        ann = bot.tg.user(1001, "Ann")
        key = openrouter_key()
        mid = await bot.tg.send(ann, f"here is my key: {key}")
        offer = await reply(bot, ann)
        assert "Add it to your keys?" in offer.text and f"…{key[-4:]}" in offer.text
        assert deletions_of(bot, ann.id, mid) == 1
        assert await stored_keys(bot, ann.id) == []
        row = await flow_row(bot, ann.id)
        assert row is not None and row.step == "offer" and row.sealed is not None
        await press(bot, ann, offer, "Add this key")
        done = await reply(bot, ann)
        assert "Saved openrouter" in done.text and "4.25" in done.text
        # Two keys in one message: which one? Neither is kept; pointed to /add.
        two = f"{openrouter_key()} {openrouter_key()}"
        mid = await bot.tg.send(ann, two)
        warned = await reply(bot, ann)
        assert "/add" in warned.text and deletions_of(bot, ann.id, mid) == 1
        assert await flow_row(bot, ann.id) is None
        for k in [key, *two.split()]:
            await assert_nowhere(bot, k)


async def test_picker_pages_short_labels_and_why_a_bare_sk_key_is_asked(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        menu = await reply(bot, ann)
        rows = menu.reply_markup
        assert rows[0][0].text == "🔍 Detect automatically" and len(rows[0]) == 1
        assert all(len(row) <= 2 for row in rows)
        titles = {p.id: p.title for p in bot.services.billing.providers()}
        seen: set[str] = set()
        for page in ("Self-hosted", "More providers"):
            await press(bot, ann, menu, page)
            turned = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
            assert all(len(row) <= 2 for row in turned.reply_markup)
            seen |= {b.callback_data.split(":")[2] for b in turned.buttons() if b.callback_data}
            for b in turned.buttons():  # each provider's one-line hint is in the text
                pid = (b.callback_data or "").split(":")[2]
                if pid in titles:
                    hint = bot.services.billing.provider(pid).hint
                    assert hint.split(" (")[0].split(":")[0] in turned.text, (pid, turned.text)
            await press(bot, ann, turned, "« Back")
            menu = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        seen |= {b.callback_data.split(":")[2] for b in menu.buttons() if b.callback_data}
        assert set(titles) <= seen  # every provider is reachable
        assert max(len(b.text) for b in menu.buttons()) <= 24  # short labels fit a phone
        await bot.tg.send(ann, "/cancel")
        await reply(bot, ann)
        # A bare sk- key: the question says why.
        await bot.tg.send(ann, f"/add {canary()}")
        pick = await reply(bot, ann)
        assert "start with sk-" in pick.text and "DeepSeek" in pick.text
        assert any("Other provider" in b.text for b in pick.buttons())
        await press(bot, ann, pick, "Other provider")
        every = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert not any("Detect automatically" in b.text for b in every.buttons())
        await press(bot, ann, every, "« Back")  # back to the question about the key
        pick = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert "start with sk-" in pick.text
        await press(bot, ann, pick, "DeepSeek")
        assert "Saved deepseek" in (await reply(bot, ann)).text


async def test_the_picker_names_providers_in_the_users_language(make_settings) -> None:
    """Issue 12 item 12 and the picker of "beyond": the buttons, the hint lines and the
    "why" of a bare sk- key say Moonshot（Kimi）in Chinese, as /balance and /add's
    confirmation do — never the English title."""
    async with running_bot(make_settings) as bot:
        li = bot.tg.user(1002, "Li", language_code="zh-hans")
        await bot.tg.send(li, "/add")
        menu = await reply(bot, li)
        texts = [b.text for b in menu.buttons()]
        assert "Moonshot（Kimi）" in texts and "OpenAI（管理员密钥）" in texts, texts
        assert not any("Moonshot (Kimi)" in x or "admin key" in x for x in texts), texts
        await press(bot, li, menu, "自建中转站")
        relay = await bot.tg.wait_for_reply(li, predicate=lambda m: m.edited)
        assert "OpenAI 兼容中转站" in [b.text for b in relay.buttons()]
        assert "OpenAI-compatible relay" not in relay.text + str(relay.buttons())
        await press(bot, li, relay, "«")
        menu = await bot.tg.wait_for_reply(li, predicate=lambda m: m.edited)
        await press(bot, li, menu, "更多服务商")
        more = await bot.tg.wait_for_reply(li, predicate=lambda m: m.edited)
        more_texts = [b.text for b in more.buttons()]
        assert "智谱 BigModel" in more_texts and "Vercel AI 网关" in more_texts, more_texts
        assert "Zhipu" not in more.text and "Vercel AI Gateway" not in more.text
        await bot.tg.send(li, "/cancel")
        await reply(bot, li)
        await bot.tg.send(li, f"/add {canary()}")  # bare sk-: the question says why, in Chinese
        pick = await reply(bot, li)
        assert "Moonshot（Kimi）" in pick.text and "OpenAI 兼容中转站" in pick.text, pick.text
        assert "Moonshot (Kimi)" not in pick.text and "compatible" not in pick.text, pick.text
        assert "Moonshot（Kimi）" in [b.text for b in pick.buttons()]
