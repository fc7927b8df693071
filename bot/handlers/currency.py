"""/currency <ISO code|off>: /balance also shows its totals converted into one currency.

The per-currency totals stay (they are exact); the converted one is marked "≈" and names
the date of the ECB reference rates it used (services/fx.py). Without usable rates the
totals stay per currency and say so. Points, characters and other units are never money,
so they never reach the conversion (format.totals only sums money balances).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Mapping
from decimal import Decimal

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot.context import BotContext
from bot.handlers import format as fmt
from bot.i18n import N_, Translator
from bot.services.fx import ECB_CURRENCIES, FxService, Rates

log = logging.getLogger(__name__)

RATES_WAIT = 10.0  # seconds /balance waits for the rates (they are fetched at most daily)

T_CURRENT = N_("Totals in /balance are also converted to <b>{code}</b>.")
T_NONE = N_("No converted total is set: /balance shows totals per currency.")
T_USAGE = N_(
    "Send <code>/currency CODE</code> (for example <code>USD</code>, <code>CNY</code> or "
    "<code>EUR</code>) for one converted total in /balance, or <code>/currency off</code>. "
    "Available: {codes}."
)
T_SET = N_(
    "From now on /balance also shows the total in <b>{code}</b> (≈, converted with the "
    "European Central Bank's daily reference rates)."
)
T_OFF = N_("Converted totals are off: /balance shows totals per currency.")
T_UNKNOWN = N_("I can't convert to <code>{code}</code>. Available: {codes}.")

T_CONVERTED = N_("≈ <b>{amount}</b> in total (ECB reference rates of {date})")
T_NOT_CONVERTED = N_("not converted (no rate): {codes}")
T_NO_RATES = N_(
    "≈ total in {code}: exchange rates are unavailable right now, so totals stay per currency."
)

_CODE = re.compile(r"^[A-Za-z]{3}$")


def converted_line(
    sums: Mapping[str, Decimal], target: str, rates: Rates | None, t: Translator
) -> str | None:
    """The "≈ total" line under /balance's per-currency totals, or None if it adds nothing."""
    if not sums or set(sums) == {target}:
        return None
    if rates is None:
        return t(T_NO_RATES, code=html.escape(target))
    total = Decimal(0)
    missing: list[str] = []
    for code, value in sorted(sums.items()):
        converted = rates.convert(value, code, target)
        if converted is None:
            missing.append(code)
        else:
            total += converted
    if len(missing) == len(sums):
        return t(T_NO_RATES, code=html.escape(target))
    line = t(T_CONVERTED, amount=fmt.money(total, target, t), date=rates.day.isoformat())
    if missing:
        line += " · " + t(T_NOT_CONVERTED, codes=html.escape(", ".join(missing)))
    return line


async def rates_for_balance(fx: FxService) -> Rates | None:
    """Rates for /balance's total, never holding the reply up for long."""
    try:
        async with asyncio.timeout(RATES_WAIT):
            return await fx.rates()
    except Exception:
        log.warning("exchange rates unavailable for /balance", exc_info=True)
        return None


async def _codes(fx: FxService) -> str:
    rates = await fx.stored()
    codes = sorted({"EUR", *rates.per_euro}) if rates is not None else sorted(ECB_CURRENCIES)
    return ", ".join(codes)


async def currency_command(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    services = context.services
    args = [a for a in (context.args or []) if a]
    if not args:
        current = t(T_CURRENT, code=context.currency) if context.currency else t(T_NONE)
        codes = await _codes(services.fx)
        await message.reply_text(f"{current}\n{t(T_USAGE, codes=codes)}")
        return
    raw = args[0].strip()
    if len(args) == 1 and raw.lower() == "off":
        await services.users.set_currency(user.id, None)
        context.currency = None
        await message.reply_text(t(T_OFF))
        return
    code = raw.upper()
    if len(args) != 1 or not _CODE.match(raw) or not await services.fx.known(code):
        shown = html.escape(" ".join(args)[:16])
        await message.reply_text(t(T_UNKNOWN, code=shown, codes=await _codes(services.fx)))
        return
    await services.users.set_currency(user.id, code)
    context.currency = code
    await message.reply_text(t(T_SET, code=code))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(
        CommandHandler("currency", currency_command, filters=filters.UpdateType.MESSAGE)
    )
