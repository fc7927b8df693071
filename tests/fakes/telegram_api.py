"""A stateful fake Telegram Bot API on 127.0.0.1, for end-to-end tests of the real PTB bot.

Why: mocks of single requests can't catch what really breaks bots (bad HTML escaping,
64-byte callback_data, "message is not modified", 429s, 403 from blocked users). This
server plays *both* Telegram and the human, so the unchanged PTB ``Application`` runs
against it over real HTTP (``ApplicationBuilder().base_url(f"{fake.api_root}/bot")``).

    fake = await FakeTelegram(token=TOKEN).start()
    ann = fake.user(id=1001, first_name="Ann")
    await fake.send(ann, "/start")                  # an update for getUpdates / the webhook
    reply = await fake.wait_for_reply(ann)          # the bot's next sent/edited message
    await fake.press(ann, reply.message_id, button_data(reply, "Balance"))
    ...
    await fake.stop()

Contract followed: see docs/telegram.md §9 (transport, error envelope, getUpdates).
Error descriptions are Telegram's where known; the strict HTML checks on bare ``>``/``&``
are stricter than Telegram on purpose (they catch missing ``html.escape``).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web

T = TypeVar("T")
Params = dict[str, Any]

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
MAX_TEXT, MAX_CAPTION, MAX_CALLBACK_DATA = 4096, 1024, 64
MAX_COPY_TEXT = 256
# Uploads (Bot API "sendPhoto"/"sendDocument"): a photo at most 10 MB, its width plus height
# at most 10000 and its sides' ratio at most 20; any other file at most 50 MB.
MAX_PHOTO_BYTES, MAX_PHOTO_SIDES, MAX_PHOTO_RATIO = 10 * 1024 * 1024, 10_000, 20
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
BUTTON_STYLES = frozenset({"primary", "success", "danger"})
# The optional fields of an inline button of which exactly one must be used.
BUTTON_ACTIONS = frozenset(
    {"url", "callback_data", "web_app", "login_url", "switch_inline_query",
     "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
     "callback_game", "pay"}
)  # fmt: skip
# Form values that Telegram expects as JSON-serialized objects.
JSON_FIELDS = frozenset(
    {"reply_markup", "allowed_updates", "commands", "scope", "entities", "caption_entities",
     "reply_parameters", "link_preview_options"}
)  # fmt: skip


class ApiError(Exception):
    """A Bot API error reply: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


# -- records the tests look at -------------------------------------------------------------


@dataclass(frozen=True)
class FakeUser:
    """A human on the other side; ``id`` doubles as their private chat id."""

    id: int
    first_name: str = "Test"
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        extra = {"last_name": self.last_name, "username": self.username}
        data.update({k: v for k, v in extra.items() if v is not None})
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None = None
    url: str | None = None
    copy_text: str | None = None  # the text a copy-text button puts on the clipboard
    style: str | None = None  # "primary" | "success" | "danger"


@dataclass
class BotMessage:
    """A message the bot sent, as the user sees it. ``text`` is the caption for media."""

    chat_id: int
    message_id: int
    text: str | None
    raw_text: str | None  # exactly what the bot sent (before HTML parsing)
    parse_mode: str | None
    entities: list[dict[str, Any]]
    reply_markup: list[list[Button]]
    raw_markup: dict[str, Any] | None
    kind: Literal["text", "photo", "document"] = "text"
    date: int = field(default_factory=lambda: int(time.time()))
    edited: bool = False
    deleted: bool = False
    file: UploadedFile | str | None = None

    def buttons(self) -> list[Button]:
        return [b for row in self.reply_markup for b in row]


@dataclass(frozen=True)
class UploadedFile:
    name: str
    size: int
    content_type: str
    data: bytes = field(default=b"", repr=False, compare=False)  # what the bot uploaded
    width: int | None = None  # photos: decoded from the image header
    height: int | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    text: str | None
    show_alert: bool
    url: str | None


@dataclass(frozen=True)
class Call:
    """One authorised API request, for assertions such as ``setMyCommands called with ...``."""

    method: str
    params: Params


@dataclass
class WebhookDelivery:
    update_id: int
    attempts: int
    status: int | None  # last HTTP status, None if the connection failed


def button_data(msg: BotMessage, text_substring: str) -> str:
    """callback_data of the first button whose text contains ``text_substring``."""
    for button in msg.buttons():
        if text_substring in button.text and button.callback_data is not None:
            return button.callback_data
    raise AssertionError(f"no callback button containing {text_substring!r} in {msg.buttons()}")


# -- HTML parse_mode: a strict validator of Telegram's subset --------------------------------

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "span": "spoiler", "tg-spoiler": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_HTML_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTR = re.compile(r"\s*([A-Za-z_-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _html_unescape(text: str, base: int, whole: str) -> str:
    """Decode the four named entities and numeric ones; any other ``&``/``<``/``>`` is an error."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "&":
            m = _HTML_ENTITY.match(text, i)
            code = (int(m[2]) if m[2] else int(m[3], 16)) if m and not m[1] else None
            if not m or (code is not None and not (0 < code <= 0x10FFFF)):
                raise _parse_error(f'Unescaped "&" at byte offset {_byte_offset(whole, base + i)}')
            out.append(_NAMED[m[1]] if m[1] else chr(code))  # type: ignore[arg-type]
            i = m.end()
            continue
        if ch in "<>":
            raise _parse_error(f'Unescaped "{ch}" at byte offset {_byte_offset(whole, base + i)}')
        out.append(ch)
        i += 1
    return "".join(out)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _parse_error(detail: str) -> ApiError:
    return bad_request(f"can't parse entities: {detail}")


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities with UTF-16 offsets) or raise 400 like Telegram does."""
    plain: list[str] = []
    pos16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(text):
        lt = text.find("<", i)
        chunk = _html_unescape(text[i : len(text) if lt < 0 else lt], i, text)
        plain.append(chunk)
        pos16 += _utf16_len(chunk)
        if lt < 0:
            break
        gt = text.find(">", lt)
        if gt < 0:
            raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(text, lt)}")
        inner, where = text[lt + 1 : gt], _byte_offset(text, lt)
        i = gt + 1
        if inner.startswith("/"):
            name = inner[1:].strip().lower()
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {where}")
            if stack[-1]["tag"] != name:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {where}, expected "</{stack[-1]["tag"]}>", '
                    f'found "</{name}>"'
                )
            _close_tag(stack.pop(), pos16, stack, entities)
            continue
        m = re.match(r"([A-Za-z][A-Za-z0-9-]*)", inner)
        name = m[1].lower() if m else inner
        if not m or name not in _HTML_TAGS:
            raise _parse_error(f'Unsupported start tag "{name}" at byte offset {where}')
        attrs = _parse_attrs(inner[m.end() :], name, where, text, lt)
        stack.append({"tag": name, "attrs": attrs, "offset": pos16})
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]["tag"]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(plain), entities


def _parse_attrs(rest: str, tag: str, where: int, whole: str, lt: int) -> dict[str, str]:
    attrs: dict[str, str] = {}
    pos = 0
    while rest[pos:].strip() and rest[pos:].strip() != "/":
        m = _ATTR.match(rest, pos)
        if not m or m.end() == pos:
            raise _parse_error(f'Invalid attribute in the tag "{tag}" at byte offset {where}')
        value = next((v for v in m.groups()[1:] if v is not None), "")
        attrs[m[1].lower()] = _html_unescape(value, lt, whole)
        pos = m.end()
    required = {"a": "href", "tg-emoji": "emoji-id"}.get(tag)
    if required and not attrs.get(required):
        raise _parse_error(f'Tag "{tag}" must have attribute "{required}" at byte offset {where}')
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {where}')
    return attrs


def _close_tag(
    frame: dict[str, Any], pos16: int, stack: list[dict[str, Any]], out: list[dict[str, Any]]
) -> None:
    tag, attrs, length = frame["tag"], frame["attrs"], pos16 - frame["offset"]
    language = attrs.get("class", "").removeprefix("language-")
    if tag == "code" and stack and stack[-1]["tag"] == "pre" and language:
        stack[-1]["attrs"]["language"] = language  # <pre><code class="language-x"> is one entity
        return
    if length <= 0:
        return
    entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": frame["offset"], "length": length}
    if tag == "a":
        entity["url"] = attrs["href"]
    elif tag == "pre" and attrs.get("language"):
        entity["language"] = attrs["language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs["emoji-id"]
    out.append(entity)


def _parse_markup(raw: Any) -> tuple[dict[str, Any] | None, list[list[Button]]]:
    """Validate a reply_markup like Telegram; return (normalised raw, parsed rows)."""
    if raw in (None, ""):
        return None, []
    if not isinstance(raw, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = raw.get("inline_keyboard", raw.get("keyboard"))
    if rows is None:  # ReplyKeyboardRemove / ForceReply
        return raw, []
    parsed: list[list[Button]] = []
    for row in rows:
        parsed_row = []
        for b in row:
            b = {"text": b} if isinstance(b, str) else b
            copy_text = None
            if "inline_keyboard" in raw:
                data = b.get("callback_data")
                if data is not None and not (0 < len(str(data).encode()) <= MAX_CALLBACK_DATA):
                    raise bad_request("BUTTON_DATA_INVALID")
                if not b.get("text"):
                    raise bad_request("can't parse inline keyboard button: Text must be non-empty")
                if not BUTTON_ACTIONS & b.keys():
                    raise bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if len(BUTTON_ACTIONS & b.keys()) > 1:
                    raise bad_request("can't parse inline keyboard button: too many button types")
                if "style" in b and b["style"] not in BUTTON_STYLES:
                    raise bad_request("can't parse inline keyboard button: invalid button style")
                if "copy_text" in b:
                    copied = b["copy_text"]
                    text = copied.get("text") if isinstance(copied, dict) else None
                    if not isinstance(text, str) or not 1 <= len(text) <= MAX_COPY_TEXT:
                        raise bad_request("can't parse inline keyboard button: bad copy text")
                    copy_text = text
            parsed_row.append(
                Button(
                    str(b["text"]), b.get("callback_data"), b.get("url"), copy_text, b.get("style")
                )
            )
        parsed.append(parsed_row)
    if "inline_keyboard" in raw and not any(parsed):
        return None, []  # an empty inline keyboard is the same as none
    return raw, parsed


@dataclass
class _Bucket:
    """Token bucket: ``capacity`` burst, refilled at ``rate`` per second."""

    rate: float
    capacity: float
    tokens: float = -1.0
    stamp: float = 0.0

    def refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


# -- the server -------------------------------------------------------------------------------


class FakeTelegram:
    """Fake Bot API server + scripted users. All waits are event-driven (one Condition)."""

    webhook_attempts = 4  # Telegram retries failed webhook POSTs "a reasonable" number of times
    webhook_retry_delay = 0.05  # seconds, doubled per attempt

    def __init__(
        self,
        token: str = "123456789:TEST-fake-token_abcdefghijklmnopqrstuvw",
        *,
        bot_username: str = "fake_balance_bot",
        enforce_limits: bool = False,
        per_chat_burst: int = 3,
    ) -> None:
        self.token = token
        self.bot_user = {
            "id": int(token.split(":")[0]), "is_bot": True, "first_name": "Balance Bot",
            "username": bot_username, "can_join_groups": True,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
        }  # fmt: skip
        self.enforce_limits, self.per_chat_burst = enforce_limits, per_chat_burst
        self.api_root = ""
        # Observable state for assertions.
        self.calls: list[Call] = []
        self.errors: list[tuple[str, Params, str]] = []  # (method, params, description) returned
        self.deleted: list[tuple[int, int]] = []
        self.callback_answers: dict[str, CallbackAnswer] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.send_log: list[tuple[float, int]] = []  # (monotonic time, chat_id) of good sends
        self.count_429 = 0
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] = {"url": "", "secret_token": None, "allowed_updates": None}
        self.webhook_error: tuple[int, str] | None = None  # (date, message) for getWebhookInfo
        # Internal state.
        self._users: dict[int, FakeUser] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._allowed_updates: list[str] = []
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._next_mid: dict[int, int] = {}
        self._bot_msgs: dict[tuple[int, int], BotMessage] = {}
        self._user_msgs: dict[tuple[int, int], dict[str, Any]] = {}
        self._queries: dict[str, bool] = {}  # query id -> answered
        self._events: dict[int, list[BotMessage]] = {}  # per chat: sent/edited snapshots
        self._cursor: dict[int, int] = {}
        self._faults: dict[str, list[ApiError | None]] = {}  # None = drop the connection
        self._buckets: dict[int, _Bucket] = {}
        self._global_bucket = _Bucket(rate=30, capacity=30)
        self._poll_generation = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._methods: dict[str, Callable[[Params], Awaitable[Any]]] = {
            name.removeprefix("_m_").lower(): getattr(self, name)
            for name in dir(self)
            if name.startswith("_m_")
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp app serving the Bot API (the benchmark adds its control routes)."""
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        return app

    async def start(self) -> FakeTelegram:
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.api_root = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Release long polls at once (so shutdown is fast), stop webhook delivery, close."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            await asyncio.gather(self._webhook_task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail with this error envelope."""
        error = ApiError(status, description, retry_after)
        self._faults.setdefault(method.lower(), []).extend([error] * count)

    def drop_connection_next(self, method: str, count: int = 1) -> None:
        """Close the socket without a reply on the next call(s): PTB raises NetworkError."""
        self._faults.setdefault(method.lower(), []).extend([None] * count)

    def block(self, user_id: int) -> None:
        self.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    @property
    def sends_per_second(self) -> Counter[int]:
        """Successful sends bucketed by whole seconds since the fake was created."""
        return Counter(int(t - self._t0) for t, _ in self.send_log)

    # -- the human side ----------------------------------------------------------------------

    def user(
        self,
        id: int | None = None,
        first_name: str = "Test",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        started: bool = False,
    ) -> FakeUser:
        """Create a user. ``started=True`` = they wrote to the bot before (chat is known)."""
        uid = id if id is not None else max(self._users, default=1000) + 1
        user = FakeUser(uid, first_name, last_name, username, language_code)
        self._users[uid] = user
        if started:
            self._ensure_chat(user, "private", None)
        return user

    async def send(
        self,
        user: FakeUser,
        text: str | None = None,
        *,
        chat_type: Literal["private", "group", "supergroup"] = "private",
        chat_id: int | None = None,
        forward_from: FakeUser | None = None,
        edited: int | bool | None = None,
        media: Literal["sticker", "photo", "document"] | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Inject a user message (or ``edited`` = True/message_id: an edit of an earlier one)."""
        chat = self._ensure_chat(user, chat_type, chat_id)
        cid = chat["id"]
        if edited:
            mine = [
                m
                for (c, m), d in self._user_msgs.items()
                if c == cid and d["from"]["id"] == user.id
            ]
            mid = max(mine, default=0) if edited is True else int(edited)
            assert mid in mine, f"{user.first_name} has no message {mid} in chat {cid} to edit"
            msg = copy.deepcopy(self._user_msgs[(cid, mid)])
            msg.pop("entities", None)
            msg.update(_text_fields(text or "", "caption" in msg), edit_date=int(time.time()))
            self._user_msgs[(cid, mid)] = msg
            await self._push_update("edited_message", msg)
            return mid
        mid = self._new_message_id(cid)
        msg: dict[str, Any] = {"message_id": mid, "date": int(time.time()), "chat": chat}
        msg["from"] = user.to_dict()
        unique = f"{cid}_{mid}"
        if media == "sticker":
            msg["sticker"] = {"file_id": f"stk{unique}", "file_unique_id": f"u{unique}",
                              "width": 512, "height": 512, "is_animated": False,
                              "is_video": False, "type": "regular", "emoji": "🙂"}  # fmt: skip
        elif media == "photo":
            msg["photo"] = [{"file_id": f"ph{unique}", "file_unique_id": f"u{unique}",
                             "width": 640, "height": 480}]  # fmt: skip
        elif media == "document":
            msg["document"] = {"file_id": f"doc{unique}", "file_unique_id": f"u{unique}",
                               "file_name": "file.txt", "mime_type": "text/plain"}  # fmt: skip
        if text is not None or media is None:
            msg.update(_text_fields(text or "", caption=media is not None))
        if forward_from is not None:
            msg["forward_origin"] = {"type": "user", "date": msg["date"],
                                     "sender_user": forward_from.to_dict()}  # fmt: skip
        if reply_to is not None:
            known = (cid, reply_to) in self._user_msgs or (cid, reply_to) in self._bot_msgs
            assert known, f"no message {reply_to} in chat {cid} to reply to"
            msg["reply_to_message"] = self._message_json(cid, reply_to)
        self._user_msgs[(cid, mid)] = msg
        await self._push_update("message", msg)
        return mid

    async def press(
        self,
        user: FakeUser,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        strict: bool = True,
    ) -> str:
        """Press an inline button; ``strict`` asserts such a button is on the message now."""
        cid = user.id if chat_id is None else chat_id
        msg = self._bot_msgs.get((cid, message_id))
        assert msg is not None and not msg.deleted, f"no live bot message {message_id} in {cid}"
        buttons = [b.callback_data for b in msg.buttons()]
        assert not strict or data in buttons, f"{data!r} is not a button of {msg.buttons()}"
        qid = f"{next(self._query_ids)}{user.id}"
        self._queries[qid] = False
        query = {"id": qid, "from": user.to_dict(), "chat_instance": f"ci{cid}", "data": data}
        query["message"] = self._message_json(cid, message_id)
        await self._push_update("callback_query", query)
        return qid

    async def wait_for_reply(
        self,
        user: FakeUser | int,
        timeout: float = 5.0,  # noqa: ASYNC109 - the tests' API, implemented with asyncio.timeout
        predicate: Callable[[BotMessage], bool] | None = None,
    ) -> BotMessage:
        """Next bot message sent/edited in this chat after the previous wait (per-chat cursor)."""
        cid = user if isinstance(user, int) else user.id

        def check() -> BotMessage | None:
            events = self._events.get(cid, [])
            for i in range(self._cursor.get(cid, 0), len(events)):
                if predicate is None or predicate(events[i]):
                    self._cursor[cid] = i + 1
                    return events[i]
            return None

        return await self.wait_until(check, timeout, lambda: self._describe(cid, "a bot reply"))

    async def assert_no_reply(self, user: FakeUser | int, within: float = 0.3) -> None:
        """Fail if the bot sends/edits anything in this chat within ``within`` seconds."""
        cid = user if isinstance(user, int) else user.id
        try:
            msg = await self.wait_for_reply(cid, timeout=within)
        except AssertionError:
            return
        raise AssertionError(f"unexpected bot message in chat {cid}: {msg}")

    async def wait_for_answer(self, query_id: str, timeout: float = 5.0) -> CallbackAnswer:  # noqa: ASYNC109
        return await self.wait_until(
            lambda: self.callback_answers.get(query_id),
            timeout,
            lambda: f"callback query {query_id} was not answered; calls: {self._recent_calls()}",
        )

    async def wait_for_call(
        self,
        method: str,
        timeout: float = 5.0,  # noqa: ASYNC109
        predicate: Callable[[Call], bool] | None = None,
    ) -> Call:
        """First recorded call of ``method`` (matching ``predicate``), waiting if needed."""

        def check() -> Call | None:
            return next(
                (c for c in self.calls if c.method.lower() == method.lower()
                 and (predicate is None or predicate(c))),
                None,
            )  # fmt: skip

        return await self.wait_until(
            check, timeout, lambda: f"no {method} call in {self._recent_calls()}"
        )

    async def wait_until(
        self,
        check: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109
        describe: Callable[[], str],
    ) -> T:
        """Re-run ``check`` on every state change until it returns non-None, or fail."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while (result := check()) is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {describe()}")
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            return result

    def messages(self, chat_id: int) -> list[BotMessage]:
        """Current state of every bot message in the chat (edits applied, deleted ones flagged)."""
        found = [m for (c, _), m in sorted(self._bot_msgs.items()) if c == chat_id]
        return [copy.deepcopy(m) for m in found]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def transcript(self) -> str:
        """Every parameter the bot ever sent, as one string (for "no secret leaked" checks)."""
        return "\n".join(json.dumps(c.params, default=str, ensure_ascii=False) for c in self.calls)

    def my_commands(self, scope: str = "default", language_code: str = "") -> list[dict[str, Any]]:
        return self.commands.get((scope, language_code), [])

    # -- internals: state helpers ------------------------------------------------------------

    def _ensure_chat(self, user: FakeUser, chat_type: str, chat_id: int | None) -> dict[str, Any]:
        self._users[user.id] = user
        if chat_type == "private":
            chat = {"id": user.id, "type": "private", "first_name": user.first_name}
            chat.update({k: v for k, v in (("last_name", user.last_name),
                                           ("username", user.username)) if v})  # fmt: skip
        else:
            default = -100 if chat_type == "group" else -1001000000001
            cid = chat_id if chat_id is not None else default
            assert cid < 0, "group chat ids are negative"
            chat = {"id": cid, "type": chat_type, "title": f"Test {chat_type}"}
        return self._chats.setdefault(chat["id"], chat)

    def _new_message_id(self, chat_id: int) -> int:
        self._next_mid[chat_id] = self._next_mid.get(chat_id, 0) + 1
        return self._next_mid[chat_id]

    async def _push_update(self, kind: str, obj: dict[str, Any]) -> None:
        async with self._changed:
            self._updates.append({"update_id": next(self._update_ids), kind: copy.deepcopy(obj)})
            self._changed.notify_all()
            if self.webhook["url"] and self._webhook_task is None:
                self._webhook_task = asyncio.create_task(self._deliver_webhooks())

    def _message_json(self, chat_id: int, message_id: int) -> dict[str, Any]:
        if (chat_id, message_id) in self._user_msgs:
            return copy.deepcopy(self._user_msgs[(chat_id, message_id)])
        m = self._bot_msgs[(chat_id, message_id)]
        out: dict[str, Any] = {"message_id": m.message_id, "date": m.date, "from": self.bot_user}
        out["chat"] = self._chats[chat_id]
        key = "text" if m.kind == "text" else "caption"
        if m.text is not None:
            out[key] = m.text
        if m.entities:
            out[f"{'' if key == 'text' else 'caption_'}entities"] = m.entities
        if m.raw_markup and "inline_keyboard" in m.raw_markup:
            out["reply_markup"] = m.raw_markup
        if m.edited:
            out["edit_date"] = int(time.time())
        unique = f"{chat_id}_{m.message_id}"
        size = m.file.size if isinstance(m.file, UploadedFile) else None
        if m.kind == "photo":
            width = (m.file.width if isinstance(m.file, UploadedFile) else None) or 800
            height = (m.file.height if isinstance(m.file, UploadedFile) else None) or 600
            out["photo"] = [{"file_id": f"bph{unique}", "file_unique_id": f"b{unique}",
                             "width": width, "height": height, "file_size": size}]  # fmt: skip
        elif m.kind == "document":
            name = m.file.name if isinstance(m.file, UploadedFile) else "document"
            out["document"] = {"file_id": f"bdoc{unique}", "file_unique_id": f"b{unique}",
                               "file_name": name, "file_size": size}  # fmt: skip
        return out

    async def _record(self, msg: BotMessage) -> None:
        async with self._changed:
            self._events.setdefault(msg.chat_id, []).append(copy.deepcopy(msg))
            self._changed.notify_all()

    def _describe(self, chat_id: int, what: str) -> str:
        seen = self._events.get(chat_id, [])[self._cursor.get(chat_id, 0) :]
        lines = [f"{what} in chat {chat_id}", "unconsumed bot messages:"]
        lines += [f"  #{m.message_id} {'edited' if m.edited else 'sent'}: {m.text!r}" for m in seen]
        lines.append("API errors returned to the bot for this chat:")
        lines += [f"  {method}: {desc}" for method, p, desc in self.errors
                  if str(p.get("chat_id")) == str(chat_id)]  # fmt: skip
        lines.append("recent calls:")
        lines += [f"  {method} {params}" for method, params in self._recent_calls()]
        return "\n".join(lines)

    def _recent_calls(self, n: int = 15) -> list[tuple[str, Params]]:
        return [(c.method, c.params) for c in self.calls if c.method != "getUpdates"][-n:]

    # -- internals: HTTP ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").envelope(), status=401)
        try:
            params = await _read_params(request)
        except ApiError as error:
            return web.json_response(error.envelope(), status=error.status)
        name = request.match_info["method"].lower()
        handler = self._methods.get(name)
        self.calls.append(Call(handler.__name__[3:] if handler else name, params))
        if handler is None:
            return web.json_response(ApiError(404, "Not Found").envelope(), status=404)
        faults = self._faults.get(name)
        try:
            if faults:
                fault = faults.pop(0)
                if fault is None:
                    assert request.transport is not None
                    request.transport.abort()  # the client sees a closed connection
                    return web.Response()
                raise fault
            result = await handler(params)
        except ApiError as error:
            self.errors.append((self.calls[-1].method, params, error.description))
            return web.json_response(error.envelope(), status=error.status)
        return web.json_response({"ok": True, "result": result})

    def _chat_for_send(self, params: Params) -> int:
        chat_id = _int(params, "chat_id")
        if chat_id not in self._chats:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _bot_message(self, params: Params, action: str) -> BotMessage:
        chat_id, message_id = _int(params, "chat_id"), _int(params, "message_id")
        if chat_id not in self._chats:
            raise bad_request("chat not found")
        msg = self._bot_msgs.get((chat_id, message_id))
        if msg is None or msg.deleted:
            if (chat_id, message_id) in self._user_msgs and action == "edit":
                raise bad_request("message can't be edited")
            raise bad_request(f"message to {action} not found")
        return msg

    def _check_rate(self, chat_id: int) -> None:
        """Flood control for sendMessage/Photo/Document (edits are not limited): a burst, then
        1 msg/s per private chat, 20/min per group, 30/s overall. Logs every good send."""
        now = time.monotonic()
        if self.enforce_limits:
            per_chat = self._buckets.setdefault(
                chat_id,
                _Bucket(1.0, self.per_chat_burst) if chat_id > 0 else _Bucket(20 / 60, 20),
            )
            per_chat.refill(now)
            self._global_bucket.refill(now)
            wait = max(per_chat.wait_time(), self._global_bucket.wait_time())
            if wait > 0:
                self.count_429 += 1
                retry = max(1, math.ceil(wait))
                raise ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
            per_chat.tokens -= 1
            self._global_bucket.tokens -= 1
        self.send_log.append((now, chat_id))

    async def _send(self, params: Params, kind: Literal["text", "photo", "document"]) -> Any:
        chat_id = self._chat_for_send(params)
        file: UploadedFile | str | None = None
        if kind != "text":
            file = params.get(kind)
            if isinstance(file, str) and file.startswith("attach://"):
                file = params.get(file.removeprefix("attach://"))
            if file in (None, ""):
                raise bad_request(f"there is no {kind} in the request")
            if isinstance(file, UploadedFile):
                file = _check_upload(file, kind)
        key, limit = ("text", MAX_TEXT) if kind == "text" else ("caption", MAX_CAPTION)
        text, entities = _parse_text(params, key, limit, required=kind == "text")
        raw_markup, rows = _parse_markup(params.get("reply_markup"))
        self._check_rate(chat_id)
        msg = BotMessage(
            chat_id, self._new_message_id(chat_id), text, params.get(key),
            params.get("parse_mode"), entities, rows, raw_markup, kind, file=file,
        )  # fmt: skip
        self._bot_msgs[(chat_id, msg.message_id)] = msg
        await self._record(msg)
        return self._message_json(chat_id, msg.message_id)

    # -- Bot API methods (``_m_<lowercase name>``; the name after _m_ is also the log name) ----

    async def _m_getMe(self, params: Params) -> Any:
        return self.bot_user

    async def _m_getUpdates(self, params: Params) -> Any:
        if self.webhook["url"]:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset, timeout = _int(params, "offset", 0), float(params.get("timeout") or 0)
        limit = min(max(_int(params, "limit", 100), 1), 100)
        if "allowed_updates" in params:  # Telegram remembers the last setting
            self._allowed_updates = list(params["allowed_updates"] or [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            self._poll_generation += 1
            generation = self._poll_generation
            self._changed.notify_all()  # an older long poll now gets 409, like Telegram
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, POLL_CONFLICT)
                batch = [u for u in self._updates if self._allowed(u)][:limit]
                remaining = deadline - loop.time()
                if batch or remaining <= 0 or self._closing:
                    return batch
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    def _allowed(self, update: dict[str, Any], allowed: list[str] | None = None) -> bool:
        allowed = self._allowed_updates if allowed is None else allowed
        return not allowed or any(kind in update for kind in allowed)

    async def _m_deleteWebhook(self, params: Params) -> Any:
        async with self._changed:
            self.webhook = {"url": "", "secret_token": None, "allowed_updates": None}
            if _bool(params, "drop_pending_updates"):
                self._updates.clear()
            self._changed.notify_all()
        return True

    async def _m_setWebhook(self, params: Params) -> Any:
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad_request("secret token contains unallowed characters")
        if params.get("url") and not str(params["url"]).startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        async with self._changed:
            self.webhook = {
                "url": params.get("url") or "",
                "secret_token": secret,
                "allowed_updates": params.get("allowed_updates"),
            }
            if _bool(params, "drop_pending_updates"):
                self._updates.clear()
            if self.webhook["url"] and self._webhook_task is None:
                self._webhook_task = asyncio.create_task(self._deliver_webhooks())
            self._changed.notify_all()
        return True

    async def _m_getWebhookInfo(self, params: Params) -> Any:
        info: dict[str, Any] = {"url": self.webhook["url"], "has_custom_certificate": False}
        info["pending_update_count"] = len(self._updates)
        if self.webhook["allowed_updates"]:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        if self.webhook_error:
            info["last_error_date"], info["last_error_message"] = self.webhook_error
        return info

    async def _m_setMyCommands(self, params: Params) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH" if commands else "commands are empty")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[_scope_key(params)] = commands
        return True

    async def _m_getMyCommands(self, params: Params) -> Any:
        return self.commands.get(_scope_key(params), [])

    async def _m_deleteMyCommands(self, params: Params) -> Any:
        self.commands.pop(_scope_key(params), None)
        return True

    async def _m_sendMessage(self, params: Params) -> Any:
        return await self._send(params, "text")

    async def _m_sendPhoto(self, params: Params) -> Any:
        return await self._send(params, "photo")

    async def _m_sendDocument(self, params: Params) -> Any:
        return await self._send(params, "document")

    async def _m_sendChatAction(self, params: Params) -> Any:
        self._chat_for_send(params)
        return True

    async def _m_getChat(self, params: Params) -> Any:
        chat_id = _int(params, "chat_id")
        if chat_id not in self._chats:
            raise bad_request("chat not found")
        gifts = dict.fromkeys(("unlimited_gifts", "limited_gifts", "unique_gifts",
                               "premium_subscription", "gifts_from_channels"), False)  # fmt: skip
        extra = {"accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}
        return {**self._chats[chat_id], **extra}

    async def _m_editMessageText(self, params: Params) -> Any:
        msg = self._bot_message(params, "edit")
        if msg.kind != "text":
            raise bad_request("there is no text in the message to edit")
        text, entities = _parse_text(params, "text", MAX_TEXT, required=True)
        mode = params.get("parse_mode")
        return await self._edit(msg, params, text, entities, params.get("text"), mode)

    async def _m_editMessageReplyMarkup(self, params: Params) -> Any:
        msg = self._bot_message(params, "edit")
        return await self._edit(msg, params, msg.text, msg.entities, msg.raw_text, msg.parse_mode)

    async def _edit(
        self,
        msg: BotMessage,
        params: Params,
        text: str | None,
        entities: Any,
        raw: Any,
        parse_mode: str | None,
    ) -> Any:
        """Telegram drops the keyboard when an edit omits reply_markup; same content → 400."""
        raw_markup, rows = _parse_markup(params.get("reply_markup"))
        if (text, entities, raw_markup) == (msg.text, msg.entities, msg.raw_markup):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        msg.text, msg.entities, msg.raw_text, msg.parse_mode = text, entities, raw, parse_mode
        msg.raw_markup, msg.reply_markup, msg.edited = raw_markup, rows, True
        await self._record(msg)
        return self._message_json(msg.chat_id, msg.message_id)

    async def _m_deleteMessage(self, params: Params) -> Any:
        key = (_int(params, "chat_id"), _int(params, "message_id"))
        if key in self._user_msgs:
            if key[0] < 0:  # the fake bot is never a group admin
                raise bad_request("message can't be deleted")
            self._user_msgs.pop(key)
        else:
            self._bot_message(params, "delete").deleted = True
        self.deleted.append(key)
        async with self._changed:
            self._changed.notify_all()
        return True

    async def _m_answerCallbackQuery(self, params: Params) -> Any:
        qid = str(params.get("callback_query_id", ""))
        if self._queries.get(qid, True):  # unknown or already answered
            raise bad_request(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        self._queries[qid] = True
        answer = CallbackAnswer(params.get("text"), _bool(params, "show_alert"), params.get("url"))
        async with self._changed:
            self.callback_answers[qid] = answer
            self._changed.notify_all()
        return True

    # -- webhook mode ------------------------------------------------------------------------

    async def _deliver_webhooks(self) -> None:
        """POST queued updates one at a time, in order, retrying non-2xx like Telegram."""
        async with aiohttp.ClientSession() as session:
            while True:
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: self._closing or not self.webhook["url"] or bool(self._updates)
                    )
                    if self._closing or not self.webhook["url"]:
                        self._webhook_task = None
                        return
                    update, hook = self._updates[0], dict(self.webhook)
                if self._allowed(update, hook["allowed_updates"] or []):
                    await self._post_update(session, hook, update)
                async with self._changed:
                    if self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                    self._changed.notify_all()

    async def _post_update(
        self, session: aiohttp.ClientSession, hook: dict[str, Any], update: dict[str, Any]
    ) -> None:
        headers = (
            {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]}
            if hook["secret_token"]
            else {}
        )
        delivery = WebhookDelivery(update["update_id"], 0, None)
        self.webhook_deliveries.append(delivery)
        for attempt in range(self.webhook_attempts):
            delivery.attempts += 1
            try:
                async with session.post(hook["url"], json=update, headers=headers) as resp:
                    delivery.status = resp.status
                    if 200 <= resp.status < 300:
                        return
                    error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except aiohttp.ClientError as exc:
                delivery.status, error = None, f"Connection failed: {exc}"
            self.webhook_error = (int(time.time()), error)
            await asyncio.sleep(self.webhook_retry_delay * 2**attempt)  # Telegram's backoff


# -- request parsing helpers -------------------------------------------------------------------


async def _read_params(request: web.Request) -> Params:
    """Query string + form/multipart/JSON body; JSON-looking object fields are decoded."""
    params: Params = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        else:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    params[key] = UploadedFile(value.filename, len(data), value.content_type, data)
                else:
                    params[key] = value
    for key in JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in "{[":
            try:
                params[key] = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {key} JSON object") from None
    return params


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF or JPEG, read from its header; None if it is none."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = (
                    int.from_bytes(data[i + 5 : i + 7], "big"),
                    int.from_bytes(data[i + 7 : i + 9], "big"),
                )
                return w, h
            i += 2 + length
    return None


def _check_upload(file: UploadedFile, kind: str) -> UploadedFile:
    """Telegram's upload rules: size caps, and a photo must be an image of sane shape."""
    if kind != "photo":
        if file.size > MAX_DOCUMENT_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        return file
    if file.size > MAX_PHOTO_BYTES:
        raise bad_request("file is too big")
    size = image_size(file.data)
    if size is None:
        raise bad_request("IMAGE_PROCESS_FAILED")
    width, height = size
    if (
        min(width, height) < 1
        or width + height > MAX_PHOTO_SIDES
        or max(width, height) / min(width, height) > MAX_PHOTO_RATIO
    ):
        raise bad_request("PHOTO_INVALID_DIMENSIONS")
    return UploadedFile(file.name, file.size, file.content_type, file.data, width, height)


def _int(params: Params, key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise bad_request(f"{key} is empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request("chat not found" if key == "chat_id" else f"invalid {key}") from None


def _bool(params: Params, key: str) -> bool:
    return str(params.get(key, "")).lower() in ("true", "1")


def _scope_key(params: Params) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return str(scope.get("type", "default")), str(params.get("language_code") or "")


def _parse_text(params: Params, key: str, limit: int, *, required: bool) -> tuple[Any, list[Any]]:
    """Apply parse_mode and Telegram's length rules (counted after entity parsing)."""
    raw = params.get(key)
    if raw is None and not required:
        return None, []
    raw = "" if raw is None else str(raw)
    mode = str(params.get("parse_mode") or "").lower()
    if mode == "html":
        text, entities = parse_html(raw)
    elif mode in ("", "markdown", "markdownv2"):  # Markdown is not validated by this fake
        text, entities = raw, params.get(f"{'' if key == 'text' else 'caption_'}entities") or []
    else:
        raise bad_request(f"unsupported parse_mode {params.get('parse_mode')!r}")
    if required and not text.strip():
        raise bad_request("message text is empty")
    if len(text) > limit:
        raise bad_request("message is too long" if key == "text" else "message caption is too long")
    return text, entities


def _text_fields(text: str, caption: bool) -> dict[str, Any]:
    """User message text (or caption) plus a bot_command entity for ``/command`` text."""
    fields: dict[str, Any] = {"caption" if caption else "text": text}
    m = re.match(r"/\S+", text)
    if m and not caption:
        fields["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(m[0])}]
    return fields
