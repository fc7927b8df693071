"""Runs before every other handler (group -1): who may use the bot, and in which language.

With ALLOWED_USER_IDS set, updates from anyone else get one polite refusal and stop
here: no database read, no provider request (docs/security.md §T12).
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from bot.context import BotContext
from bot.handlers import fallback
from bot.handlers.chat import private_link
from bot.i18n import N_, resolve_language, translator
from bot.services.keyshape import looks_like_key

NOT_ALLOWED = N_("Sorry, this is a private bot. Ask its owner to add your Telegram id.")
PRIVATE_ONLY = N_("🔐 Your keys and settings are managed in a private chat only.")
OPEN_PRIVATE = N_("Open a private chat")

#: Commands that show a user's keys or figures: never answered in a group, where every
#: member would read the reply. (/add, /remove, /forget, /lang, /tz handle groups themselves.)
PRIVATE_COMMANDS = frozenset({"balance", "keys", "alerts", "history", "currency", "export"})


def _command(update: Update) -> str | None:
    message = update.message
    if message is None or not message.text or not message.text.startswith("/"):
        return None
    return message.text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower()


async def guard(update: Update, context: BotContext) -> None:
    user = update.effective_user
    if user is None:
        raise ApplicationHandlerStop  # channel posts and the like: nothing for us
    settings = context.services.settings
    allowed = settings.allowed_user_ids
    if allowed and user.id not in allowed and user.id not in settings.admin_user_ids:
        t = translator(resolve_language(None, user.language_code))
        if update.callback_query is not None:
            await update.callback_query.answer(t(NOT_ALLOWED), show_alert=True)
        elif (
            update.effective_message is not None
            and update.effective_chat is not None
            and update.effective_chat.type == ChatType.PRIVATE
        ):
            await update.effective_message.reply_text(t(NOT_ALLOWED))
        raise ApplicationHandlerStop
    stored: str | None = None
    chat = update.effective_chat
    private = chat is not None and chat.type == ChatType.PRIVATE
    if update.callback_query is not None and not private:
        # Every button of ours that names a key, a setting or a flow lives in a private chat;
        # the bot puts only URL buttons into groups. A press from anywhere else is forged (or
        # replayed on a group message): answering it would show the presser's key card, alerts
        # or flow to the whole group. Ownership is still checked by each handler.
        t = translator(resolve_language(None, user.language_code))
        await update.callback_query.answer(t(PRIVATE_ONLY), show_alert=True)
        raise ApplicationHandlerStop
    command = _command(update)
    text = update.message.text if update.message is not None else None
    if command not in (None, "add") and looks_like_key(text, context.providers.values()):
        # A key pasted as a command argument (`/balance sk-…`): delete it, never echo it.
        context.lang = resolve_language(None, user.language_code)
        await (fallback.warn_key if private else fallback.group_key)(update, context)
        raise ApplicationHandlerStop
    if chat is not None and chat.type != ChatType.PRIVATE and command in PRIVATE_COMMANDS:
        t = translator(resolve_language(None, user.language_code))
        assert update.message is not None
        await update.message.reply_text(
            t(PRIVATE_ONLY), reply_markup=private_link(context, t(OPEN_PRIVATE))
        )
        raise ApplicationHandlerStop
    if chat is not None and chat.type == ChatType.PRIVATE:
        profile = await context.services.users.touch(user.id)
        stored = profile.language
        context.timezone = profile.timezone
        context.currency = profile.currency
    context.lang = resolve_language(stored, user.language_code)
    alerts = context.services.alerts
    if alerts is not None and chat is not None and chat.type == ChatType.PRIVATE:
        await alerts.seen(user.id, context.lang)  # resumes alerts paused by a 403


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(TypeHandler(Update, guard), group=-1)
