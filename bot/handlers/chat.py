"""Small helpers the /add, account and fallback handlers share (no texts of their own)."""

from __future__ import annotations

import contextlib
import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.error import TelegramError

from bot.context import BotContext

log = logging.getLogger(__name__)


def is_private(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


async def delete_message(message: Message) -> bool:
    """Delete a user's message that carries (or may carry) a key. False if Telegram refused."""
    try:
        await message.delete()
    except TelegramError as exc:  # BadRequest "message can't be deleted", not admin, …
        log.info("could not delete message %s: %s", message.message_id, type(exc).__name__)
        return False
    return True


def private_link(context: BotContext, text: str, start: str = "") -> InlineKeyboardMarkup:
    """One URL button that opens the private chat with this bot."""
    url = f"https://t.me/{context.bot.username}"
    if start:
        url += f"?start={start}"
    return InlineKeyboardMarkup([[InlineKeyboardButton(text, url=url)]])


async def clear_keyboard(update: Update) -> None:
    """Remove the inline buttons of the pressed message, so they cannot be pressed twice."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    if isinstance(query.message, Message) and query.message.reply_markup is None:
        return  # nothing to remove (Telegram would answer "message is not modified")
    with contextlib.suppress(TelegramError):
        await query.edit_message_reply_markup(None)
