"""/keys: the user's keys as a list; a tap opens one key with check, alerts, rename, delete.

Callback data (`k:<action>:<key_id>`) comes from the client and can be forged or
replayed by another user (docs/security.md §T8): every press re-loads the key with the
presser's own id, and a miss is answered "not found" with nothing changed. The alerts
button emits `al:key:<key_id>:k` (its « Back returns to the card); the alerts feature
handles it.

Renaming waits for one text message: a DB flow of kind "rename" (the shared `flows`
table, so it survives restarts and replicas); the fallback's flow router hands the
next text to `on_rename_text`. /cancel (the flows' owner) ends it like any flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import shlex
from collections.abc import Sequence

from telegram import (
    CopyTextButton,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    filters,
)

from bot.billing.errors import ErrorKind
from bot.context import BotContext
from bot.handlers import callbacks, fallback, progress
from bot.handlers import format as fmt
from bot.handlers.history import button as history_button
from bot.handlers.pace import pace_line
from bot.i18n import N_, Translator
from bot.services.balances import PACE_WAIT, CheckRun, KeyReport, StoredStatus, stored_report
from bot.services.flows import Flow
from bot.services.history import Pace
from bot.services.keys import InvalidLabel, KeyView, LabelTaken
from bot.services.keyshape import looks_like_key

PREFIX = "k"
TOAST_WAIT = 1.0  # seconds a "Check now" waits for the answer to put it in the toast
ALERTS_PREFIX = "al"
RENAME_FLOW = "rename"

T_NO_KEYS = N_("You have no keys yet. Send /add to add one.")
T_LIST_TITLE = N_("🔑 <b>Your keys</b> ({n})")
T_LIST_HINT = N_("Tap a key to check, rename or delete it.")
T_NOT_CHECKED = N_("not checked yet")
T_ADDED = N_("added {date}")
T_NOT_FOUND = N_("Key not found. It may have been deleted.")
T_CHECKED_TOAST = N_("✅ Checked: {figure}")
T_CHECKING_TOAST = N_("🔄 Checking… the card updates when the answer arrives.")

T_CHECK = N_("🔄 Check now")
T_ALERTS = N_("🔔 Alerts")
T_RENAME = N_("✏️ Rename")
T_DELETE = N_("🗑 Delete")
T_BACK = N_("« All keys")
T_COPY_CHECK = N_("📋 Copy CLI check")
T_CONFIRM = N_("Delete <b>{label}</b> ({hint})? The encrypted key and its history are erased.")
T_CONFIRM_YES = N_("Yes, delete")
T_CANCEL = N_("Cancel")
T_DELETED = N_("🗑 Deleted <b>{label}</b>.")
T_RENAME_PROMPT = N_("✏️ Send the new name for <b>{label}</b> (up to 32 characters), or /cancel.")
T_RENAME_PLACEHOLDER = N_("New name")
T_RENAMED = N_("✅ Renamed to <b>{label}</b>.")
T_LABEL_TAKEN = N_("You already have a key named <b>{label}</b>. Send another name.")
T_LABEL_INVALID = N_("Names are 1–32 characters, without control characters. Send another name.")
T_LABEL_BLANK = N_("That name would look blank in a list. Use letters, digits or an emoji.")
T_LABEL_IS_KEY = N_("That looks like an API key, so I deleted the message. Send a name, not a key.")


def _data(action: str, key_id: str = "") -> str:
    return callbacks.encode(PREFIX, action, key_id) if key_id else callbacks.encode(PREFIX, action)


# -- rendering ----------------------------------------------------------------------------


def list_text(keys: Sequence[KeyView], statuses: dict[str, StoredStatus], view: fmt.View) -> str:
    t = view.t
    lines = [t(T_LIST_TITLE, n=len(keys)), ""]
    for key in keys:
        report = stored_report(key, statuses.get(key.id)) if key.id in statuses else None
        if report is None:
            mark, figure = fmt.UNKNOWN, t(T_NOT_CHECKED)
        elif report.result is not None:
            mark = fmt.mark(report.result, view.now)
            figure = fmt.short_figure(report.result, t)
            if report.checked_at is not None:
                figure += f" · {fmt.age(report.checked_at, view.now, t)}"
        else:
            kind = report.error or ErrorKind.PROVIDER_ERROR
            mark = fmt.error_mark(kind)
            figure = (
                fmt.short_figure(report.last_known, t)
                if report.last_known is not None
                else t(T_NOT_CHECKED)
            )
            if report.last_known_at is not None:
                figure += f" · {fmt.age(report.last_known_at, view.now, t)}"
        lines.append(fmt.title_line(mark, key.label, key.provider, view))
        lines.append(f"<code>{html.escape(key.hint)}</code> · {figure}")
    lines += ["", t(T_LIST_HINT)]
    return "\n".join(lines)


def list_markup(keys: Sequence[KeyView]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(k.label, callback_data=_data("open", k.id))] for k in keys]
    )


def card_text(
    key: KeyView, report: KeyReport | None, view: fmt.View, pace: Pace | None = None
) -> str:
    """One key: its figure and how old it is, the pace, then hint and date added.

    The same lines whether the card was opened or just checked ("🔄 Check now").
    """
    lines = [f"<code>{html.escape(key.hint)}</code>"]
    if key.created_at is not None:
        lines[0] += " · " + view.t(T_ADDED, date=fmt.local_date(key.created_at, view.tz))
    if report is None:
        block = fmt.title_line(fmt.UNKNOWN, key.label, key.provider, view)
        return "\n".join([block, view.t(T_NOT_CHECKED), *lines])
    if pace is not None and report.ok:
        lines.insert(0, pace_line(pace, view))
    return fmt.report_block(report, view, dated=True) + "\n" + "\n".join(lines)


def waiting_card(key: KeyView, status: StoredStatus | None, view: fmt.View) -> str:
    """The card while its provider is late: the last known figure, then the usual lines."""
    hint = f"<code>{html.escape(key.hint)}</code>"
    if key.created_at is not None:
        hint += " · " + view.t(T_ADDED, date=fmt.local_date(key.created_at, view.tz))
    return fmt.waiting_block(key, status, view) + "\n" + hint


def check_command(key: KeyView) -> str:
    """`balance-bot check` for this key, to copy into a shell: the key itself is read from
    an environment variable there (bot/billing/check_cli.py), never part of the text."""
    env = key.provider.upper().replace("-", "_") + "_API_KEY"
    command = f"balance-bot check --provider {key.provider} --key-env {env}"
    if key.base_url:
        command += f" --url {shlex.quote(key.base_url)}"
    return command[:256]  # Telegram's copy-text limit


def card_markup(key: KeyView, t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t(T_CHECK), callback_data=_data("chk", key.id)),
                InlineKeyboardButton(
                    t(T_ALERTS), callback_data=callbacks.encode(ALERTS_PREFIX, "key", key.id, "k")
                ),
                history_button(key.id, t),
            ],
            [
                InlineKeyboardButton(t(T_RENAME), callback_data=_data("ren", key.id)),
                InlineKeyboardButton(
                    t(T_DELETE), callback_data=_data("del", key.id), style="danger"
                ),
            ],
            [
                InlineKeyboardButton(t(T_COPY_CHECK), copy_text=CopyTextButton(check_command(key))),
                InlineKeyboardButton(t(T_BACK), callback_data=_data("list")),
            ],
        ]
    )


# -- handlers -----------------------------------------------------------------------------


async def keys_command(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    text, markup = await _list(context, user.id)
    await message.reply_text(text, reply_markup=markup)


async def _list(context: BotContext, user_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
    services = context.services
    keys = await services.keys.list(user_id)
    if not keys:
        return context.t(T_NO_KEYS), None
    statuses = await services.balances.statuses(user_id)
    view = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
    return list_text(keys, statuses, view), list_markup(keys)


async def on_callback(update: Update, context: BotContext) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    cb = callbacks.decode(query.data, PREFIX)
    if cb is None or (cb.action not in _ACTIONS and cb.action != "list"):
        await query.answer(context.t(T_NOT_FOUND), show_alert=True)
        return
    if cb.action == "list":
        await query.answer()
        text, markup = await _list(context, user.id)
        await _edit(query.message, text, markup)
        return
    key_id = cb.arg(0)
    # Scoped by the presser's id: another user's (or a forged) id is simply not found.
    key = await context.services.keys.get(user.id, key_id) if key_id else None
    if key is None or len(cb.args) != 1:
        await query.answer(context.t(T_NOT_FOUND), show_alert=True)
        return
    await _ACTIONS[cb.action](update, context, key)


async def _open(update: Update, context: BotContext, key: KeyView) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    services = context.services
    status = (await services.balances.statuses(key.owner_id, [key.id])).get(key.id)
    pace = (await services.history.paces(key.owner_id, [key.id])).get(key.id)
    view = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
    report = stored_report(key, status) if status is not None else None
    await _edit(query.message, card_text(key, report, view, pace), card_markup(key, context.t))


async def _check(update: Update, context: BotContext, key: KeyView) -> None:
    """Check the key afresh and update the card in place; the press always gets a toast.

    The check runs in the background (the user's other commands don't wait for it):
    the toast says what came back if it is quick, else that the card will update.
    """
    query = update.callback_query
    assert query is not None
    t = context.t
    started = asyncio.get_running_loop().time()
    message = query.message
    if not isinstance(message, Message):  # too old to edit: nothing to update
        await query.answer(t(T_NOT_FOUND), show_alert=True)
        return
    busy = context.bot_data.busy_messages
    where = (message.chat_id, message.message_id)
    if where in busy:
        await query.answer(t(progress.ALREADY))
        return
    run = await context.services.balances.begin(key.owner_id, key_ids=[key.id])
    if run.throttled:
        await query.answer(t(progress.TOO_SOON, n=math.ceil(run.retry_in)), show_alert=True)
        return
    busy.add(where)

    async def check() -> None:
        try:
            if await run.wait_all(timeout=TOAST_WAIT):
                report = run.report(key.id)
                await query.answer(_toast(report, t, context.providers) if report else None)
            else:
                await query.answer(t(T_CHECKING_TOAST))
            screen = progress.Screen(context.bot, message.chat_id, [message])
            await progress.follow(run, screen, _card_renderer(context, key), started=started)
        finally:
            busy.discard(where)

    context.application.create_task(check(), update=update)


def _toast(report: KeyReport, t: Translator, providers: fmt.Providers) -> str:
    """The answer in one plain line (a toast shows no markup)."""
    if report.result is not None:
        figure = fmt.plain(fmt.short_figure(report.result, t))
        return t(T_CHECKED_TOAST, figure=figure)[:200]
    kind = report.error or ErrorKind.PROVIDER_ERROR
    reason = fmt.plain(fmt.error_sentence(kind, t, providers.get(report.key.provider)))
    return f"{fmt.error_mark(kind)} {reason}"[:200]


def _card_renderer(context: BotContext, key: KeyView) -> progress.Render:
    async def render(run: CheckRun, stage: progress.Stage) -> progress.Rendered:
        view = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
        markup = card_markup(key, context.t)
        if stage is progress.Stage.PROGRESS:
            return None  # the card stays as it was; the toast said a check is running
        report = run.report(key.id)
        if report is None:
            return [waiting_card(key, run.stored.get(key.id), view)], markup
        pace = None
        if report.ok:
            await run.recorded(timeout=PACE_WAIT)  # the new reading is part of the pace
            pace = (await context.services.history.paces(key.owner_id, [key.id])).get(key.id)
        return [card_text(key, report, view, pace)], markup

    return render


async def _rename(update: Update, context: BotContext, key: KeyView) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    flows = context.services.flows
    await flows.set(
        key.owner_id, RENAME_FLOW, "label", {"key_id": key.id}, nonce=flows.new_nonce(), secret=None
    )
    await context.bot.send_message(
        key.owner_id,
        context.t(T_RENAME_PROMPT, label=html.escape(key.label)),
        reply_markup=ForceReply(input_field_placeholder=context.t(T_RENAME_PLACEHOLDER)[:64]),
    )


async def _delete(update: Update, context: BotContext, key: KeyView) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    t = context.t
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t(T_CONFIRM_YES), callback_data=_data("delok", key.id), style="danger"
                ),
                InlineKeyboardButton(t(T_CANCEL), callback_data=_data("open", key.id)),
            ]
        ]
    )
    text = t(T_CONFIRM, label=html.escape(key.label), hint=html.escape(key.hint))
    await _edit(query.message, text, markup)


async def _delete_confirmed(update: Update, context: BotContext, key: KeyView) -> None:
    query = update.callback_query
    assert query is not None
    if not await context.services.keys.delete(key.owner_id, key.id):
        await query.answer(context.t(T_NOT_FOUND), show_alert=True)
        return
    await query.answer()
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton(context.t(T_BACK), callback_data=_data("list"))]]
    )
    await _edit(query.message, context.t(T_DELETED, label=html.escape(key.label)), markup)


_ACTIONS = {
    "open": _open,
    "chk": _check,
    "ren": _rename,
    "del": _delete,
    "delok": _delete_confirmed,
}


async def on_rename_text(update: Update, context: BotContext, flow: Flow) -> None:
    """The user's answer to the rename prompt (routed here by the fallback's flow router)."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    text = message.text or ""
    if looks_like_key(text, context.providers.values()):
        with contextlib.suppress(TelegramError):  # the warning below still tells the user
            await message.delete()
        await message.reply_text(context.t(T_LABEL_IS_KEY))
        return
    try:
        key = await context.services.keys.rename(user.id, str(flow.data.get("key_id")), text)
    except LabelTaken as exc:
        await message.reply_text(context.t(T_LABEL_TAKEN, label=html.escape(str(exc))))
        return
    except InvalidLabel as exc:
        blank = str(exc) == "blank"
        await message.reply_text(context.t(T_LABEL_BLANK if blank else T_LABEL_INVALID))
        return
    await context.services.flows.clear(user.id)
    if key is None:
        await message.reply_text(context.t(T_NOT_FOUND))
        return
    await message.reply_text(context.t(T_RENAMED, label=html.escape(key.label)))


async def _edit(message: object, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Edit the pressed message; pressing the same button twice is not an error."""
    if not isinstance(message, Message):
        return  # inaccessible (too old) message: nothing to edit
    try:
        await message.edit_text(text, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("keys", keys_command, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_callback, pattern=callbacks.pattern(PREFIX)))
    fallback.on_flow_text(RENAME_FLOW, on_rename_text)
