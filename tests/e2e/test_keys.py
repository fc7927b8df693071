"""/keys end to end: list, per-key card, check now, rename, delete, and forged presses."""

from __future__ import annotations

import logging

import pytest

from bot.storage.models import ApiKey
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import DEEPSEEK, add
from tests.fakes.telegram_api import BotMessage, button_data


async def open_keys(bot: RunningBot, user) -> BotMessage:  # type: ignore[no-untyped-def]
    await bot.tg.send(user, "/keys")
    return await bot.tg.wait_for_reply(user)


async def press(
    bot: RunningBot, user, msg_id: int, data: str, *, strict: bool = True
) -> str | None:  # type: ignore[no-untyped-def]
    qid = await bot.tg.press(user, msg_id, data, strict=strict)
    return (await bot.tg.wait_for_answer(qid)).text


async def labels(bot: RunningBot, uid: int) -> list[str]:
    return [k.label for k in await bot.services.keys.list(uid)]


async def test_list_card_check_rename_delete(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3001, "Ann")
        key_id = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        listing = await open_keys(bot, ann)
        assert "Your keys (1)" in listing.text and "ds · DeepSeek" in listing.text
        assert "sk-…" in listing.text or "…" in listing.text  # masked hint only
        assert "not checked yet" in listing.text
        assert "sk-deepseek0123456789abcdef" not in bot.tg.transcript()

        assert await press(bot, ann, listing.message_id, button_data(listing, "ds")) is None
        card = await bot.tg.wait_for_reply(ann)
        assert card.message_id == listing.message_id
        assert {"🔄 Check now", "🔔 Alerts", "✏️ Rename", "🗑 Delete"} <= {
            b.text for b in card.buttons()
        }
        assert button_data(card, "Alerts") == f"al:key:{key_id}:k"
        assert all(len(b.callback_data.encode()) <= 64 for b in card.buttons() if b.callback_data)

        await press(bot, ann, card.message_id, button_data(card, "Check now"))
        checked = await bot.tg.wait_for_reply(ann)
        assert "¥110.00 left" in checked.text
        # The stored figure now shows in the list.
        listing = await open_keys(bot, ann)
        assert "¥110.00 · just now" in listing.text

        # Rename: prompt, then the next text message is the new name.
        await press(bot, ann, listing.message_id, button_data(listing, "ds"))
        card = await bot.tg.wait_for_reply(ann)
        await press(bot, ann, card.message_id, button_data(card, "Rename"))
        prompt = await bot.tg.wait_for_reply(ann)
        assert "Send the new name for ds" in prompt.text
        await bot.tg.send(ann, "main <&>")
        done = await bot.tg.wait_for_reply(ann)
        assert done.text == "✅ Renamed to main-<&>."
        assert await labels(bot, ann.id) == ["main-<&>"]

        # Delete asks first; Cancel changes nothing; Yes deletes.
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "main"))
        card = await bot.tg.wait_for_reply(ann)
        await press(bot, ann, card.message_id, button_data(card, "Delete"))
        confirm = await bot.tg.wait_for_reply(ann)
        assert "Delete main-<&>" in confirm.text
        await press(bot, ann, confirm.message_id, button_data(confirm, "Cancel"))
        card = await bot.tg.wait_for_reply(ann)
        assert await labels(bot, ann.id) == ["main-<&>"]
        await press(bot, ann, card.message_id, button_data(card, "Delete"))
        confirm = await bot.tg.wait_for_reply(ann)
        await press(bot, ann, confirm.message_id, button_data(confirm, "Yes, delete"))
        gone = await bot.tg.wait_for_reply(ann)
        assert "Deleted main-<&>" in gone.text
        assert await labels(bot, ann.id) == []
        assert bot.tg.errors == []


async def test_rename_refuses_a_key_and_a_taken_name(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3002, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "a")
        await add(bot, ann.id, "sk-moonshot0123456789abcdefgh", "moonshot", "b")
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "a"))
        card = await bot.tg.wait_for_reply(ann)
        await press(bot, ann, card.message_id, button_data(card, "Rename"))
        await bot.tg.wait_for_reply(ann)
        await bot.tg.send(ann, "b")
        assert "already have a key named b" in (await bot.tg.wait_for_reply(ann)).text
        mid = await bot.tg.send(ann, "sk-proj-abcdefghijT3BlbkFJabcdefghij0123")
        assert "looks like an API key" in (await bot.tg.wait_for_reply(ann)).text
        assert (ann.id, mid) in bot.tg.deleted
        assert sorted(await labels(bot, ann.id)) == ["a", "b"]


@pytest.mark.parametrize("action", ["open", "chk", "ren", "del", "delok"])
async def test_other_user_cannot_use_a_key_by_replaying_its_callback(
    make_settings, action: str
) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3003, "Ann")
        bob = bot.tg.user(3004, "Bob")
        key_id = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ann-key")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        await add(bot, bob.id, "sk-moonshot0123456789abcdefgh", "moonshot", "bob-key")
        bob_list = await open_keys(bot, bob)
        answer = await press(bot, bob, bob_list.message_id, f"k:{action}:{key_id}", strict=False)
        assert answer is not None and "not found" in answer
        await bot.tg.send(bob, "ann-key-new")  # had a rename started, this would apply it
        await bot.tg.wait_for_reply(bob)
        async with bot.services.db.session() as s:
            row = await s.get(ApiKey, key_id)
            assert row is not None and row.label == "ann-key" and row.owner_id == ann.id
        assert bot.providers.requests == []
        assert all("ann-key" not in (m.text or "") for m in bot.tg.messages(bob.id))


@pytest.mark.parametrize(
    "data",
    [
        "k:open",
        "k:open:",
        "k:open:nope:extra",
        "k:frobnicate:abc",
        "k:open:" + "a" * 80,  # over 64 bytes
        "k::",
        "k:open:../../etc",
        "k:delok:%s",
    ],
)
async def test_forged_callback_data_is_not_found(make_settings, caplog, data: str) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3005, "Ann")
        key_id = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        listing = await open_keys(bot, ann)
        qid = await bot.tg.press(
            ann, listing.message_id, data.replace("%s", key_id + "x"), strict=False
        )
        answer = await bot.tg.wait_for_answer(qid)
        assert answer.text is None or "not found" in answer.text or "expired" in answer.text
        assert await labels(bot, ann.id) == ["ds"]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_keys_list_renders_hostile_labels(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3006, "Ann", language_code="zh-hans")
        names = ["<b>x</b> & <i>", '<a href="tg://user?id=1">y</a>', "💸 🚀", "מפתח"]
        for i, name in enumerate(names):
            await add(bot, ann.id, f"sk-deepseek{i}0123456789abcdef", "deepseek", name)
        listing = await open_keys(bot, ann)
        assert "我的密钥" in listing.text
        for label in await labels(bot, ann.id):
            assert label in listing.text
            assert any(b.text == label for b in listing.buttons())
        assert not any(e["type"] in ("text_link", "text_mention") for e in listing.entities)
        assert bot.tg.errors == []


async def test_check_now_answers_with_a_toast_and_keeps_the_card_lines(make_settings) -> None:
    """Issue 12 items 1 and 2: a fresh figure, a toast every time, no line lost."""
    from datetime import UTC, datetime

    from tests.e2e.test_balance import deepseek_usd
    from tests.fakes.provider_server import Reply

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3007, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        bot.providers.script(
            "/user/balance",
            [Reply(200, json=deepseek_usd("25")), Reply(200, json=deepseek_usd("40"))],
        )
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "ds"))
        card = await bot.tg.wait_for_reply(ann)
        added = f"added {datetime.now(UTC).strftime('%Y-%m-%d')}"
        assert "not checked yet" in card.text and added in card.text
        check = button_data(card, "Check now")
        assert await press(bot, ann, card.message_id, check) == "✅ Checked: $25.00"
        card = await bot.tg.wait_for_reply(ann)
        assert "$25.00 left" in card.text and added in card.text
        assert await press(bot, ann, card.message_id, check) == "✅ Checked: $40.00"
        card = await bot.tg.wait_for_reply(ann)
        assert await press(bot, ann, card.message_id, check) == "✅ Checked: $40.00"
        await bot.tg.assert_no_reply(ann, within=0.5)
        [shown] = bot.tg.messages(ann.id)
        assert "$40.00 left" in shown.text  # topped up: not the 30 s cache's $25.00
        assert "checked just now" in shown.text and added in shown.text
        assert {b.text for b in shown.buttons()} >= {"🔄 Check now", "🔔 Alerts"}
        assert bot.providers.count("/user/balance") == 3
        # The third press changed nothing on the card: Telegram's "not modified" is no error.
        assert all("not modified" in desc for _, _, desc in bot.tg.errors)


async def test_check_now_toast_says_what_went_wrong(make_settings) -> None:
    """A failed check is a toast too, in the provider's words where it has them (the
    card's renderer looks the provider up in the injected registry)."""
    from tests.fakes.provider_server import Reply

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(3008, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdee", "deepseek", "ds")
        bot.providers.script("/user/balance", [Reply(401, json={"error": "bad key"})])
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "ds"))
        card = await bot.tg.wait_for_reply(ann)
        toast = await press(bot, ann, card.message_id, button_data(card, "Check now"))
        assert toast is not None and toast.startswith("⛔ The provider rejected this key")
        card = await bot.tg.wait_for_reply(ann)
        assert "rejected this key" in card.text
