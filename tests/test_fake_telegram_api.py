"""Self-tests of the fake Bot API, driven by the real PTB 22.8 ``Bot``/``Application``.

If these pass, a test of our bot that fails against the fake fails for a reason Telegram
would also have (or a fake bug that these tests should grow to cover).
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from tests.fakes.telegram_api import FakeTelegram, FakeUser, button_data, parse_html

TOKEN = "123456789:AAE-fake_token-for-tests_0123456789ab"


@pytest.fixture(autouse=True)
def _timedelta_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter etc. without deprecation warnings


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram(token=TOKEN).start()
    yield server
    await server.stop()


@asynccontextmanager
async def bot_for(fake: FakeTelegram, token: str = TOKEN) -> AsyncIterator[Bot]:
    async with Bot(token, base_url=f"{fake.api_root}/bot") as bot:
        yield bot


@asynccontextmanager
async def polling_app(
    fake: FakeTelegram, *handlers: Any, rate_limiter: AIORateLimiter | None = None
) -> AsyncIterator[Application]:
    """The real Application in polling mode, exactly as the bot will build it."""
    builder = ApplicationBuilder().token(fake.token).base_url(f"{fake.api_root}/bot")
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    app = builder.build()
    errors: list[object] = []

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)

    app.add_error_handler(on_error)
    for handler in handlers:
        app.add_handler(handler)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, poll_interval=0)
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()
    assert not errors, errors


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d)] for t, d in pairs])


# -- end to end with the Application ---------------------------------------------------------


async def test_start_command_end_to_end(fake: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None and update.message is not None
        name = update.effective_user.first_name
        await update.message.reply_html(
            f"Hi <b>{name}</b> &amp; welcome", reply_markup=keyboard(("Balance", "bal:show"))
        )

    ann = fake.user(id=1001, first_name="Ann")
    async with polling_app(fake, CommandHandler("start", start)):
        sent_id = await fake.send(ann, "/start")
        reply = await fake.wait_for_reply(ann)
    assert reply.text == "Hi Ann & welcome"
    assert reply.raw_text == "Hi <b>Ann</b> &amp; welcome" and reply.parse_mode == "HTML"
    assert reply.entities == [{"type": "bold", "offset": 3, "length": 3}]
    assert button_data(reply, "Bal") == "bal:show" and reply.message_id == sent_id + 1
    methods = [c.method for c in fake.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"] and "sendMessage" in methods


async def test_callback_query_flow(fake: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("Menu", reply_markup=keyboard(("Refresh", "bal:refresh")))

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer("Updated", show_alert=True)
        await query.edit_message_text(f"Balance for {query.data}: $5")  # drops the keyboard

    ann = fake.user(first_name="Ann")
    handlers = (CommandHandler("start", start), CallbackQueryHandler(on_button, pattern="^bal:"))
    async with polling_app(fake, *handlers):
        await fake.send(ann, "/start")
        menu = await fake.wait_for_reply(ann)
        qid = await fake.press(ann, menu.message_id, button_data(menu, "Refresh"))
        edited = await fake.wait_for_reply(ann)
        answer = await fake.wait_for_answer(qid)
    assert edited.edited and edited.message_id == menu.message_id
    assert edited.text == "Balance for bal:refresh: $5" and edited.reply_markup == []
    assert (answer.text, answer.show_alert) == ("Updated", True)
    (state,) = fake.messages(ann.id)
    assert state.text == edited.text and not state.deleted
    async with bot_for(fake) as bot:
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query(qid)


async def test_wait_for_reply_times_out_with_context(fake: FakeTelegram) -> None:
    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        with pytest.raises(BadRequest):
            await bot.send_message(ann.id, "<b>oops", parse_mode="HTML")
    with pytest.raises(AssertionError, match="can't parse entities"):
        await fake.wait_for_reply(ann, timeout=0.05)
    await fake.assert_no_reply(ann, within=0.05)


# -- realism checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "detail"),
    [
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("a<br/>b", 'Unsupported start tag "br"'),
        ("1 < 2", "Unclosed start tag at byte offset 2"),
        ("2 > 1", 'Unescaped ">"'),
        ("fish & chips", 'Unescaped "&"'),
        ("&nbsp;", 'Unescaped "&"'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
        ("<a>link</a>", 'Tag "a" must have attribute "href"'),
    ],
)
async def test_invalid_html_is_a_bad_request(fake: FakeTelegram, html: str, detail: str) -> None:
    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        with pytest.raises(BadRequest, match="Can't parse entities") as info:
            await bot.send_message(ann.id, html, parse_mode="HTML")
    assert detail.lower() in str(info.value).lower()  # PTB lower-cases the description


def test_valid_html_subset() -> None:
    html = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><del>d</del>"
        '<span class="tg-spoiler">p</span><tg-spoiler>q</tg-spoiler><a href="https://x.y/?a=1&amp;b=2">'
        'l</a><code>c</code><pre><code class="language-python">py</code></pre>'
        '<blockquote expandable>q</blockquote><tg-emoji emoji-id="5368">👍</tg-emoji>'
        "&lt;&gt;&amp;&quot;&#65;&#x42;"
    )
    text, entities = parse_html(html)
    assert text == 'bsieunsdpqlcpyq👍<>&"AB'
    types = [e["type"] for e in entities]
    assert types[:5] == ["bold", "bold", "italic", "italic", "underline"]
    assert {"type": "pre", "offset": 12, "length": 2, "language": "python"} in entities
    assert {
        "type": "text_link",
        "offset": 10,
        "length": 1,
        "url": "https://x.y/?a=1&b=2",
    } in entities
    assert "expandable_blockquote" in types and "custom_emoji" in types and "code" in types
    assert parse_html("😀<b>x</b>")[1] == [{"type": "bold", "offset": 2, "length": 1}]  # UTF-16


async def test_text_length_and_empty_text(fake: FakeTelegram) -> None:
    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        await bot.send_message(ann.id, "a" * 4096)
        await bot.send_message(ann.id, f"<b>{'a' * 4095}</b>&amp;", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"^Message is too long$"):
            await bot.send_message(ann.id, "a" * 4097)
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(ann.id, f"<i>{'a' * 4097}</i>", parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(ann.id, "<b> </b>", parse_mode="HTML")


async def test_callback_data_limits(fake: FakeTelegram) -> None:
    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        await bot.send_message(ann.id, "ok", reply_markup=keyboard(("x", "é" * 32)))  # 64 bytes
        for data in ("é" * 33, ""):
            markup = {"inline_keyboard": [[{"text": "x", "callback_data": data}]]}
            with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
                await bot.send_message(ann.id, "too long", reply_markup=markup)  # type: ignore[arg-type]


async def test_edit_and_delete_errors(fake: FakeTelegram) -> None:
    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        msg = await bot.send_message(ann.id, "one", reply_markup=keyboard(("A", "a")))
        with pytest.raises(BadRequest, match="Message is not modified: specified new message"):
            await bot.edit_message_text(
                "one", ann.id, msg.message_id, reply_markup=keyboard(("A", "a"))
            )
        await bot.edit_message_text("one", ann.id, msg.message_id)  # keyboard removed = modified
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(ann.id, msg.message_id)
        await bot.edit_message_reply_markup(
            ann.id, msg.message_id, reply_markup=keyboard(("B", "b"))
        )
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", ann.id, 999)
        assert await bot.delete_message(ann.id, msg.message_id)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(ann.id, msg.message_id)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("gone", ann.id, msg.message_id)
        secret_id = await fake.send(ann, "sk-secret")  # bots may delete users' private messages
        assert await bot.delete_message(ann.id, secret_id)
    assert fake.deleted == [(ann.id, msg.message_id), (ann.id, secret_id)]
    (state,) = fake.messages(ann.id)
    assert state.deleted and button_data(state, "B") == "b"


async def test_chat_not_found_blocked_and_faults(fake: FakeTelegram) -> None:
    ann, bob = fake.user(started=True), fake.user(first_name="Bob")
    async with bot_for(fake) as bot:
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(bob.id, "hello stranger")
        fake.block(ann.id)
        with pytest.raises(Forbidden, match=r"^Forbidden: bot was blocked by the user$"):
            await bot.send_message(ann.id, "hi")
        fake.unblock(ann.id)
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(ann.id, "hi")
        assert info.value.retry_after == dtm.timedelta(seconds=7)
        fake.fail_next("SENDMESSAGE", 502, "Bad Gateway", count=2)
        for _ in range(2):
            with pytest.raises(NetworkError, match="Bad Gateway"):
                await bot.send_message(ann.id, "hi")
        fake.drop_connection_next("sendMessage")
        with pytest.raises(NetworkError) as dropped:
            await bot.send_message(ann.id, "hi")
        assert not isinstance(dropped.value, BadRequest)
        assert (await bot.send_message(ann.id, "finally")).text == "finally"
    assert [m.text for m in fake.messages(ann.id)] == ["finally"]


async def test_wrong_token_is_invalid_token(fake: FakeTelegram) -> None:
    app = ApplicationBuilder().token("42:wrong").base_url(f"{fake.api_root}/bot").build()
    with pytest.raises(InvalidToken):
        await app.initialize()
    assert fake.calls == []


async def test_raw_http_contract(fake: FakeTelegram) -> None:
    """Case-insensitive names, GET, JSON bodies, 404 for unknown methods, 401 for bad tokens."""
    ann = fake.user(started=True)
    async with httpx.AsyncClient(base_url=fake.api_root) as client:
        me = (await client.get(f"/bot{TOKEN}/GETME")).json()
        assert me["ok"] and me["result"]["username"] == "fake_balance_bot"
        sent = await client.post(f"/bot{TOKEN}/sendmessage", json={"chat_id": ann.id, "text": "j"})
        assert sent.json()["result"]["chat"]["id"] == ann.id
        missing = await client.post(f"/bot{TOKEN}/sendTelepathy")
        assert (missing.status_code, missing.json()) == (
            404,
            {"ok": False, "error_code": 404, "description": "Not Found"},
        )
        bad = await client.post("/bot1:nope/getMe")
        assert bad.status_code == 401 and bad.json()["description"] == "Unauthorized"


async def test_get_updates_offset_and_long_poll(fake: FakeTelegram) -> None:
    ann = fake.user()
    async with bot_for(fake) as bot:
        for text in ("one", "two", "three"):
            await fake.send(ann, text)
        first = await bot.get_updates(timeout=0)
        assert [u.message.text for u in first if u.message] == ["one", "two", "three"]
        assert [u.update_id for u in await bot.get_updates(offset=first[1].update_id)] == [
            first[1].update_id,
            first[2].update_id,
        ]
        assert len(await bot.get_updates()) == 2  # "one" was confirmed and is gone
        assert [u.update_id for u in await bot.get_updates(offset=-1)] == [first[2].update_id]
        assert await bot.get_updates(offset=first[2].update_id + 1, limit=5) == ()
        started = time.monotonic()
        assert await bot.get_updates(timeout=1) == ()
        assert 0.9 < time.monotonic() - started < 2
        waiting = asyncio.create_task(bot.get_updates(timeout=5))
        await fake.wait_for_call("getUpdates", predicate=lambda c: c.params.get("timeout") == "5")
        started = time.monotonic()
        await fake.send(ann, "/wake")
        (update,) = await waiting
        assert time.monotonic() - started < 1 and update.message is not None
        assert update.message.text == "/wake" and update.message.entities[0].type == "bot_command"


async def test_second_poller_gets_conflict(fake: FakeTelegram) -> None:
    async with bot_for(fake) as first, bot_for(fake) as second:  # two "bot instances"
        older = asyncio.create_task(first.get_updates(timeout=3))
        await fake.wait_for_call("getUpdates")
        assert await second.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await older


async def test_user_side_message_kinds_parse_in_ptb(fake: FakeTelegram) -> None:
    ann, bob = fake.user(first_name="Ann"), fake.user(first_name="Bob", username="bob")
    first = await fake.send(ann, "hello")
    await fake.send(ann, "hello again", edited=True)
    await fake.send(ann, media="sticker")
    await fake.send(ann, "look", media="photo")
    await fake.send(ann, media="document")
    await fake.send(ann, "fwd", forward_from=bob)
    await fake.send(bob, "/balance@fake_balance_bot", chat_type="group", chat_id=-5)
    async with bot_for(fake) as bot:
        updates = await bot.get_updates()
        edit = updates[1].edited_message
        assert edit is not None and edit.message_id == first and edit.text == "hello again"
        assert updates[2].message and updates[2].message.sticker
        assert updates[3].message and updates[3].message.photo and updates[3].message.caption
        assert updates[4].message and updates[4].message.document
        fwd = updates[5].message
        assert fwd and fwd.forward_origin and fwd.forward_origin.sender_user.id == bob.id  # type: ignore[attr-defined]
        group = updates[6].message
        assert group and group.chat.type == "group" and group.chat.id == -5
        assert (await bot.get_chat(ann.id)).first_name == "Ann"
        assert await bot.send_chat_action(-5, "typing")


async def test_commands_and_media(fake: FakeTelegram) -> None:
    from telegram import BotCommand, BotCommandScopeAllPrivateChats

    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        cmds = [BotCommand("start", "Start"), BotCommand("balance", "Show balance")]
        await bot.set_my_commands(cmds, scope=BotCommandScopeAllPrivateChats(), language_code="en")
        got = await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="en")
        assert [c.command for c in got] == ["start", "balance"]
        assert await bot.get_my_commands() == ()
        with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
            await bot.set_my_commands([BotCommand("Bad-Name", "x")])
        image = png(30, 20)
        photo = await bot.send_photo(ann.id, image, caption="<b>chart</b>", parse_mode="HTML")
        doc = await bot.send_document(ann.id, b"a,b\n", filename="report.csv")
    assert fake.my_commands("all_private_chats", "en")[1]["command"] == "balance"
    assert photo.photo and photo.caption == "chart" and doc.document.file_name == "report.csv"
    assert (photo.photo[-1].width, photo.photo[-1].height) == (30, 20)
    kinds = [(m.kind, m.file.size if m.file else None) for m in fake.messages(ann.id)]  # type: ignore[union-attr]
    assert kinds == [("photo", len(image)), ("document", 4)]
    sent = fake.messages(ann.id)
    assert sent[0].file.data == image and sent[1].file.data == b"a,b\n"  # type: ignore[union-attr]


def png(width: int, height: int) -> bytes:
    """A real (blank, greyscale) PNG of this size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def test_uploads_and_buttons_are_checked_like_telegram(fake: FakeTelegram) -> None:
    from telegram import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

    ann = fake.user(started=True)
    async with bot_for(fake) as bot:
        with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
            await bot.send_photo(ann.id, b"\x89PNG not really")
        with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
            await bot.send_photo(ann.id, png(2100, 100))  # sides 21:1
        with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
            await bot.send_photo(ann.id, png(10, 10), caption="x" * 1025)
        copy = InlineKeyboardButton("Copy", copy_text=CopyTextButton("balance-bot check"))
        red = InlineKeyboardButton("Delete", callback_data="d", style="danger")
        sent = await bot.send_message(
            ann.id, "hi", reply_markup=InlineKeyboardMarkup([[copy, red]])
        )
        assert sent.reply_markup is not None
        for bad in (
            InlineKeyboardButton("x", callback_data="d", style="rainbow"),
            InlineKeyboardButton("x", copy_text=CopyTextButton("y" * 257)),
            InlineKeyboardButton("x", style="success"),  # a style is not an action
        ):
            with pytest.raises(BadRequest, match=r"(?i)inline keyboard button"):
                await bot.send_message(ann.id, "hi", reply_markup=InlineKeyboardMarkup([[bad]]))
    [message] = [m for m in fake.messages(ann.id) if m.kind == "text"]
    copy_button, red_button = message.buttons()
    assert copy_button.copy_text == "balance-bot check" and copy_button.callback_data is None
    assert red_button.style == "danger"


# -- webhook mode ------------------------------------------------------------------------------


async def test_webhook_push_with_secret_and_retries(fake: FakeTelegram) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []
    statuses = [500, 200]
    got_one = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            got_one.set()
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ann = fake.user()
    try:
        async with bot_for(fake) as bot:
            url = f"http://127.0.0.1:{port}/hook"
            assert await bot.set_webhook(url, secret_token="s3cr3t-Token_1")
            assert (await bot.get_webhook_info()).url == url
            with pytest.raises(Conflict, match="webhook is active"):
                await bot.get_updates()
            await fake.send(ann, "/start")
            await asyncio.wait_for(got_one.wait(), 5)
            (update, secret), retry = received
            assert update == retry[0] and secret == "s3cr3t-Token_1"
            assert Update.de_json(update, bot).message.text == "/start"  # type: ignore[union-attr]
            assert fake.webhook_deliveries[0].attempts == 2
            await fake.wait_until(lambda: (bot and not fake._updates) or None, 2, lambda: "ack")
            assert (await bot.get_webhook_info()).last_error_message is not None
            assert await bot.delete_webhook()
            await fake.send(ann, "polling again")
            assert len(await bot.get_updates()) == 1
    finally:
        await runner.cleanup()


# -- flood limits ---------------------------------------------------------------------------


async def test_enforced_limits_and_aio_rate_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = await FakeTelegram(token=TOKEN, enforce_limits=True, per_chat_burst=3).start()
    ann = fake.user(started=True)
    try:
        async with bot_for(fake) as bot:  # no limiter: the 4th quick message is refused
            for i in range(3):
                await bot.send_message(ann.id, f"burst {i}")
            with pytest.raises(RetryAfter) as info:
                await bot.send_message(ann.id, "one too many")
            assert info.value.retry_after == dtm.timedelta(seconds=1) and fake.count_429 == 1
        fake.send_log.clear()
        bob = fake.user(started=True)  # a fresh chat: a full burst, then 1 msg/s
        limiter = AIORateLimiter(max_retries=3)
        async with polling_app(fake, rate_limiter=limiter) as app:  # the limiter retries 429s
            for i in range(5):
                await app.bot.send_message(bob.id, f"paced {i}")
        times = [t for t, _ in fake.send_log]
        assert len(times) == 5 and fake.count_429 >= 2
        # After the burst of 3, sends are spaced ~1 s apart: never more than 3 in any 1 s window.
        assert all(times[i] - times[i - 3] >= 0.95 for i in range(3, len(times)))
        assert sum(fake.sends_per_second.values()) == 5
    finally:
        await fake.stop()


async def test_wait_helpers_take_chat_ids(fake: FakeTelegram) -> None:
    ann: FakeUser = fake.user(started=True)
    async with bot_for(fake) as bot:
        await bot.send_message(ann.id, "first")
        await bot.send_message(ann.id, "second")
    assert (
        await fake.wait_for_reply(ann.id, predicate=lambda m: m.text == "second")
    ).text == "second"
    await fake.assert_no_reply(ann, within=0.05)  # "first" was skipped by the predicate
    assert "second" in fake.transcript()


async def test_misc_refusals_and_fast_stop(fake: FakeTelegram) -> None:
    ann, bob = fake.user(started=True), fake.user(first_name="Bob")
    in_group = await fake.send(bob, "hi all", chat_type="supergroup")
    async with bot_for(fake) as bot:
        reply = await bot.send_message(ann.id, "r")
        quoted = await fake.send(ann, "quoting", reply_to=reply.message_id)
        with pytest.raises(BadRequest, match="can't be deleted"):
            await bot.delete_message(-1001000000001, in_group)  # not an admin
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.get_chat(bob.id)
        with pytest.raises(BadRequest, match="unallowed characters"):
            await bot.set_webhook("http://127.0.0.1:1/x", secret_token="bad secret!")
        with pytest.raises(BadRequest, match="can't be edited"):
            await bot.edit_message_text("x", ann.id, quoted)
        async with httpx.AsyncClient(base_url=fake.api_root) as client:
            body = {"chat_id": str(ann.id), "text": "x", "reply_markup": "{not json"}
            bad = await client.post(f"/bot{TOKEN}/sendMessage", data=body)
            assert bad.status_code == 400 and "reply_markup" in bad.json()["description"]
        updates = await bot.get_updates()
        assert updates[-1].message and updates[-1].message.reply_to_message
        poll = asyncio.create_task(bot.get_updates(offset=updates[-1].update_id + 1, timeout=30))
        await fake.wait_for_call("getUpdates", predicate=lambda c: c.params.get("timeout") == "30")
        started = time.monotonic()
        await fake.stop()  # releases the long poll instead of waiting 30 s
        assert await poll == () and time.monotonic() - started < 2
