"""/start and /help: what the bot does, how keys are protected, how to begin."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import add, balance, callbacks
from bot.handlers.chat import is_private
from bot.i18n import N_

PREFIX = "start"
B_ADD = N_("➕ Add a key")
B_BALANCE = N_("💰 Balance")
EXPIRED = N_("This button has expired.")

START = N_(
    "👋 <b>Balance bot</b> tells you how much credit is left on your LLM API keys "
    "and warns you before it runs out.\n\n"
    "🔐 Keys are encrypted at rest, bound to your account, and never shown again in "
    "full. The message that carries a key is deleted from this chat as soon as I read it.\n\n"
    "To begin, send /add and follow the buttons, then /balance."
)

HELP = N_(
    "<b>Commands</b>\n"
    "/add — add a key (guided), or <code>/add KEY [label] [provider=ID] [url=BASE_URL]</code>\n"
    "/balance — remaining credit on every key, or <code>/balance LABEL</code>\n"
    "/keys — your keys, with buttons to check, rename or delete\n"
    "/alerts — low-balance and expiry alerts\n"
    "/remove LABEL — delete a key\n"
    "/forget — delete everything the bot stores about you\n"
    "/lang en|zh — language · /tz ZONE — time zone\n"
    "/cancel — leave the current step\n\n"
    "Supported: OpenAI-compatible relays (one-api/new-api), OpenRouter, DeepSeek, Moonshot, "
    "SiliconFlow, StepFun, Novita, OpenAI and Anthropic admin keys."
)


#: Where your money goes (issue 16): one msgid per command, shown after HELP.
HELP_HISTORY = N_(
    "<b>History</b>\n"
    "/history [LABEL] [7d|30d|90d] — a chart of your balances over time (30 days by default)"
)
HELP_CURRENCY = N_("/currency CODE|off — one converted total in /balance (ECB reference rates)")
HELP_EXPORT = N_("/export [csv|json] — every stored reading as a file (no key material)")


async def start(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    t = context.t
    markup = None
    if is_private(update):  # keys are added and shown in a private chat only
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(t(B_ADD), callback_data=callbacks.encode(PREFIX, "add")),
                    InlineKeyboardButton(
                        t(B_BALANCE), callback_data=callbacks.encode(PREFIX, "bal")
                    ),
                ]
            ]
        )
    await update.effective_message.reply_text(t(START), reply_markup=markup)


async def on_button(update: Update, context: BotContext) -> None:
    """[➕ Add a key] starts the guided /add; [💰 Balance] answers as /balance does."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    cb = callbacks.decode(query.data, PREFIX)
    if cb is None or cb.action not in ("add", "bal") or not is_private(update):
        await query.answer(context.t(EXPIRED))
        return
    await query.answer()
    if cb.action == "add":
        await add.start_guided(update, context, user.id)
    else:
        await balance.show(update, context, user.id, user.id)


async def help_(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    t = context.t
    extra = "\n".join(t(text) for text in (HELP_HISTORY, HELP_CURRENCY, HELP_EXPORT))
    await update.effective_message.reply_text(f"{t(HELP)}\n\n{extra}")


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", start, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_button, pattern=callbacks.pattern(PREFIX)))
    app.add_handler(CommandHandler("help", help_, filters=filters.UpdateType.MESSAGE))
