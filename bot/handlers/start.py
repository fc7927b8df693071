"""/start and /help: what the bot does, how keys are protected, how to begin."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot.context import BotContext
from bot.i18n import N_

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


async def start(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(context.t(START))


async def help_(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(context.t(HELP))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", start, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CommandHandler("help", help_, filters=filters.UpdateType.MESSAGE))
