"""/balance [label] and its 🔄 Refresh button: every key checked afresh, in parallel.

The handler only starts the checks and returns, so the user's next command is never
queued behind a slow provider; the answer is shown by a background task
(bot/handlers/progress.py): fast keys at once, slow ones filled in by editing, the
keys still outstanding after the deadline with their last known figure. Long answers
are split between keys. The answer ends with the time it is "as of" and a Refresh
button that checks the same keys again (within the manual-check limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
from collections.abc import Mapping, Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.handlers.currency import converted_line, rates_for_balance
from bot.handlers.pace import pace_line
from bot.handlers.progress import ALREADY, TOO_SOON, Rendered, Screen, Stage, follow
from bot.i18n import N_
from bot.services.balances import PACE_WAIT, CheckRun
from bot.services.fx import Rates
from bot.services.history import Pace
from bot.services.keys import match_label

PREFIX = "bal"

NO_KEYS = N_("You have no keys yet. Send /add to add one.")
CHECKING = N_("⏳ Checking {n} keys…")
CHECKING_ONE = N_("⏳ Checking your key…")
UNKNOWN_LABEL = N_("No key named <b>{label}</b>. Your keys: {labels}")
HEADER = N_("💰 <b>Balances</b>")
HEADER_SO_FAR = N_("⏳ <b>Balances</b> · {done} of {total} keys so far")
TOTALS = N_("<b>Total left</b>: {sums}")
THROTTLED = N_(
    "<i>Many checks in a short time: showing stored results. A new check is possible in {n} s.</i>"
)
STILL_CHECKING = N_("⏳ Still checking {labels}…")
STILL_WAITING = N_(
    "⏳ Still waiting for {labels}: the last known figure is shown. "
    "This message updates when the answer arrives."
)
NO_ANSWER_IN_TIME = N_("No answer from {labels} in time: the last known figure is shown.")
AS_OF = N_("<i>as of {time}</i>")
REFRESH = N_("🔄 Refresh")
REFRESHING = N_("🔄 Checking again…")
GONE = N_("This key was not found. It may have been deleted.")
EXPIRED = N_("This button has expired.")


# -- the command ----------------------------------------------------------------------------


async def balance(update: Update, context: BotContext) -> None:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    keys = await context.services.keys.list(user.id)
    if not keys:
        await message.reply_text(context.t(NO_KEYS))
        return
    key_ids: list[str] | None = None
    if context.args:
        wanted = " ".join(context.args).strip()
        found = match_label([k.label for k in keys], wanted)
        if found is None:
            names = ", ".join(f"<code>{html.escape(k.label)}</code>" for k in keys)
            await message.reply_text(context.t(UNKNOWN_LABEL, label=fmt.clip(wanted), labels=names))
            return
        key_ids = [k.id for k in keys if k.label == found]
    await show(update, context, user.id, message.chat_id, key_ids)


async def show(
    update: Update,
    context: BotContext,
    user_id: int,
    chat_id: int,
    key_ids: Sequence[str] | None = None,
) -> None:
    """Start checking the user's keys (all, or these) and answer in `chat_id` — from a
    background task, so this returns at once (also /start's 💰 Balance button)."""
    started = asyncio.get_running_loop().time()
    run = await context.services.balances.begin(user_id, key_ids=key_ids)
    if not run.keys:
        await context.bot.send_message(chat_id, context.t(NO_KEYS))
        return
    screen = Screen(context.bot, chat_id)
    # The slow part runs on its own: this handler returns, the chat stays responsive.
    context.application.create_task(
        follow(run, screen, renderer(context, key_ids), started=started), update=update
    )


def renderer(context: BotContext, key_ids: Sequence[str] | None):  # type: ignore[no-untyped-def]
    """The answer's look at each stage, for this user (language, zone, clock)."""
    scope = key_ids[0] if key_ids else None
    history = context.services.history

    target = context.currency  # /currency: one converted total under the totals
    # The rates load while the providers answer (at most once a day from the ECB).
    fx = asyncio.ensure_future(rates_for_balance(context.services.fx)) if target else None

    async def render(run: CheckRun, stage: Stage) -> Rendered:
        view = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
        paces: Mapping[str, Pace] = {}
        if stage is not Stage.PROGRESS:
            ok = [r.key.id for r in run.reports() if r.ok]
            if ok:  # the new readings are part of the pace
                await run.recorded(timeout=PACE_WAIT)
                paces = await history.paces(run.keys[0].owner_id, ok)
        return render_run(
            run,
            stage,
            view,
            scope=scope,
            paces=paces,
            target=target,
            rates=await fx if fx is not None and stage is not Stage.PROGRESS else None,
        )

    return render


def render_run(
    run: CheckRun,
    stage: Stage,
    view: fmt.View,
    *,
    scope: str | None = None,
    paces: Mapping[str, Pace] | None = None,
    target: str | None = None,
    rates: Rates | None = None,
) -> tuple[list[str], InlineKeyboardMarkup | None]:
    """The answer as message-sized chunks, and the Refresh button once it is final.

    A key's pace line (bot/handlers/pace.py) follows its figure where history has one.
    """
    t = view.t
    paces = paces or {}
    reports = run.reports()
    pending = run.pending()
    if stage is Stage.PROGRESS and not reports:
        n = len(run.keys)
        return [t(CHECKING, n=n) if n > 1 else t(CHECKING_ONE)], None
    blocks: list[str] = []
    for key in run.keys:
        report = run.report(key.id)
        if report is not None:
            block = fmt.report_block(report, view)
            if report.ok and key.id in paces:
                block += "\n" + pace_line(paces[key.id], view)
            blocks.append(block)
        elif stage is not Stage.PROGRESS:
            blocks.append(fmt.waiting_block(key, run.stored.get(key.id), view))
    waiting = ", ".join(f"<b>{html.escape(k.label)}</b>" for k in pending)
    footer: list[str] = []
    if stage is Stage.PROGRESS:
        head = t(HEADER_SO_FAR, done=len(reports), total=len(run.keys))
        footer.append(t(STILL_CHECKING, labels=waiting))
    else:
        head = t(HEADER)
        if stage is Stage.OVERDUE:
            footer.append(t(STILL_WAITING, labels=waiting))
        elif pending:
            footer.append(t(NO_ANSWER_IN_TIME, labels=waiting))
        sums = fmt.totals(reports)
        if not pending and (len(reports) > 1 or target) and sums:
            parts = " · ".join(
                f"<b>{fmt.money(v, code, t)}</b>" for code, v in sorted(sums.items())
            )
            footer.append(t(TOTALS, sums=parts))
            converted = converted_line(sums, target, rates, t) if target else None
            if converted is not None:
                footer.append(converted)
        if run.throttled:
            footer.append(t(THROTTLED, n=math.ceil(run.retry_in)))
        else:
            footer.append(t(AS_OF, time=fmt.clock_time(run.started_at, view.now, view.tz, t)))
    items = [head, *blocks]
    if footer:
        items.append("\n".join(footer))
    markup = refresh_markup(view, scope) if stage is Stage.FINAL else None
    return fmt.pack(items), markup


def refresh_markup(view: fmt.View, scope: str | None) -> InlineKeyboardMarkup:
    data = callbacks.encode(PREFIX, "r", scope) if scope else callbacks.encode(PREFIX, "r")
    return InlineKeyboardMarkup([[InlineKeyboardButton(view.t(REFRESH), callback_data=data)]])


# -- the Refresh button ---------------------------------------------------------------------


async def on_refresh(update: Update, context: BotContext) -> None:
    """Check the same keys again and edit the pressed answer; the limit is said, not hit."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    t = context.t
    started = asyncio.get_running_loop().time()
    cb = callbacks.decode(query.data, PREFIX)
    message = query.message
    chat = update.effective_chat
    if (
        cb is None
        or cb.action != "r"
        or len(cb.args) > 1
        or not isinstance(message, Message)
        or chat is None
        or chat.type != ChatType.PRIVATE
    ):
        await query.answer(t(EXPIRED))
        return
    busy = context.bot_data.busy_messages
    where = (message.chat_id, message.message_id)
    if where in busy:
        await query.answer(t(ALREADY))
        return
    key_ids = [cb.arg(0)] if cb.args else None
    # Scoped by the presser's id: a forged or another user's key id finds nothing.
    run = await context.services.balances.begin(user.id, key_ids=key_ids)
    if not run.keys:
        await query.answer(t(GONE if key_ids else NO_KEYS), show_alert=True)
        return
    if run.throttled:
        await query.answer(t(TOO_SOON, n=math.ceil(run.retry_in)), show_alert=True)
        return
    await query.answer(t(REFRESHING))
    busy.add(where)

    async def refresh() -> None:
        try:
            if (message.text or "").startswith(fmt.plain(t(HEADER))):
                screen = Screen(context.bot, message.chat_id, [message])
            else:  # the last part of a long answer: answer anew, below it
                with contextlib.suppress(TelegramError):
                    await message.edit_reply_markup(None)
                screen = Screen(context.bot, message.chat_id)
            await follow(run, screen, renderer(context, key_ids), started=started)
        finally:
            busy.discard(where)

    context.application.create_task(refresh(), update=update)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("balance", balance, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_refresh, pattern=callbacks.pattern(PREFIX)))
