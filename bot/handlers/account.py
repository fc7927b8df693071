"""/remove, /forget, /lang and /tz: the user's keys and settings.

Destructive actions ask first, with buttons. Button data is forgeable (docs/security.md §T8),
so every press is re-checked against the presser: a key is loaded by (presser, key id),
a /forget confirmation carries the presser's id and a timestamp.
"""

from __future__ import annotations

import html
import zoneinfo
from datetime import datetime
from functools import cache

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.handlers.chat import clear_keyboard, is_private, private_link
from bot.i18n import LANGUAGES, N_, NP_, Translator
from bot.limits import MAX_TIMEZONE
from bot.services.keys import KeyView, match_label

PREFIX = "acc"
CONFIRM_SECONDS = 600

IN_GROUP = N_("🔐 Your keys and settings are managed in a private chat only.")
OPEN_PRIVATE = N_("Open a private chat")
NOT_FOUND = N_("Not found — it may have been deleted already.")
EXPIRED = N_("This button has expired.")

REMOVE_PICK = N_("Which key should I delete? (Or send <code>/remove LABEL</code>.)")
NO_KEYS = N_("You have no keys yet. Send /add to add one.")
NO_SUCH_KEY = N_("You have no key named <b>{label}</b>. Your keys: {labels}")
REMOVE_CONFIRM = N_("Delete the key <b>{label}</b> · {provider} · <code>{hint}</code>?")
DELETE = N_("🗑 Delete")
KEEP = N_("Keep")
REMOVED = N_("🗑 Deleted <b>{label}</b>.")
KEPT = N_("Kept <b>{label}</b>.")

FORGET_CONFIRM = N_(
    "This deletes <b>everything</b> I store about you: {keys}, their balance "
    "history, alerts and settings. It cannot be undone. Continue?"
)
YOUR_KEYS = NP_("your {n} key", "your {n} keys")
N_KEYS = NP_("{n} key", "{n} keys")
N_RECORDS = NP_("{n} other record", "{n} other records")
FORGET_YES = N_("Delete everything")
FORGET_NO = N_("Cancel")
FORGOTTEN = N_(
    "Done. Deleted {keys} and {records}, and your settings. "
    "If you write to me again, I start from scratch."
)
FORGET_CANCELLED = N_("Nothing was deleted.")

LANG_PROMPT = N_("Choose your language:")
LANG_USAGE = N_("Send <code>/lang en</code> or <code>/lang zh</code>.")
LANG_SET = N_("From now on I'll reply in English.")

TZ_CURRENT = N_(
    "Your time zone is <b>{zone}</b> (local time {now}). "
    "Change it with e.g. <code>/tz Asia/Shanghai</code>."
)
TZ_SET = N_("Time zone set to <b>{zone}</b>. Local time now: {now}.")
TZ_UNKNOWN = N_(
    "I don't know the time zone <code>{zone}</code>. Use an IANA name such as "
    "<code>Asia/Shanghai</code>, <code>Europe/Berlin</code> or <code>UTC</code>."
)
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=False)


async def _private_only(update: Update, context: BotContext) -> bool:
    """Keys and settings are never shown in a group; point to the private chat."""
    if is_private(update):
        return True
    message = update.effective_message
    if message is not None:
        t = context.t
        await message.reply_text(t(IN_GROUP), reply_markup=private_link(context, t(OPEN_PRIVATE)))
    return False


def _labels(keys: list[KeyView]) -> str:
    return ", ".join(f"<b>{_e(k.label)}</b>" for k in keys)


def _title(context: BotContext, provider_id: str) -> str:
    """The provider's name in the user's language (as /balance writes it)."""
    try:
        return context.t(context.services.billing.provider(provider_id).title)
    except KeyError:
        return provider_id


# -- /remove --------------------------------------------------------------------------------


def find_key(keys: list[KeyView], raw: str) -> KeyView | None:
    label = match_label([k.label for k in keys], raw)
    return next((k for k in keys if k.label == label), None)


async def cmd_remove(update: Update, context: BotContext) -> None:
    if not await _private_only(update, context):
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    keys = await context.services.keys.list(user.id)
    if not keys:
        await message.reply_text(t(NO_KEYS))
        return
    raw = " ".join(context.args or [])
    if not raw:  # which one? each key is a button (its press is checked again)
        rows = [
            [
                InlineKeyboardButton(
                    f"🗑 {k.label}", callback_data=callbacks.encode(PREFIX, "ask", k.id)
                )
            ]
            for k in keys
        ]
        await message.reply_text(t(REMOVE_PICK), reply_markup=InlineKeyboardMarkup(rows))
        return
    key = find_key(keys, raw)
    if key is None:
        await message.reply_text(t(NO_SUCH_KEY, label=fmt.clip(raw), labels=_labels(keys)))
        return
    text, markup = _remove_confirm(context, key)
    await message.reply_text(text, reply_markup=markup)


def _remove_confirm(context: BotContext, key: KeyView) -> tuple[str, InlineKeyboardMarkup]:
    t = context.t
    buttons = [
        InlineKeyboardButton(
            t(DELETE), callback_data=callbacks.encode(PREFIX, "rm", key.id), style="danger"
        ),
        InlineKeyboardButton(
            t(KEEP), callback_data=callbacks.encode(PREFIX, "keep", key.id), style="success"
        ),
    ]
    text = t(
        REMOVE_CONFIRM,
        label=_e(key.label),
        provider=_e(_title(context, key.provider)),
        hint=_e(key.hint),
    )
    return text, InlineKeyboardMarkup([buttons])


# -- /forget --------------------------------------------------------------------------------


async def cmd_forget(update: Update, context: BotContext) -> None:
    if not await _private_only(update, context):
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    count = len(await context.services.keys.list(user.id))
    stamp = str(int(context.now().timestamp()))
    yes = callbacks.encode(PREFIX, "fg", str(user.id), stamp)
    no = callbacks.encode(PREFIX, "fgno")
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t(FORGET_YES), callback_data=yes, style="danger"),
                InlineKeyboardButton(t(FORGET_NO), callback_data=no, style="success"),
            ]
        ]
    )
    await message.reply_text(
        t(FORGET_CONFIRM, keys=t.plural(YOUR_KEYS, count)), reply_markup=markup
    )


# -- /lang and /tz --------------------------------------------------------------------------


def _lang_markup() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    LANGUAGE_NAMES.get(code, code),
                    callback_data=callbacks.encode(PREFIX, "lang", code),
                )
                for code in LANGUAGES
            ]
        ]
    )


async def cmd_lang(update: Update, context: BotContext) -> None:
    if not await _private_only(update, context):
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    if not context.args:
        await message.reply_text(context.t(LANG_PROMPT), reply_markup=_lang_markup())
        return
    code = context.args[0].strip().lower()
    if code not in LANGUAGES:
        await message.reply_text(context.t(LANG_USAGE))
        return
    await context.services.users.set_language(user.id, code)
    context.lang = code
    await message.reply_text(context.t(LANG_SET))


@cache
def _zones() -> dict[str, str]:
    """Lower-case name → canonical IANA name, for forgiving input."""
    return {z.lower(): z for z in zoneinfo.available_timezones()}


def resolve_zone(raw: str) -> str | None:
    name = raw.strip()
    if not name or len(name) > MAX_TIMEZONE:
        return None
    zone = _zones().get(name.lower())
    if zone is None:
        return None
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return zone


def _local_now(zone: str, now: datetime) -> str:
    try:
        tz = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("UTC")
    return now.astimezone(tz).strftime("%Y-%m-%d %H:%M")


async def cmd_tz(update: Update, context: BotContext) -> None:
    if not await _private_only(update, context):
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    if not context.args:
        zone = context.timezone
        await message.reply_text(
            t(TZ_CURRENT, zone=_e(zone), now=_e(_local_now(zone, context.now())))
        )
        return
    raw = " ".join(context.args)
    zone = resolve_zone(raw)
    if zone is None:
        await message.reply_text(t(TZ_UNKNOWN, zone=fmt.clip(raw)))
        return
    await context.services.users.set_timezone(user.id, zone)
    context.timezone = zone
    await message.reply_text(t(TZ_SET, zone=_e(zone), now=_e(_local_now(zone, context.now()))))


# -- buttons --------------------------------------------------------------------------------


async def on_button(update: Update, context: BotContext) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    t = context.t
    cb = callbacks.decode(query.data, PREFIX)
    if cb is None or not is_private(update):
        await query.answer(t(EXPIRED))
        return
    if cb.action in ("rm", "keep", "ask"):
        await _remove_button(update, context, t, cb.action, cb.arg(0))
    elif cb.action == "fg":
        await _forget_button(update, context, t, cb.arg(0), cb.arg(1))
    elif cb.action == "fgno":
        await query.answer()
        await query.edit_message_text(t(FORGET_CANCELLED))
    elif cb.action == "lang" and cb.arg(0) in LANGUAGES:
        await context.services.users.set_language(user.id, cb.arg(0))
        context.lang = cb.arg(0)
        await query.answer()
        await query.edit_message_text(context.t(LANG_SET))
    else:
        await query.answer(t(EXPIRED))


async def _remove_button(
    update: Update, context: BotContext, t: Translator, action: str, key_id: str
) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    keys = context.services.keys
    key = await keys.get(user.id, key_id)  # scoped by the presser: A's key id is "not found" for B
    if key is None:
        await query.answer(t(NOT_FOUND), show_alert=True)
        await clear_keyboard(update)
        return
    if action == "ask":  # picked from /remove's list: confirm first, as /remove LABEL does
        await query.answer()
        text, markup = _remove_confirm(context, key)
        await query.edit_message_text(text, reply_markup=markup)
        return
    if action == "keep":
        await query.answer()
        await query.edit_message_text(t(KEPT, label=_e(key.label)))
        return
    if not await keys.delete(user.id, key.id):
        await query.answer(t(NOT_FOUND), show_alert=True)
        return
    await query.answer()
    await query.edit_message_text(t(REMOVED, label=_e(key.label)))


async def _forget_button(
    update: Update, context: BotContext, t: Translator, owner: str, stamp: str
) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    now = context.now().timestamp()
    fresh = stamp.isdigit() and 0 <= now - int(stamp) <= CONFIRM_SECONDS
    if owner != str(user.id) or not fresh:
        await query.answer(t(EXPIRED), show_alert=True)
        await clear_keyboard(update)
        return
    done = await context.services.account.forget(user.id)
    await query.answer()
    await query.edit_message_text(
        t(FORGOTTEN, keys=t.plural(N_KEYS, done.keys), records=t.plural(N_RECORDS, done.records))
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    new = filters.UpdateType.MESSAGE
    app.add_handler(CommandHandler("remove", cmd_remove, filters=new))
    app.add_handler(CommandHandler("forget", cmd_forget, filters=new))
    app.add_handler(CommandHandler("lang", cmd_lang, filters=new))
    app.add_handler(CommandHandler("tz", cmd_tz, filters=new))
    app.add_handler(CallbackQueryHandler(on_button, pattern=callbacks.pattern(PREFIX)))
