"""/add end to end: guided and one-line, key hygiene, groups, flows in the database.

Every key used here is a fresh canary; after each flow the canary must be absent from
everything the bot sent to Telegram and from the raw SQLite files (docs/security.md §T1, §T3).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from bot.secret import Secret
from bot.storage.db import sqlite_path
from bot.storage.flows import FlowRow
from bot.storage.models import ApiKey
from tests.e2e.harness import RunningBot, running_bot
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import BotMessage, FakeTelegram, FakeUser, button_data

DEEPSEEK_OK = {
    "is_available": True,
    "balance_infos": [
        {
            "currency": "CNY",
            "total_balance": "110.00",
            "granted_balance": "10.00",
            "topped_up_balance": "100.00",
        }
    ],
}


def canary(prefix: str = "sk-") -> str:
    return f"{prefix}CANARY{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"


def script_relay(bot: RunningBot) -> None:
    """A one-api style relay at the fake's root: 5 USD granted, 0.80 used."""
    bot.providers.reply(
        "/v1/dashboard/billing/subscription",
        json={"object": "billing_subscription", "hard_limit_usd": 5, "access_until": 0},
    )
    bot.providers.reply("/v1/dashboard/billing/usage", json={"object": "list", "total_usage": 80})


async def reply(bot: RunningBot, user: FakeUser | int) -> BotMessage:
    """The next *new* message (keyboard removals after a press are edits, skipped)."""
    return await bot.tg.wait_for_reply(user, predicate=lambda m: not m.edited)


async def press(bot: RunningBot, user: FakeUser, msg: BotMessage, text: str) -> str:
    qid = await bot.tg.press(user, msg.message_id, button_data(msg, text))
    await bot.tg.wait_for_answer(qid)
    return qid


async def choose(bot: RunningBot, user: FakeUser, menu: BotMessage, page: str, title: str) -> None:
    """Turn the provider picker to `page` (it edits in place), then press `title`."""
    await press(bot, user, menu, page)
    turned = await bot.tg.wait_for_reply(user, predicate=lambda m: m.edited)
    await press(bot, user, turned, title)


async def stored_keys(bot: RunningBot, user_id: int) -> list[ApiKey]:
    async with bot.services.db.session() as s:
        return list((await s.scalars(select(ApiKey).where(ApiKey.owner_id == user_id))).all())


async def flow_row(bot: RunningBot, user_id: int) -> FlowRow | None:
    async with bot.services.db.session() as s:
        return await s.get(FlowRow, user_id)


def _read_db_files(path: Path) -> bytes:
    files = (Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm"))
    return b"".join(f.read_bytes() for f in files if f.exists())


async def db_bytes(bot: RunningBot) -> bytes:
    """The raw SQLite main file, WAL and shared memory, after a checkpoint."""
    await bot.services.db.checkpoint()
    path = sqlite_path(bot.settings.database_url)
    assert path is not None
    return _read_db_files(path)


async def assert_nowhere(bot: RunningBot, secret: str) -> None:
    assert secret not in bot.tg.transcript()
    assert secret.encode() not in await db_bytes(bot)


def deletions_of(bot: RunningBot, chat_id: int, message_id: int) -> int:
    return sum(
        1
        for c in bot.tg.calls_to("deleteMessage")
        if int(c.params["chat_id"]) == chat_id and int(c.params["message_id"]) == message_id
    )


def no_errors(bot: RunningBot) -> None:
    assert "Something went wrong" not in bot.tg.transcript()


# -- guided ---------------------------------------------------------------------------------


async def test_guided_relay_flow_with_buttons(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        menu = await reply(bot, ann)
        assert "Detect" in menu.reply_markup[0][0].text
        assert any(b.text == "DeepSeek" for b in menu.buttons())
        await press(bot, ann, menu, "Self-hosted")
        relays = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert relays.message_id == menu.message_id  # the page turns in place
        await press(bot, ann, relays, "OpenAI-compatible relay")
        assert "base URL" in (await reply(bot, ann)).text
        await bot.tg.send(ann, bot.providers.url)
        label_prompt = await reply(bot, ann)
        assert "relay" in label_prompt.text  # the default label
        await press(bot, ann, label_prompt, "Skip")
        assert "key" in (await reply(bot, ann)).text
        key = canary()
        mid = await bot.tg.send(ann, key)
        done = await reply(bot, ann)
        assert "Saved relay" in done.text
        assert "4.20" in done.text  # 5 USD granted − 0.80 used
        assert f"sk-…{key[-4:]}" in done.text
        assert deletions_of(bot, ann.id, mid) == 1
        [row] = await stored_keys(bot, ann.id)
        assert (row.provider, row.base_url, row.label) == ("relay", bot.providers.url, "relay")
        assert await flow_row(bot, ann.id) is None
        await assert_nowhere(bot, key)
        no_errors(bot)


async def test_guided_label_with_html_and_refused_url(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await choose(bot, ann, await reply(bot, ann), "Self-hosted", "OpenAI-compatible relay")
        await reply(bot, ann)
        await bot.tg.send(ann, "https://169.254.169.254")
        refused = await reply(bot, ann)
        assert "metadata" in refused.text and "169.254" not in refused.text
        await bot.tg.send(ann, bot.providers.url)
        await reply(bot, ann)
        label = '<a href="tg://user?id=1">y</a>'
        await bot.tg.send(ann, label)
        await reply(bot, ann)
        key = canary()
        await bot.tg.send(ann, key)
        done = await reply(bot, ann)
        assert '<a-href="tg://user?id=1">y</a>' in done.text  # literal, not a link
        assert not any(e["type"] == "text_link" for e in done.entities)
        assert bot.tg.errors == []


async def test_detect_automatically_then_key(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/v1/key", json={"data": {"limit": 10, "limit_remaining": 4.25}})
        bot.providers.reply("/api/v1/key", json={"data": {"limit": 10, "limit_remaining": 4.25}})
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "Detect")
        await press(bot, ann, await reply(bot, ann), "Skip")
        await reply(bot, ann)
        key = canary("sk-or-v1-")
        await bot.tg.send(ann, key)
        done = await reply(bot, ann)
        assert "Saved openrouter" in done.text and "4.25" in done.text
        await assert_nowhere(bot, key)


# -- one line -------------------------------------------------------------------------------


async def test_one_line_deepseek(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        mid = await bot.tg.send(ann, f"/add {key} provider=deepseek")
        done = await reply(bot, ann)
        assert "Saved deepseek" in done.text and "110" in done.text
        assert deletions_of(bot, ann.id, mid) == 1
        key2 = canary()
        await bot.tg.send(ann, f"/add {key2} provider=deepseek")
        assert "Saved deepseek-2" in (await reply(bot, ann)).text
        await assert_nowhere(bot, key)
        await assert_nowhere(bot, key2)


async def test_one_line_openrouter_is_detected(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/v1/key", json={"data": {"limit": 10, "limit_remaining": 4.25}})
        bot.providers.reply("/api/v1/key", json={"data": {"limit": 10, "limit_remaining": 4.25}})
        ann = bot.tg.user(1001, "Ann")
        key = canary("sk-or-v1-")
        await bot.tg.send(ann, f"/add {key} my work")
        done = await reply(bot, ann)
        assert "Saved my-work" in done.text and "OpenRouter" in done.text
        [row] = await stored_keys(bot, ann.id)
        assert row.provider == "openrouter"
        await assert_nowhere(bot, key)


async def test_ambiguous_bare_sk_asks_for_the_provider(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        mid = await bot.tg.send(ann, f"/add {key} home")
        pick = await reply(bot, ann)
        assert "Which provider" in pick.text
        assert any("DeepSeek" in b.text for b in pick.buttons())
        assert deletions_of(bot, ann.id, mid) == 1
        # Waiting for the answer: the key is in the flow row only sealed.
        row = await flow_row(bot, ann.id)
        assert row is not None and row.sealed is not None and key not in str(row.data)
        await assert_nowhere(bot, key)
        assert await stored_keys(bot, ann.id) == []
        await press(bot, ann, pick, "DeepSeek")
        done = await reply(bot, ann)
        assert "Saved home" in done.text and "DeepSeek" in done.text
        assert await flow_row(bot, ann.id) is None
        await assert_nowhere(bot, key)


async def test_ambiguous_key_then_relay_asks_url(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key}")
        await press(bot, ann, await reply(bot, ann), "relay")
        assert "base URL" in (await reply(bot, ann)).text
        await bot.tg.send(ann, bot.providers.url)
        done = await reply(bot, ann)
        assert "Saved relay" in done.text and "4.20" in done.text
        await assert_nowhere(bot, key)


async def test_unknown_provider_lists_ids_and_provider_with_url_is_taken(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, f"/add {canary()} provider=nope")
        listing = await reply(bot, ann)
        assert "nope" in listing.text and "deepseek" in listing.text and "relay" in listing.text
        key = canary()
        await bot.tg.send(ann, f"/add {key} url={bot.providers.url} provider=relay")
        assert "Saved relay" in (await reply(bot, ann)).text
        [row] = await stored_keys(bot, ann.id)
        assert row.base_url == bot.providers.url


async def test_delete_failure_is_reported_and_key_still_stored(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        bot.tg.fail_next("deleteMessage", 400, "Bad Request: message can't be deleted")
        key = canary()
        await bot.tg.send(ann, f"/add {key} provider=deepseek")
        done = await reply(bot, ann)
        assert "delete it yourself" in done.text and "rotating" in done.text
        assert "Saved deepseek" in done.text
        assert len(await stored_keys(bot, ann.id)) == 1
        await assert_nowhere(bot, key)


async def test_same_key_twice_is_not_duplicated(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} provider=deepseek")
        await reply(bot, ann)
        await bot.tg.send(ann, f"/add {key} other provider=deepseek")
        assert "already saved as deepseek" in (await reply(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 1


async def test_rejected_key_needs_confirmation(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", status=401, json={"error": {"message": "bad key"}})
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} provider=deepseek")
        ask = await reply(bot, ann)
        assert "rejected" in ask.text and "Save anyway" in [b.text for b in ask.buttons()]
        assert await stored_keys(bot, ann.id) == []
        await assert_nowhere(bot, key)
        await press(bot, ann, ask, "Save anyway")
        done = await reply(bot, ann)
        assert "Saved deepseek" in done.text and "rejected" in done.text
        [row] = await stored_keys(bot, ann.id)
        assert "rejected_at" in row.options
        # "Don't save" stores nothing.
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        await press(bot, ann, await reply(bot, ann), "Don't save")
        assert "Nothing was stored" in (await reply(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 1
        await assert_nowhere(bot, key)


async def test_transient_error_saves_without_confirmation(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", status=503, body="down")
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        done = await reply(bot, ann)
        assert "Saved deepseek" in done.text
        assert len(await stored_keys(bot, ann.id)) == 1


async def test_21st_key_is_refused(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        for _ in range(20):
            await bot.services.keys.add(ann.id, Secret(canary()), "deepseek")
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        assert "20 keys" in (await reply(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 20
        assert bot.providers.count("/user/balance") == 0


# -- /cancel, expiry, restart ----------------------------------------------------------------


async def test_cancel_mid_flow_stores_nothing(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "DeepSeek")
        await reply(bot, ann)
        await bot.tg.send(ann, "/cancel")
        assert "Cancelled" in (await reply(bot, ann)).text
        assert await flow_row(bot, ann.id) is None
        key = canary()
        mid = await bot.tg.send(ann, key)  # outside a flow now: deleted, offered
        offer = await reply(bot, ann)
        assert "Add it to your keys?" in offer.text
        assert deletions_of(bot, ann.id, mid) == 1
        await press(bot, ann, offer, "Don't save")
        assert "Nothing was stored" in (await reply(bot, ann)).text
        assert await stored_keys(bot, ann.id) == []
        await bot.tg.send(ann, "/cancel")
        assert "nothing to cancel" in (await reply(bot, ann)).text
        await assert_nowhere(bot, key)


async def test_expired_flow_is_treated_as_no_flow(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "DeepSeek")
        await reply(bot, ann)
        async with bot.services.db.session() as s:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await s.execute(update(FlowRow).values(expires_at=past))
        await bot.tg.send(ann, "work")  # would have been the label
        assert "/help" in (await reply(bot, ann)).text
        assert await flow_row(bot, ann.id) is None


async def test_flow_survives_a_restart(make_settings) -> None:
    tg = await FakeTelegram().start()
    providers = await FakeProviderServer().start()
    try:
        ann = tg.user(1001, "Ann")
        async with running_bot(make_settings, tg=tg, providers=providers) as bot:
            script_relay(bot)
            await tg.send(ann, "/add")
            menu = await reply(bot, ann)
            await choose(bot, ann, menu, "Self-hosted", "OpenAI-compatible relay")
            await reply(bot, ann)
            await tg.send(ann, providers.url)
            assert "name" in (await reply(bot, ann)).text
        async with running_bot(make_settings, tg=tg, providers=providers) as bot:
            await tg.send(ann, "home")
            assert "key" in (await reply(bot, ann)).text
            key = canary()
            await tg.send(ann, key)
            done = await reply(bot, ann)
            assert "Saved home" in done.text and "4.20" in done.text
            await assert_nowhere(bot, key)
    finally:
        await tg.stop()
        await providers.stop()


# -- groups ---------------------------------------------------------------------------------


async def test_groups_never_accept_keys(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add", chat_type="supergroup")
        group = -1001000000001
        answer = await reply(bot, group)
        assert "private" in answer.text
        assert answer.buttons()[0].url.startswith("https://t.me/fake_balance_bot")
        key = canary()
        mid = await bot.tg.send(ann, f"/add {key}", chat_type="supergroup")
        assert "Never post API keys" in (await reply(bot, group)).text
        assert deletions_of(bot, group, mid) == 1  # attempted (the fake bot is no admin)
        key2 = canary("sk-ant-")
        mid2 = await bot.tg.send(ann, f"here is mine {key2}", chat_type="supergroup")
        assert "Never post API keys" in (await reply(bot, group)).text
        assert deletions_of(bot, group, mid2) == 1
        await bot.tg.send(ann, "just chatting", chat_type="supergroup")
        await bot.tg.assert_no_reply(group)
        assert await stored_keys(bot, ann.id) == []
        assert await flow_row(bot, ann.id) is None
        await assert_nowhere(bot, key)
        await assert_nowhere(bot, key2)


# -- labels ---------------------------------------------------------------------------------


async def test_labels_render_literally(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        for label, shown in (
            ("<b>x</b> & <i>y</i>", "<b>x</b>-&-<i>y</i>"),
            ("🔑✨ keys", "🔑✨-keys"),
            ("مفتاح العمل", "مفتاح-العمل"),
        ):
            await bot.tg.send(ann, f"/add {canary()} {label} provider=deepseek")
            done = await reply(bot, ann)
            assert f"Saved {shown}" in done.text, done.text
        # The full T10 label is longer than 32 characters: refused politely, nothing stored.
        await bot.tg.send(
            ann, f'/add {canary()} <b>x</b> & <a href="tg://user?id=1">y</a> provider=deepseek'
        )
        assert "too long" in (await reply(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 3
        assert bot.tg.errors == []
        await bot.tg.send(ann, "/remove nothing-here")
        listing = await reply(bot, ann)
        assert "<b>x</b>-&-<i>y</i>" in listing.text and "🔑✨-keys" in listing.text
        assert bot.tg.errors == []


async def test_one_line_options_without_key_start_the_guided_dialogue(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add provider=deepseek")
        await press(bot, ann, await reply(bot, ann), "Skip")
        await reply(bot, ann)
        key = canary()
        await bot.tg.send(ann, key)
        assert "Saved deepseek" in (await reply(bot, ann)).text
        await assert_nowhere(bot, key)


async def test_key_pasted_instead_of_a_label_is_taken_as_the_key(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await press(bot, ann, await reply(bot, ann), "DeepSeek")
        await reply(bot, ann)
        key = canary()
        mid = await bot.tg.send(ann, key)
        assert "Saved deepseek" in (await reply(bot, ann)).text
        assert deletions_of(bot, ann.id, mid) == 1
        [row] = await stored_keys(bot, ann.id)
        assert row.label == "deepseek"
        await assert_nowhere(bot, key)


async def test_sealed_flow_and_forget_on_both_backends(make_settings, database_url: str) -> None:
    """The flows table, sealing and /forget's cleanup on SQLite and PostgreSQL."""
    async with running_bot(make_settings, database_url=database_url) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} home")
        pick = await reply(bot, ann)
        row = await flow_row(bot, ann.id)
        assert row is not None and row.sealed is not None
        assert key.encode() not in bytes(row.sealed)
        await press(bot, ann, pick, "DeepSeek")
        assert "Saved home" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/forget")
        ask = await reply(bot, ann)
        await bot.tg.press(ann, ask.message_id, button_data(ask, "Delete everything"))
        done = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert "Deleted 1 key and " in done.text
        assert await stored_keys(bot, ann.id) == []
