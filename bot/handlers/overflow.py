"""What a user hears when they send faster than the bot can answer them.

The update processor (bot/updates.py) keeps at most a few updates per user waiting; the
rest are dropped, and this tells the user once per burst. It reads nothing from the
database (the bot may be busy exactly because of this user), so the language comes from
Telegram's client setting. A dropped message that looks like a key is still deleted:
the promise that key messages leave the chat holds even for messages never handled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.constants import ChatType

from bot.handlers.chat import delete_message
from bot.i18n import N_, resolve_language, translator
from bot.services.keyshape import looks_like_key

SLOW_DOWN = N_(
    "⏳ You sent many messages at once. I am still answering the earlier ones, so I "
    "skipped the rest: wait for my answers, then send again."
)


def teller(app: Any) -> Callable[[Update, bool], Awaitable[None]]:
    """The `on_overflow` of the update processor, bound to the Application's bot."""

    async def tell(update: Update, first: bool) -> None:
        chat, user, message = update.effective_chat, update.effective_user, update.message
        services = app.bot_data.services  # built before any update is processed
        providers = services.providers.values() if services is not None else ()
        if message is not None and looks_like_key(message.text or message.caption, providers):
            await delete_message(message)
        if not first or user is None:
            return
        t = translator(resolve_language(None, user.language_code))
        if update.callback_query is not None:
            await update.callback_query.answer(t(SLOW_DOWN)[:200])
        elif chat is not None and chat.type == ChatType.PRIVATE:
            await app.bot.send_message(chat.id, t(SLOW_DOWN))

    return tell
