"""Key hygiene in /add and around it (issue 12 item 7, issue 11 items 8 and 11).

Only keys are taken as keys: a word, a sentence or a key with a non-ASCII character gets a
friendly "doesn't look like an API key" and nothing is stored, sealed or sent anywhere. Keys
are recognised in any case and without a prefix wherever they must be removed (groups,
labels), and every prefix a provider claims is known through the registry.
"""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from bot.secret import Secret
from bot.storage.flows import FlowRow
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_add import (
    DEEPSEEK_OK,
    assert_nowhere,
    canary,
    deletions_of,
    flow_row,
    press,
    reply,
    stored_keys,
)

GROUP = -1001000000001


async def flows_count(bot: RunningBot) -> int:
    async with bot.services.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(FlowRow)) or 0)


async def test_words_are_not_taken_as_keys(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        for text in (
            "/add hello world",
            "/add helloworldhelloworldhello",
            "/add hi provider=deepseek",
        ):
            mid = await bot.tg.send(ann, text)
            answer = await reply(bot, ann)
            assert "doesn't look like an API key" in answer.text, answer.text
            assert "Which provider" not in answer.text and not answer.buttons()
            assert deletions_of(bot, ann.id, mid) == 0  # nothing secret in it: left alone
        assert "at least 20 characters" in answer.text
        assert await stored_keys(bot, ann.id) == [] and await flows_count(bot) == 0
        assert bot.providers.count() == 0


async def test_a_non_ascii_key_is_refused_not_reported_as_a_url_problem(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()[:-6] + "ключ" + "abcdef"
        mid = await bot.tg.send(ann, f"/add {key} provider=deepseek")
        answer = await reply(bot, ann)
        assert "doesn't look like an API key" in answer.text and "Latin letters" in answer.text
        assert "address" not in answer.text
        assert deletions_of(bot, ann.id, mid) == 1  # it looks like a key: removed all the same
        assert await stored_keys(bot, ann.id) == [] and await flows_count(bot) == 0
        assert bot.providers.count() == 0
        await assert_nowhere(bot, key)


async def test_a_word_at_the_key_step_is_asked_again(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add provider=deepseek")
        await press(bot, ann, await reply(bot, ann), "Skip")
        await reply(bot, ann)
        await bot.tg.send(ann, "password")
        again = await reply(bot, ann)
        assert "doesn't look like an API key" in again.text and "Send the key" in again.text
        row = await flow_row(bot, ann.id)
        assert row is not None and row.sealed is None and row.step == "key"
        key = canary()
        await bot.tg.send(ann, key)
        assert "Saved deepseek" in (await reply(bot, ann)).text
        await assert_nowhere(bot, key)


async def test_keys_in_capitals_or_without_prefix_are_removed_from_groups(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        capitals = "SK-" + secrets.token_hex(24).upper()
        unprefixed = secrets.token_hex(20)
        minimax = "sk-api-" + secrets.token_urlsafe(40)
        for text in (capitals, f"try this one {unprefixed}", f"key={minimax}"):
            mid = await bot.tg.send(ann, text, chat_type="supergroup")
            assert "Never post API keys" in (await reply(bot, GROUP)).text
            assert deletions_of(bot, GROUP, mid) == 1
        await bot.tg.send(
            ann, "see you at 5, bring the openai-prod-2024 notes", chat_type="supergroup"
        )
        await bot.tg.assert_no_reply(GROUP)
        for key in (capitals, unprefixed, minimax):
            await assert_nowhere(bot, key)


async def test_an_unprefixed_key_at_the_label_step_is_the_key_not_a_label(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "DeepSeek")
        assert "name" in (await reply(bot, ann)).text
        key = "CANARY" + secrets.token_hex(20)  # no prefix; longer than any label
        mid = await bot.tg.send(ann, key)
        done = await reply(bot, ann)
        assert "Saved deepseek" in done.text, done.text
        assert deletions_of(bot, ann.id, mid) == 1
        [row] = await stored_keys(bot, ann.id)
        assert row.label == "deepseek"
        await assert_nowhere(bot, key)


async def test_a_key_in_capitals_is_never_a_label(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        shouting = "SK-" + secrets.token_hex(10).upper()  # 23 characters: fits a label
        mid = await bot.tg.send(ann, f"/add {key} {shouting} provider=deepseek")
        answer = await reply(bot, ann)
        assert "looks like an API key" in answer.text
        assert deletions_of(bot, ann.id, mid) == 1
        assert await stored_keys(bot, ann.id) == []
        await assert_nowhere(bot, shouting)
        await assert_nowhere(bot, key)


BLANK_LOOKING = ["\u3164", "\u2800\u2800", "\u0301\u0302", "\u200d", "\u3164\u0301\u2800"]


async def test_blank_looking_labels_are_refused(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        for label in BLANK_LOOKING:
            await bot.tg.send(ann, f"/add {canary()} {label} provider=deepseek")
            answer = await reply(bot, ann)
            assert "would look blank" in answer.text, (label, answer.text)
        assert await stored_keys(bot, ann.id) == []
        # The label step asks again; a real name then goes through.
        await bot.tg.send(ann, "/add provider=deepseek")
        await reply(bot, ann)
        await bot.tg.send(ann, "\u3164")
        assert "would look blank" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "work")
        await reply(bot, ann)
        await bot.tg.send(ann, canary())
        assert "Saved work" in (await reply(bot, ann)).text
        # Renaming from the key card refuses them too.
        [row] = await stored_keys(bot, ann.id)
        await bot.tg.send(ann, "/keys")
        listing = await reply(bot, ann)
        qid = await bot.tg.press(ann, listing.message_id, f"k:open:{row.id}")
        await bot.tg.wait_for_answer(qid)
        card = await bot.tg.wait_for_reply(ann)
        qid = await bot.tg.press(ann, card.message_id, f"k:ren:{row.id}")
        await bot.tg.wait_for_answer(qid)
        await reply(bot, ann)
        await bot.tg.send(ann, "\u2800")
        assert "would look blank" in (await reply(bot, ann)).text
        [row] = await stored_keys(bot, ann.id)
        assert row.label == "work"


async def test_a_stored_non_ascii_key_is_not_reported_as_a_url_problem(make_settings) -> None:
    """A key stored before keys were validated cannot go into a header: that is the key's
    fault, and /balance says so instead of blaming an address (issue 11 item 8)."""
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        legacy = "sk-legacy" + "ключ" + secrets.token_hex(12)
        await bot.services.keys.add(ann.id, Secret(legacy), "deepseek", label="old")
        await bot.tg.send(ann, "/balance")
        answer = await bot.tg.wait_for_reply(ann, predicate=lambda m: "old" in (m.text or "")
                                             and "Checking" not in m.text)  # fmt: skip
        assert "rejected this key" in answer.text, answer.text
        assert "base URL" not in answer.text
        assert bot.providers.count() == 0
