"""Texts about pace and dates that /balance, the /keys card and /history captions share.

"≈ $1.20/day · lasts ~9 days (until Dec 10)": shown only where services/history.py found a
pace by the forecast's rules; a key without one gets no line at all, never a guess.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from bot.handlers import format as fmt
from bot.i18n import N_, Translator
from bot.services.history import Pace

T_PACE = N_("≈ {amount}/day")
T_LASTS = N_("lasts ~{n} days (until {date})")
T_LASTS_ONE = N_("lasts ~1 day (until {date})")
T_LASTS_HOURS = N_("runs out within a day (around {time})")
T_DAY_MONTH = N_("{month} {day}")

MONTHS = (
    N_("Jan"),
    N_("Feb"),
    N_("Mar"),
    N_("Apr"),
    N_("May"),
    N_("Jun"),
    N_("Jul"),
    N_("Aug"),
    N_("Sep"),
    N_("Oct"),
    N_("Nov"),
    N_("Dec"),
)


def day_month(when: datetime, tz: ZoneInfo, t: Translator) -> str:
    """`Dec 10` / `12月10日`: short, in the user's time zone and language."""
    local = when.astimezone(tz)
    return t(T_DAY_MONTH, month=t(MONTHS[local.month - 1]), day=local.day)


def amount(value: Decimal, currency: str | None, unit: str | None, t: Translator) -> str:
    """Money with its symbol, or a count in its unit (points are never money)."""
    if unit and value >= 1:
        value = value.quantize(Decimal(1), rounding=ROUND_HALF_UP)  # whole points a day
    return fmt.money(value, currency, t, unit=unit or "")


def lasts(p: Pace, now: datetime, tz: ZoneInfo, t: Translator) -> str | None:
    """`lasts ~9 days (until Dec 10)`, or None when there is no run-out date."""
    if p.runs_out_at is None:
        return None
    left = p.runs_out_at - now
    if left.total_seconds() < 86400:
        return t(T_LASTS_HOURS, time=p.runs_out_at.astimezone(tz).strftime("%H:%M"))
    days = int(left.total_seconds() // 86400)
    date = day_month(p.runs_out_at, tz, t)
    return t(T_LASTS_ONE, date=date) if days == 1 else t(T_LASTS, n=days, date=date)


def pace_line(p: Pace, view: fmt.View) -> str:
    """`≈ $1.20/day · lasts ~9 days (until Dec 10)` (HTML-safe)."""
    t = view.t
    parts = [t(T_PACE, amount=amount(p.per_day, p.currency, p.unit, t))]
    until = lasts(p, view.now, view.tz, t)
    if until is not None:
        parts.append(until)
    return " · ".join(parts)
