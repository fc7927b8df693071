"""/balance [label]: every key checked in parallel, one message that becomes the answer.

If the answer is not there within a moment (nothing cached), "checking N keys…" is
sent at once and later edited into the result, so the chat gets one message, not two.
Long answers are split between keys; the first part replaces the "checking" message.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping, Sequence

from telegram import Message, Update
from telegram.ext import Application, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import format as fmt
from bot.handlers.pace import pace_line
from bot.i18n import N_
from bot.services.balances import KeyReport
from bot.services.history import Pace
from bot.services.keys import match_label

QUICK_SECONDS = 0.6  # answers faster than this need no "checking…" message

NO_KEYS = N_("You have no keys yet. Send /add to add one.")
CHECKING = N_("⏳ Checking {n} keys…")
CHECKING_ONE = N_("⏳ Checking your key…")
UNKNOWN_LABEL = N_("No key named <b>{label}</b>. Your keys: {labels}")
HEADER = N_("💰 <b>Balances</b>")
TOTALS = N_("<b>Total left</b>: {sums}")
THROTTLED = N_("<i>Many checks in a short time: showing stored results.</i>")


async def balance(update: Update, context: BotContext) -> None:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    services = context.services
    keys = await services.keys.list(user.id)
    if not keys:
        await message.reply_text(context.t(NO_KEYS))
        return
    labels: list[str] | None = None
    if context.args:
        wanted = " ".join(context.args).strip()
        found = match_label([k.label for k in keys], wanted)
        if found is None:
            names = ", ".join(f"<code>{html.escape(k.label)}</code>" for k in keys)
            await message.reply_text(
                context.t(UNKNOWN_LABEL, label=html.escape(wanted[:64]), labels=names)
            )
            return
        labels = [found]
    count = 1 if labels else len(keys)
    task = asyncio.create_task(services.balances.check_user(user.id, labels))
    done, _ = await asyncio.wait({task}, timeout=QUICK_SECONDS)
    placeholder: Message | None = None
    if not done:
        text = context.t(CHECKING, n=count) if count > 1 else context.t(CHECKING_ONE)
        placeholder = await message.reply_text(text)
    reports = await task
    paces = await services.history.paces(user.id, [r.key.id for r in reports if r.ok])
    chunks = render(reports, fmt.View.make(context.lang, context.timezone, context.now()), paces)
    await deliver(message, chunks, placeholder)


def render(
    reports: Sequence[KeyReport], view: fmt.View, paces: Mapping[str, Pace] | None = None
) -> list[str]:
    """The reply as message-sized chunks: header, one block per key, totals, notes."""
    t = view.t
    paces = paces or {}
    blocks = [
        fmt.report_block(r, view)
        + (f"\n{pace_line(paces[r.key.id], view)}" if r.ok and r.key.id in paces else "")
        for r in reports
    ]
    footer: list[str] = []
    sums = fmt.totals(reports)
    if len(reports) > 1 and sums:
        parts = " · ".join(f"<b>{fmt.money(v, code, t)}</b>" for code, v in sorted(sums.items()))
        footer.append(t(TOTALS, sums=parts))
    if any(not r.fresh for r in reports):
        footer.append(t(THROTTLED))
    items = [t(HEADER), *blocks]
    if footer:
        items.append("\n".join(footer))
    return fmt.pack(items)


async def deliver(message: Message, chunks: Sequence[str], placeholder: Message | None) -> None:
    first, rest = chunks[0], chunks[1:]
    if placeholder is not None:
        await placeholder.edit_text(first)
    else:
        await message.reply_text(first)
    for chunk in rest:
        await message.get_bot().send_message(message.chat_id, chunk)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("balance", balance, filters=filters.UpdateType.MESSAGE))
