"""What nobody else handled: flow answers, stray keys, unknown commands, media, edits.

Registered last. Plain text in a private chat is routed here; if the user has an open
flow (a row in `flows`), the feature that owns its `kind` gets the message — features
call `on_flow_text(kind, handler)` to claim their kind. Otherwise the text is outside
any flow: a key-shaped text goes to the /add feature, which seals it, deletes the message
and offers to add it (`on_stray_key`); a key-shaped caption, edit or command argument is
deleted and the user pointed to /add; anything else gets a short hint. Nothing here ever
stores a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, MessageHandler, filters

from bot.context import BotContext
from bot.handlers.chat import delete_message, is_private, private_link
from bot.i18n import N_
from bot.services.flows import Flow
from bot.services.keyshape import looks_like_key

FlowTextHandler = Callable[[Update, BotContext, Flow], Awaitable[None]]
StrayKeyHandler = Callable[[Update, BotContext], Awaitable[None]]
_FLOW_HANDLERS: dict[str, FlowTextHandler] = {}
_STRAY_KEY: list[StrayKeyHandler] = []  # /add offers to add it (bot/handlers/add.py)

UNKNOWN_COMMAND = N_("I don't know that command. Send /help to see what I can do.")
HINT = N_("I didn't understand that. Send /help to see what I can do.")
NOT_TEXT = N_("I can only read text messages. Send /help to see what I can do.")
KEY_DELETED = N_(
    "🔐 That looks like an API key, so I deleted your message. "
    "To save a key, send /add and follow the steps."
)
KEY_NOT_DELETED = N_(
    "⚠️ That looks like an API key. I could not delete your message: please delete it "
    "yourself, and consider rotating the key. To save a key, send /add."
)
GROUP_KEY_DELETED = N_(
    "⚠️ Never post API keys in a group: everyone here can read them. I deleted the "
    "message; consider rotating the key anyway. Talk to me in private to add keys."
)
GROUP_KEY_NOT_DELETED = N_(
    "⚠️ Never post API keys in a group: everyone here can read them. Please delete that "
    "message now and rotate the key. Talk to me in private to add keys."
)
OPEN_PRIVATE = N_("Open a private chat")
EXPIRED = N_("This button has expired.")


def on_flow_text(kind: str, handler: FlowTextHandler) -> None:
    """Claim the text answers of flows of this kind (called from a feature's register)."""
    _FLOW_HANDLERS[kind] = handler


def _keyish(context: BotContext, text: str | None) -> bool:
    """Key-shaped, as the injected registry's providers know keys (bot/services/keyshape.py)."""
    return looks_like_key(text, context.providers.values())


def on_stray_key(handler: StrayKeyHandler) -> None:
    """Claim key-shaped private text outside any flow (the /add feature offers to add it).
    Unclaimed, such text is deleted and the user pointed to /add."""
    _STRAY_KEY[:] = [handler]


async def warn_key(update: Update, context: BotContext) -> None:
    """Delete a key-shaped message outside any flow and say so; never keep it."""
    message = update.effective_message
    assert message is not None
    deleted = await delete_message(message)
    await context.bot.send_message(
        message.chat_id, context.t(KEY_DELETED if deleted else KEY_NOT_DELETED)
    )


async def private_text(update: Update, context: BotContext) -> None:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    if message.text is not None and not message.text.startswith("/"):
        flow = await context.services.flows.get(user.id)
        handler = _FLOW_HANDLERS.get(flow.kind) if flow is not None else None
        if flow is not None and handler is not None:
            await handler(update, context, flow)
            return
    if _keyish(context, message.text or message.caption):
        if message.text is not None and _STRAY_KEY and not message.text.startswith("/"):
            await _STRAY_KEY[0](update, context)
            return
        await warn_key(update, context)
        return
    await message.reply_text(context.t(HINT))


async def unknown_command(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    if _keyish(context, message.text):
        await warn_key(update, context)
        return
    await message.reply_text(context.t(UNKNOWN_COMMAND))


async def not_text(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    if _keyish(context, message.caption):
        await warn_key(update, context)
        return
    await message.reply_text(context.t(NOT_TEXT))


async def edited(update: Update, context: BotContext) -> None:
    """An edit is never an answer to a flow step; a key edited into a message is removed."""
    message = update.effective_message
    if message is None or not _keyish(context, message.text or message.caption):
        return
    if is_private(update):
        await warn_key(update, context)
    else:
        await group_key(update, context)


async def group_text(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not _keyish(context, message.text or message.caption):
        return  # ordinary group chatter is none of our business
    await group_key(update, context)


async def group_key(update: Update, context: BotContext) -> None:
    """Deleting works only if the bot is a group admin; either way, nothing is stored."""
    message = update.effective_message
    assert message is not None
    deleted = await delete_message(message)
    await context.bot.send_message(
        message.chat_id,
        context.t(GROUP_KEY_DELETED if deleted else GROUP_KEY_NOT_DELETED),
        reply_markup=private_link(context, context.t(OPEN_PRIVATE)),
    )


async def stale_button(update: Update, context: BotContext) -> None:
    """A button no handler claims (old message, removed feature, forged data)."""
    query = update.callback_query
    assert query is not None
    await query.answer(context.t(EXPIRED))


def register(app: Application) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    new = filters.UpdateType.MESSAGE
    app.add_handler(MessageHandler(filters.UpdateType.EDITED, edited))
    app.add_handler(MessageHandler(private & new & filters.COMMAND, unknown_command))
    app.add_handler(MessageHandler(private & new & filters.TEXT, private_text))
    app.add_handler(MessageHandler(private & new, not_text))
    app.add_handler(
        MessageHandler(filters.ChatType.GROUPS & new & (filters.TEXT | filters.CAPTION), group_text)
    )
    app.add_handler(CallbackQueryHandler(stale_button))
