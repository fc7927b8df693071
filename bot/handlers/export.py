"""/export [csv|json]: the user's stored readings as a file (sendDocument).

Private chats only (bot/handlers/guard.py), like /balance. Nothing is exported that
/forget erased: the rows come from the same tables /forget deletes. The file format is
in bot/services/export.py; this handler only picks it and sends the document.
"""

from __future__ import annotations

from telegram import InputFile, Update
from telegram.ext import Application, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import format as fmt
from bot.i18n import N_
from bot.services.export import FORMATS, to_csv, to_json

T_USAGE = N_("Send <code>/export</code> (CSV) or <code>/export json</code>.")
T_NOTHING = N_("Nothing to export yet: there are no stored readings of your keys.")
T_CAPTION = N_(
    "📄 {n} readings of {keys} key(s), times in UTC. No key material is in the file, not "
    "even a masked hint."
)


async def export_command(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    args = [a.lower() for a in (context.args or []) if a]
    kind = args[0] if args else "csv"
    if len(args) > 1 or kind not in FORMATS:
        await message.reply_text(t(T_USAGE))
        return
    rows = await context.services.history.export(user.id)
    if not rows:
        await message.reply_text(t(T_NOTHING))
        return
    now = context.now()
    body = to_csv(rows) if kind == "csv" else to_json(rows, now)
    day = fmt.local_date(now, fmt.zone(context.timezone))
    name = f"balance-history-{day}.{kind}"
    keys = len({row.label for row in rows})
    await message.reply_document(
        InputFile(body, filename=name),
        caption=t(T_CAPTION, n=len(rows), keys=keys),
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("export", export_command, filters=filters.UpdateType.MESSAGE))
