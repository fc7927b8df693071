"""Rendering of balances, shared by /balance, /keys, /add's first check and alerts.

Honest numbers only: a figure the provider did not give is never shown as zero, and
spend is "spent", never "left". Every dynamic string (labels, provider text, currency
codes) goes through `html.escape`: replies use parse_mode=HTML (docs/security.md §T10).
Money stays Decimal end to end; dates are shown in the user's time zone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.billing.errors import ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers.base import Provider
from bot.i18n import N_, NP_, Translator, translator
from bot.services.balances import KeyReport, StoredStatus
from bot.services.keys import KeyView

#: The providers this program knows (built-in and declared in PROVIDERS_FILE): the one
#: registry the billing service was built with, `Services.providers`, passed in.
Providers = Mapping[str, Provider]

MAX_MESSAGE = 4096  # Telegram's limit, counted after entity parsing

SYMBOLS = {"USD": "$", "CNY": "¥"}

OK, WARN, BAD, UNKNOWN = "✅", "⚠️", "⛔", "❔"

LOW_FRACTION = Decimal("0.1")  # ≤ 10 % of the total left counts as low
SOON_DAYS = 3  # expiring within this many days counts as low

ERROR_SENTENCES: dict[ErrorKind, str] = {
    ErrorKind.KEY_REJECTED: N_("The provider rejected this key: revoked, wrong or disabled."),
    ErrorKind.WRONG_KEY_TYPE: N_("This kind of key can't read the balance; another key type can."),
    ErrorKind.NO_BALANCE_API: N_("This provider or site has no balance API for this key."),
    ErrorKind.RATE_LIMITED: N_("The provider is rate-limiting checks; try again in a minute."),
    ErrorKind.PROVIDER_ERROR: N_("The provider had an error; this is usually temporary."),
    ErrorKind.NETWORK: N_("Couldn't reach the provider (timeout or connection error)."),
    ErrorKind.MALFORMED: N_("The provider's answer made no sense, so no figure is shown."),
    ErrorKind.URL_REFUSED: N_("This key's base URL is not allowed (private or invalid address)."),
    ErrorKind.UNREADABLE: N_("Can't decrypt this key, please re-add it."),
    ErrorKind.PROVIDER_DOWN: N_("The provider is not answering; checks resume by themselves."),
}
T_DOWN_SINCE = N_("The provider has not been answering since {when}; checks resume by themselves.")

VALIDITY_HINTS: dict[str, str] = {
    "openai": N_("OpenAI shows credit only on its website; an admin key shows spend."),
}
VALIDITY_HINT = N_("This provider shows credit only on its website.")

T_LEFT = N_("{amount} left")
T_UNLIMITED = N_("unlimited")
T_USED_OF = N_("used {used} of {total}")
T_USED = N_("used {used}")
T_SPENT_MONTH = N_("{amount} spent this month")
T_SPENT_SINCE = N_("{amount} spent since {date}")
T_VALID = N_("valid — no balance API")
T_NO_FIGURES = N_("no figures from the provider")
T_EXHAUSTED = N_("quota used up")
T_EXPIRED_STATE = N_("expired")
T_ESTIMATE = N_("estimate from the starting balance you entered")
T_EXPIRES = N_("expires {date} · {when}")
T_EXPIRED = N_("expired {date} · {when}")
T_TODAY = N_("today")
T_TOMORROW = N_("tomorrow")
T_YESTERDAY = N_("yesterday")
T_IN_N_DAYS = NP_("in {n} day", "in {n} days")
T_DAYS_BEFORE = NP_("{n} day ago", "{n} days ago")
T_NO_EXPIRY = N_("no expiry")
T_EXPIRY_UNKNOWN = N_("expiry unknown")
T_LAST_KNOWN = N_("last known: {figure}, {age}")
T_CHECKED = N_("checked {age}")
T_WAITING = N_("⏳ no answer yet")
T_NOTHING_KNOWN = N_("nothing known yet")
T_JUST_NOW = N_("just now")
T_SECONDS_AGO = N_("{n} s ago")
T_MINUTES_AGO = N_("{n} min ago")
T_HOURS_AGO = N_("{n} h ago")
T_DAYS_AGO = N_("{n} d ago")
T_TOKENS = N_("{amount} tokens")
T_QUOTA = N_("{amount} quota units")
T_POINTS = N_("{amount} points")
T_CHARACTERS = N_("{amount} characters")
T_REQUESTS = N_("{amount} requests")
T_WINDOW_PCT = N_("{name}: {pct} % used")
T_WINDOW_OF = N_("{name}: used {used} of {limit}")
T_WINDOW_USED = N_("{name}: used {used}")
T_WINDOW_UNLIMITED = N_("{name}: unlimited")
T_WINDOW_EXHAUSTED = N_("{name}: used up")
T_WINDOW_UNKNOWN = N_("{name}: no figures")

#: Window ids adapters use for common periods → the words shown (translated).
WINDOW_NAMES: dict[str, str] = {
    "5h": N_("5-hour"),
    "daily": N_("daily"),
    "weekly": N_("weekly"),
    "monthly": N_("monthly"),
}
WINDOW_WARN_PCT = Decimal(90)  # a window this full counts as low (like ≤ 10 % money left)

#: Non-money units a balance can count in: never a currency symbol, never summed as money.
_COUNT_TEXTS = {
    Unit.POINTS.value: T_POINTS,
    Unit.CHARACTERS.value: T_CHARACTERS,
    Unit.REQUESTS.value: T_REQUESTS,
}


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def provider_title(providers: Providers, provider_id: str, t: Translator | None = None) -> str:
    """The provider's display name, translated where it has words (titles are msgids);
    the bare id for a provider this program does not know (any more)."""
    provider = providers.get(provider_id)
    if provider is None:
        return provider_id
    return t(provider.title) if t is not None else provider.title


def has_balance(providers: Providers, provider_id: str) -> bool:
    """Whether the provider's figure is a balance (something that can run low)."""
    provider = providers.get(provider_id)
    return provider is None or provider.kind is FigureKind.BALANCE


def billing_url(providers: Providers, provider_id: str) -> str | None:
    """Where the provider's users top up (`Provider.billing_url`), if it is known."""
    provider = providers.get(provider_id)
    return provider.billing_url if provider is not None else None


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_TAG = re.compile(r"<[^>]*>")


def plain(markup: str) -> str:
    """The text without tags and entities, for places that show no markup (toasts)."""
    return html.unescape(_TAG.sub("", markup))


def visible_len(markup: str) -> int:
    """Length as Telegram counts it: after tags and entities are parsed, in UTF-16 units."""
    return utf16_len(html.unescape(_TAG.sub("", markup)))


ECHO_CHARS = 64  # user input echoed back is cut here, with an ellipsis


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """User input echoed in a reply: at most `limit` characters (… when cut), escaped."""
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return html.escape(text, quote=False)


# -- numbers ------------------------------------------------------------------------------


#: From here on figures are shown as `1.00E+40`: fixed-point would need more digits than
#: the decimal context holds (quantize raised InvalidOperation from ~1e26) or than a chat
#: line can. Results are bounded well below (bot/billing/models.py); this keeps rendering
#: total for whatever else reaches it (old rows, alert payloads).
SCIENTIFIC_FROM = Decimal(10) ** 18


def number(value: Decimal) -> str:
    """2 decimals from 1 up; below 1, enough decimals for 2 significant digits (max 6).

    Total: any Decimal renders (NaN, infinities, 9E+999999, 1E-999999), never raises."""
    if value.is_nan() or value.is_infinite():
        return str(value)
    magnitude = abs(value)
    if magnitude >= SCIENTIFIC_FROM:
        return f"{value:.2E}"
    places = 2
    if 0 < magnitude < 1:
        exp = magnitude.adjusted()  # -1 for 0.5, -3 for 0.00123
        places = min(6, max(2, -exp + 1))
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if q == 0 and magnitude > 0:
        return ("-" if value < 0 else "") + "<" + f"{Decimal(1).scaleb(-places):f}"
    text = f"{q:,.{places}f}"
    if places > 2:  # 0.024700 -> 0.0247, but keep 2 decimals at least
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    return text


def money(
    value: Decimal,
    currency: str | None,
    t: Translator | None = None,
    *,
    unit: str = "",
    compact: bool = False,
) -> str:
    """`$12.30`, `¥110.00`, `12.30 EUR`; currency unknown → bare number (or tokens/quota).

    `compact` drops the decimals of a whole amount (`¥20`, `$5`): for amounts the user
    chose, such as alert thresholds. HTML-safe: the result goes straight into
    parse_mode=HTML text.
    """
    whole = compact and value.is_finite() and value == value.to_integral_value()
    text = html.escape(f"{value:,.0f}" if whole else number(value))
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    code = (currency or "").upper()
    if code in SYMBOLS:
        return f"{sign}{SYMBOLS[code]}{text}"
    if code:
        return f"{sign}{text} {html.escape(code)}"
    t = t or translator("en")
    if unit in _COUNT_TEXTS:
        return t(_COUNT_TEXTS[unit], amount=sign + html.escape(count(abs(value))))
    if unit == "tokens":
        return t(T_TOKENS, amount=sign + text)
    if unit == "quota":
        return t(T_QUOTA, amount=sign + text)
    if unit:
        return f"{sign}{html.escape(unit)}{text}"
    return sign + text


def count(value: Decimal) -> str:
    """Points, characters, requests: whole numbers without decimals (`12,345`)."""
    if value.is_finite() and abs(value) < SCIENTIFIC_FROM and value == value.to_integral_value():
        return f"{value:,.0f}"
    return number(value)


def result_unit(result: BalanceResult) -> str:
    extras = result.extras
    if result.unit is not None:
        return result.unit.value
    if result.currency:
        return ""
    symbol = extras.get("currency_symbol")
    if isinstance(symbol, str) and symbol:
        return symbol
    unit = extras.get("unit")
    return unit if unit in ("tokens", "quota") else ""


# -- time ---------------------------------------------------------------------------------


def age(when: datetime, now: datetime, t: Translator) -> str:
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 5:
        return t(T_JUST_NOW)
    if seconds < 60:
        return t(T_SECONDS_AGO, n=seconds)
    if seconds < 3600:
        return t(T_MINUTES_AGO, n=seconds // 60)
    if seconds < 86400:
        return t(T_HOURS_AGO, n=seconds // 3600)
    return t(T_DAYS_AGO, n=seconds // 86400)


def days_left(expires_at: datetime, now: datetime, tz: ZoneInfo) -> int:
    """Calendar days between today and the expiry date, both in the user's zone."""
    return (expires_at.astimezone(tz).date() - now.astimezone(tz).date()).days


def since(when: datetime, now: datetime, tz: ZoneInfo) -> str:
    """`14:02` today (in the user's zone), else `2026-12-01 14:02`."""
    local = when.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def local_date(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d")


def relative_day(days: int, t: Translator) -> str:
    """Calendar days from today, in words: `today`, `tomorrow`, `in 3 days`, `2 days ago`.

    The one wording of a relative date (/balance, the key card, expiry alerts); count
    the days with `days_left`, in the user's zone.
    """
    if days == 0:
        return t(T_TODAY)
    if days == 1:
        return t(T_TOMORROW)
    if days == -1:
        return t(T_YESTERDAY)
    return t.plural(T_IN_N_DAYS, days) if days > 0 else t.plural(T_DAYS_BEFORE, -days)


def expiry(result: BalanceResult, now: datetime, tz: ZoneInfo, t: Translator) -> str:
    """`expires 2026-12-06 · in 12 days`, `expired … · 3 days ago`, `no expiry`, or unknown."""
    if result.expires_at is None:
        return t(T_NO_EXPIRY) if result.never_expires else t(T_EXPIRY_UNKNOWN)
    date = local_date(result.expires_at, tz)
    days = days_left(result.expires_at, now, tz)
    if result.expires_at <= now:
        return t(T_EXPIRED, date=date, when=relative_day(min(days, 0), t))
    return t(T_EXPIRES, date=date, when=relative_day(max(days, 0), t))


# -- one result ---------------------------------------------------------------------------


def mark(result: BalanceResult, now: datetime) -> str:
    """✅ ok, ⚠️ low, ⛔ exhausted/expired, ❔ no figures."""
    if result.state in (KeyState.EXHAUSTED, KeyState.EXPIRED):
        return BAD
    if result.expires_at is not None and result.expires_at <= now:
        return BAD
    if any(w.state is WindowState.EXHAUSTED for w in result.windows):
        return BAD
    if result.kind is FigureKind.QUOTA and not result.windows:
        return UNKNOWN
    if result.kind is FigureKind.BALANCE:
        if result.remaining is None and not result.unlimited:
            return UNKNOWN
        if result.remaining is not None and result.remaining <= 0:
            return BAD
        if (
            result.remaining is not None
            and result.total is not None
            and result.total > 0
            and result.remaining <= result.total * LOW_FRACTION
        ):
            return WARN
    if any((w.percent_used or 0) >= WINDOW_WARN_PCT for w in result.windows):
        return WARN
    if result.expires_at is not None and (result.expires_at - now).days < SOON_DAYS:
        return WARN
    return OK


def error_mark(kind: ErrorKind) -> str:
    if kind in (ErrorKind.KEY_REJECTED, ErrorKind.UNREADABLE):
        return BAD
    if kind in (ErrorKind.WRONG_KEY_TYPE, ErrorKind.NO_BALANCE_API, ErrorKind.URL_REFUSED):
        return UNKNOWN
    return WARN


def explanation(provider: Provider | None, topic: object) -> str | None:
    """The provider's own words for an error kind or a result hint (an English msgid)."""
    text = provider.explanations.get(str(topic)) if provider is not None and topic else None
    return text if isinstance(text, str) else None


def error_sentence(kind: ErrorKind, t: Translator, provider: Provider | None = None) -> str:
    """What went wrong; the provider's own explanation when it has one for this kind."""
    own = explanation(provider, kind.value)
    return t(own or ERROR_SENTENCES.get(kind, ERROR_SENTENCES[ErrorKind.PROVIDER_ERROR]))


def headline(result: BalanceResult, now: datetime, tz: ZoneInfo, t: Translator) -> str:
    """The main figure: what is left, what was spent, or that the key merely works."""
    unit = result_unit(result)
    if result.kind is FigureKind.VALIDITY:
        return t(T_VALID)
    if result.kind is FigureKind.QUOTA:
        window = binding_window(result)
        return t(T_NO_FIGURES) if window is None else window_line(window, now, tz, t)
    if result.kind is FigureKind.SPEND:
        if result.used is None:
            return t(T_NO_FIGURES)
        amount = f"<b>{money(result.used, result.currency, t, unit=unit)}</b>"
        start = result.period_start
        if start is not None:
            local = start.astimezone(tz)
            this_month = now.astimezone(tz)
            if (local.year, local.month, local.day) != (this_month.year, this_month.month, 1):
                return t(T_SPENT_SINCE, amount=amount, date=local_date(start, tz))
        return t(T_SPENT_MONTH, amount=amount)
    if result.unlimited:
        return f"<b>{t(T_UNLIMITED)}</b>"
    if result.remaining is None:
        return t(T_NO_FIGURES)
    prefix = "≈" if result.estimate else ""
    amount = f"<b>{prefix}{money(result.remaining, result.currency, t, unit=unit)}</b>"
    return t(T_LEFT, amount=amount)


def short_figure(result: BalanceResult, t: Translator) -> str:
    """A one-phrase figure without markup, for "last known: …" and the /keys list."""
    unit = result_unit(result)
    if result.kind is FigureKind.VALIDITY:
        return t(T_VALID)
    if result.kind is FigureKind.QUOTA:
        window = binding_window(result)
        return t(T_NO_FIGURES) if window is None else window_figure(window, t)
    if result.kind is FigureKind.SPEND:
        if result.used is None:
            return t(T_NO_FIGURES)
        return t(T_SPENT_MONTH, amount=money(result.used, result.currency, t, unit=unit))
    if result.unlimited:
        return t(T_UNLIMITED)
    if result.remaining is None:
        return t(T_NO_FIGURES)
    return ("≈" if result.estimate else "") + money(result.remaining, result.currency, t, unit=unit)


def detail_lines(
    result: BalanceResult, now: datetime, tz: ZoneInfo, t: Translator, providers: Providers
) -> list[str]:
    """The figure lines under a key's title; `providers` gives the provider's own hints."""
    if result.kind is FigureKind.QUOTA and result.windows:
        lines = [window_line(w, now, tz, t) for w in result.windows]
    else:
        lines = [headline(result, now, tz, t)]
        if result.windows:
            lines += [window_line(w, now, tz, t) for w in result.windows]
    unit = result_unit(result)
    if result.kind is FigureKind.BALANCE and result.used is not None:
        used = money(result.used, result.currency, t, unit=unit)
        if result.total is not None:
            total = money(result.total, result.currency, t, unit=unit)
            lines.append(t(T_USED_OF, used=used, total=total))
        else:
            lines.append(t(T_USED, used=used))
    if result.kind is FigureKind.VALIDITY:
        own = explanation(providers.get(result.provider), result.extras.get("hint"))
        hint = own or VALIDITY_HINTS.get(result.provider, VALIDITY_HINT)
        lines.append(f"<i>{t(hint)}</i>")
    if result.state is KeyState.EXHAUSTED:
        lines.append(t(T_EXHAUSTED))
    elif result.state is KeyState.EXPIRED and result.expires_at is None:
        lines.append(t(T_EXPIRED_STATE))
    if result.expires_at is not None or result.never_expires:
        lines.append(expiry(result, now, tz, t))
    if result.estimate:
        lines.append(f"<i>{t(T_ESTIMATE)}</i>")
    return lines


# -- plan windows -------------------------------------------------------------------------
# One short line per window: "5-hour ▓▓▓▓░░░░ 52 % · resets 14:20, in 2 h 10 min".

BAR_CELLS = 8
BAR_FULL, BAR_EMPTY = "▓", "░"
#: Ahead of pace: used at least this many points more than the share of the window gone.
PACE_MARGIN = Decimal(10)

T_WINDOW_BAR = N_("{name} {bar} {pct} %")
T_WINDOW_BAR_UP = N_("{name} {bar} used up")
T_WINDOW_RESETS_AT = N_("resets {when}, in {left}")
T_WINDOW_RESET_PASSED = N_("reset {when}, figure is from before")
T_WINDOW_AHEAD = N_("⚡ only {pct} % of the time gone")
T_TOMORROW_AT = N_("tomorrow {time}")
T_IN_MINUTES = N_("{m} min")
T_IN_HOURS = N_("{h} h {m} min")
T_IN_HOURS_ONLY = N_("{h} h")
T_IN_DAYS = N_("{d} d {h} h")
T_IN_DAYS_ONLY = N_("{d} d")
WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


def window_name(window: Window | str, t: Translator) -> str:
    """The window's words ("5-hour", translated) or the provider's own name, escaped."""
    name = window if isinstance(window, str) else window.name
    known = WINDOW_NAMES.get(name)
    return t(known) if known is not None else html.escape(name)


def binding_window(result: BalanceResult) -> Window | None:
    """The window closest to its limit (exhausted first): the one that stops the key."""
    if not result.windows:
        return None

    def fullness(w: Window) -> Decimal:
        if w.state is WindowState.EXHAUSTED:
            return Decimal(101)
        return w.percent_used if w.percent_used is not None else Decimal(-1)

    return max(result.windows, key=fullness)


def window_figure(window: Window, t: Translator) -> str:
    """`5-hour: 52 % used` (or used/limit, unlimited, used up), without the reset time."""
    name = window_name(window, t)
    if window.state is WindowState.UNLIMITED:
        return t(T_WINDOW_UNLIMITED, name=name)
    if window.state is WindowState.EXHAUSTED:
        return t(T_WINDOW_EXHAUSTED, name=name)
    if window.used is not None and window.unit is not Unit.PERCENT:
        used = quantity(window.used, window, t)
        if window.limit is not None:
            return t(T_WINDOW_OF, name=name, used=used, limit=quantity(window.limit, window, t))
        return t(T_WINDOW_USED, name=name, used=used)
    pct = window.percent_used
    if pct is None:
        return t(T_WINDOW_UNKNOWN, name=name)
    return t(T_WINDOW_PCT, name=name, pct=whole_pct(pct))


def quantity(value: Decimal, window: Window, t: Translator) -> str:
    if window.unit is Unit.MONEY:
        return money(value, window.currency, t)
    if window.unit is Unit.TOKENS:
        return t(T_TOKENS, amount=html.escape(count(value)))
    return money(value, None, t, unit=window.unit.value)


def whole_pct(pct: Decimal) -> str:
    """Whole percent, rounded down: 99.9 % is not "100 %" until the window is full."""
    return str(int(max(Decimal(0), min(Decimal(100), pct))))


def bar(pct: Decimal) -> str:
    """`▓▓▓▓░░░░`: a started window shows one cell, a window not yet full never all."""
    cells = int(pct * BAR_CELLS / 100)
    if pct > 0:
        cells = max(1, cells)
    if pct < 100:
        cells = min(BAR_CELLS - 1, cells)
    cells = max(0, min(BAR_CELLS, cells))
    return BAR_FULL * cells + BAR_EMPTY * (BAR_CELLS - cells)


def duration(delta_seconds: float, t: Translator) -> str:
    """`2 h 10 min`, `45 min`, `3 d 4 h`: how long until something, rounded up to a minute."""
    minutes = max(1, int(-(-delta_seconds // 60)))
    if minutes < 60:
        return t(T_IN_MINUTES, m=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return t(T_IN_HOURS, h=hours, m=minutes) if minutes else t(T_IN_HOURS_ONLY, h=hours)
    days, hours = divmod(hours, 24)
    return t(T_IN_DAYS, d=days, h=hours) if hours else t(T_IN_DAYS_ONLY, d=days)


def clock_time(when: datetime, now: datetime, tz: ZoneInfo, t: Translator) -> str:
    """`14:20` today, `tomorrow 09:00`, `Fri 09:00` within a week, else the date."""
    local = when.astimezone(tz)
    days = (local.date() - now.astimezone(tz).date()).days
    hhmm = local.strftime("%H:%M")
    if days == 0:
        return hhmm
    if days == 1:
        return t(T_TOMORROW_AT, time=hhmm)
    if 1 < days < 7:
        return f"{t(WEEKDAYS[local.weekday()])} {hhmm}"
    return local.strftime("%Y-%m-%d %H:%M")


def reset_text(window: Window, now: datetime, tz: ZoneInfo, t: Translator) -> str | None:
    """`resets 14:20, in 2 h 10 min`; a reset already past says the figure predates it."""
    at = window.resets_at
    if at is None or window.state is WindowState.UNLIMITED:
        return None
    when = clock_time(at, now, tz, t)
    if at <= now:
        return t(T_WINDOW_RESET_PASSED, when=when)
    return t(T_WINDOW_RESETS_AT, when=when, left=duration((at - now).total_seconds(), t))


def time_gone_pct(window: Window, now: datetime) -> Decimal | None:
    """Share of the window's time already gone (0–100), or None without a known period."""
    if window.period is None or window.resets_at is None or window.resets_at <= now:
        return None
    left = (window.resets_at - now).total_seconds() / window.period.total_seconds()
    if left > 1:  # the provider's figures disagree: no pace rather than a wrong one
        return None
    return Decimal(str(round((1 - left) * 100, 1)))


def ahead_of_pace(window: Window, now: datetime) -> Decimal | None:
    """The share of time gone when usage runs clearly ahead of it, else None.

    Needs the window's length: without `period` nothing is claimed.
    """
    pct = window.percent_used
    gone = time_gone_pct(window, now)
    if pct is None or gone is None or window.state is not WindowState.OK or pct >= 100:
        return None
    return gone if pct >= gone + PACE_MARGIN else None


def window_line(window: Window, now: datetime, tz: ZoneInfo, t: Translator) -> str:
    """`5-hour ▓▓▓▓░░░░ 52 % · 96 requests left · resets 14:20, in 2 h 10 min`."""
    name = window_name(window, t)
    pct = window.percent_used
    if window.state is WindowState.UNLIMITED:
        return t(T_WINDOW_UNLIMITED, name=name)
    if window.state is WindowState.EXHAUSTED:
        parts = [t(T_WINDOW_BAR_UP, name=name, bar=bar(Decimal(100)))]
    elif pct is None:
        if window.used is None:
            parts = [t(T_WINDOW_UNKNOWN, name=name)]
        else:
            parts = [window_figure(window, t)]
    else:
        parts = [t(T_WINDOW_BAR, name=name, bar=bar(pct), pct=whole_pct(pct))]
        left = window.remaining
        if left is not None and window.unit is not Unit.PERCENT:
            parts.append(t(T_LEFT, amount=quantity(left, window, t)))
    reset = reset_text(window, now, tz, t)
    if reset is not None:
        parts.append(reset)
    gone = ahead_of_pace(window, now)
    if gone is not None:
        parts.append(t(T_WINDOW_AHEAD, pct=whole_pct(gone)))
    return " · ".join(parts)


# -- one key ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """Who the text is for: translator, time zone, "now" (fixed for tests), and the
    providers the program knows (their titles and own words)."""

    t: Translator
    tz: ZoneInfo
    now: datetime  # the program's clock, read once per reply
    providers: Providers

    @classmethod
    def make(cls, lang: str, tz_name: str | None, now: datetime, providers: Providers) -> View:
        return cls(translator(lang), zone(tz_name), now, providers)


def title_line(status: str, label: str, provider_id: str, v: View) -> str:
    title = html.escape(provider_title(v.providers, provider_id, v.t))
    return f"{status} <b>{html.escape(label)}</b> · {title}"


def report_block(report: KeyReport, v: View, *, dated: bool = False) -> str:
    """A few short lines for one key: title, figure(s), expiry or the failure.

    A stored (not fresh) figure always says when it was checked; `dated` says it for
    a fresh one too (the key card, which has no "as of" line).
    """
    key = report.key
    if report.result is not None:
        result = report.result
        lines = [title_line(mark(result, v.now), key.label, key.provider, v)]
        lines += detail_lines(result, v.now, v.tz, v.t, v.providers)
        if (dated or not report.fresh) and report.checked_at is not None:
            lines.append(f"<i>{v.t(T_CHECKED, age=age(report.checked_at, v.now, v.t))}</i>")
        return "\n".join(lines)
    kind = report.error or ErrorKind.PROVIDER_ERROR
    sentence = error_sentence(kind, v.t, v.providers.get(key.provider))
    if kind is ErrorKind.PROVIDER_DOWN and report.down_since is not None:
        sentence = v.t(T_DOWN_SINCE, when=since(report.down_since, v.now, v.tz))
    lines = [title_line(error_mark(kind), key.label, key.provider, v), sentence]
    if report.last_known is not None and report.last_known_at is not None:
        figure = short_figure(report.last_known, v.t)
        lines.append(v.t(T_LAST_KNOWN, figure=figure, age=age(report.last_known_at, v.now, v.t)))
    if (dated or not report.fresh) and report.checked_at is not None:
        lines.append(f"<i>{v.t(T_CHECKED, age=age(report.checked_at, v.now, v.t))}</i>")
    return "\n".join(lines)


def waiting_block(key: KeyView, status: StoredStatus | None, v: View) -> str:
    """A key whose provider has not answered yet: its last known figure, with its age."""
    lines = [title_line("⏳", key.label, key.provider, v), v.t(T_WAITING)]
    if status is not None and status.last_result is not None and status.last_ok_at is not None:
        figure = short_figure(status.last_result, v.t)
        lines.append(v.t(T_LAST_KNOWN, figure=figure, age=age(status.last_ok_at, v.now, v.t)))
    else:
        lines.append(v.t(T_NOTHING_KNOWN))
    return "\n".join(lines)


def totals(reports: Iterable[KeyReport]) -> dict[str, Decimal]:
    """Remaining per currency, over current BALANCE figures only: never mixes kinds or units."""
    sums: dict[str, Decimal] = {}
    for report in reports:
        r = report.result
        if (
            r is None
            or r.kind is not FigureKind.BALANCE
            or r.remaining is None
            or r.unlimited
            or not r.currency
            or r.unit is not None
        ):
            continue
        code = r.currency.upper()
        sums[code] = _SUMS.add(sums.get(code, Decimal(0)), r.remaining)
    return sums


#: Sums never raise: an absurd total becomes Infinity (rendered as such), not an error.
_SUMS = Context(traps=[InvalidOperation, DivisionByZero])


def pack(blocks: Sequence[str], limit: int | None = None, sep: str = "\n\n") -> list[str]:
    """Join blocks into as few messages as fit, splitting only between blocks."""
    limit = limit or MAX_MESSAGE
    chunks: list[str] = []
    current = ""
    for block in blocks:
        candidate = f"{current}{sep}{block}" if current else block
        if visible_len(candidate) <= limit:
            current = candidate
            continue
        chunks.append(current)
        current = block
    if current:
        chunks.append(current)
    return chunks
