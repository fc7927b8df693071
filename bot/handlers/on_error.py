"""The one error handler: log what failed (redacted, no update contents), apologise.

A reply Telegram would not take (429 past the retry budget, 5xx or connection errors
past the retries in bot/ratelimit.py, a user who blocked the bot) is not a failure of
what the user asked for — the key may well be saved. It is logged as "not delivered",
and no apology is sent: it would claim a failure that did not happen, and Telegram
would refuse it too.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot.context import BotContext
from bot.errors import Busy
from bot.i18n import N_, translator

log = logging.getLogger("bot.errors")

SORRY = N_("Something went wrong on my side. Please try again in a minute.")
BUSY = N_("⏳ I am very busy right now, so nothing was changed. Please try again in a minute.")


async def on_error(update: object, context: BotContext) -> None:
    error = context.error
    update_id = user_id = None
    if isinstance(update, Update):
        update_id = update.update_id
        user_id = update.effective_user.id if update.effective_user else None
    # Never serialise the update: its text may be a pasted key (docs/security.md §T4).
    undelivered = isinstance(error, (RetryAfter, Forbidden, NetworkError)) and not isinstance(
        error, BadRequest
    )
    if undelivered and isinstance(update, Update):
        log.warning(
            "reply to update %s (user %s) not delivered: Telegram answered %s",
            update_id,
            user_id,
            type(error).__name__,
        )
        return
    busy = isinstance(error, Busy)
    if busy:  # an expected overload, not a bug: no traceback
        log.warning("update %s (user %s): the database is busy", update_id, user_id)
    else:
        log.error(
            "error while handling update %s (user %s): %s",
            update_id,
            user_id,
            type(error).__name__,
            exc_info=error,
        )
    if isinstance(error, (Forbidden, NetworkError)) or not isinstance(update, Update):
        return
    chat = update.effective_chat
    if chat is None or chat.type != ChatType.PRIVATE:
        return
    text = translator(context.lang)(BUSY if busy else SORRY)
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=True)
        else:
            await context.bot.send_message(chat.id, text)
    except Exception:  # the apology itself failing must not loop back here
        log.warning("could not tell user %s about the error", user_id)
