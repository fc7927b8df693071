"""/history [label] [7d|30d|90d]: remaining balance over time as a chart, in the chat.

Without a label: one chart per currency (or unit: points, characters) with a line per key
(at most bot.charts.MAX_LINES; the rest are named in the caption), and one chart of plan
window usage for keys that have windows. With a label: that key's chart(s). Each chart is
its own sendPhoto (no albums) with a caption in the user's language and time zone: spent
in the period, the average per day, and the run-out estimate. Top-ups are marked, the
user's alert thresholds drawn as lines, and the forecast continues as a dashed line to
zero where there is one. Too little history gets a text saying when a chart becomes
possible — never an empty picture. The "📈 History" button (`h:key:<key_id>`, on key
cards and alerts) opens the 30-day chart of one key.

Drawing happens in bot/charts.py, off the event loop; the numbers come from
services/history.py. Dynamic text in captions is HTML-escaped (docs/security.md §T10).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from telegram import InlineKeyboardButton, Message, Update
from telegram.constants import ChatAction
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.alerts.rules import threshold_amount
from bot.charts import MAX_LINES, Chart, ChartsBusy, Line
from bot.context import BotContext
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.handlers.pace import amount, day_month
from bot.i18n import N_, Translator
from bot.services.history import (
    DEFAULT_PERIOD,
    PERIODS,
    BalanceSeries,
    History,
    KeyInfo,
    WindowSeries,
)
from bot.services.keys import KeyView, split_label

PREFIX = "h"
_PERIOD_LIKE = re.compile(r"^\d+[dD]$")
MAX_CHARTS = 4  # photos per /history; more groups are named in the last caption
MAX_CAPTION = 1024  # Telegram's limit, counted after entity parsing

T_NO_KEYS = N_("You have no keys yet. Send /add to add one.")
T_UNKNOWN_LABEL = N_("No key named <b>{label}</b>. Your keys: {labels}")
T_USAGE = N_(
    "Send <code>/history</code> for every key, or <code>/history LABEL</code> for one; "
    "add <code>7d</code>, <code>30d</code> (the default) or <code>90d</code> for the period."
)
T_BUSY = N_("I'm drawing many charts right now. Try again in a minute.")
T_NOT_FOUND = N_("Key not found. It may have been deleted.")
T_BUTTON = N_("📈 History")

# The chart's own words.
T_TITLE_MONEY = N_("Remaining balance · {currency} · last {days} days")
T_TITLE_UNITS = N_("Remaining {unit} · last {days} days")
T_TITLE_WINDOWS = N_("Plan window usage · last {days} days")
T_Y_MONEY = N_("Remaining, {currency}")
T_Y_UNITS = N_("Remaining, {unit}")
T_Y_WINDOWS = N_("Used, %")
T_FORECAST = N_("forecast")
T_TOP_UP = N_("top-up")
T_THRESHOLD = N_("alert threshold")
T_MORE_LINES = N_("+{n} more not drawn: {labels}")
UNIT_WORDS = {
    "points": N_("points"),
    "characters": N_("characters"),
    "requests": N_("requests"),
    "tokens": N_("tokens"),
}

# Captions.
T_ROW = N_("<b>{label}</b>: {figures}")
T_SPENT = N_("spent {amount}")
T_AVERAGE = N_("avg {amount}/day")
T_RUNS_OUT = N_("runs out around {date}")
T_NO_RUN_OUT = N_("no run-out estimate yet")
T_TOP_UPS = N_("top-ups: {n}")
T_WINDOW_NOW = N_("now {pct} %, peak {peak} %")
T_TIMES_IN = N_("<i>Times in {zone}.</i>")
T_MORE_CHARTS = N_("Not drawn (one chart per currency, at most {n}): {names}")

# Too little history.
T_TOO_LITTLE = N_(
    "📈 Not enough history for a chart yet. A chart needs two readings at least an hour "
    "apart; I check every key on a schedule, and /balance adds a reading too."
)
T_WAIT_KEY = N_("<b>{label}</b>: {n} reading(s) so far — a chart is possible from about {when}.")
T_WAIT_NONE = N_("<b>{label}</b>: no readings yet — the first comes with the next check.")
T_WAIT_OLD = N_(
    "<b>{label}</b>: no readings in the last {days} days (the last one: {date}). "
    "Try a longer period, e.g. <code>/history {label} 90d</code>."
)
T_NO_FIGURES = N_(
    "<b>{label}</b> reports only spending or whether the key works, so there is no "
    "balance to chart."
)


def parse_args(labels: Sequence[str], args: Sequence[str]) -> tuple[str | None, str, str | None]:
    """(label or None, period, what went wrong or None) for `/history [label] [period]`.

    One label rule for every command (bot/services/keys.py): a label may contain spaces
    (`/history my work key 7d`). A last word of 7d, 30d or 90d is the period when the words
    before it name a key (or are none); otherwise the longest run of words naming a key
    wins, so a key stored as `backup-7d` answers `/history backup 7d` when there is no
    `backup`. The problem is "usage" (a key named, then words that are no period) or
    "label" (no key named).
    """
    words = [a for a in args if a]
    if words and words[-1].lower() in PERIODS:
        period = words[-1].lower()
        if len(words) == 1:
            return None, period, None
        found, rest = split_label(labels, words[:-1])
        if found is not None and not rest:
            return found, period, None
    if not words:
        return None, DEFAULT_PERIOD, None
    found, rest = split_label(labels, words)
    if found is not None and not rest:
        return found, DEFAULT_PERIOD, None
    last = words[-1].lower()
    if found is not None or (_PERIOD_LIKE.match(last) and last not in PERIODS):  # ds 14d
        return None, DEFAULT_PERIOD, "usage"
    return None, DEFAULT_PERIOD, "label"


# -- charts and captions ------------------------------------------------------------------------


def _f(value: Decimal) -> float:
    return float(value)


def _forecast(series: BalanceSeries, now: datetime, days: int) -> list[tuple[datetime, float]]:
    """The dashed line: to zero at the run-out time, cut off a quarter period ahead."""
    p = series.pace
    if p is None or p.runs_out_at is None or not series.points:
        return []
    horizon = now + max(timedelta(days=3), timedelta(days=days) / 4)
    if p.runs_out_at <= horizon:
        return [(p.runs_out_at, 0.0)]
    left = p.remaining - p.per_day * Decimal((horizon - now).total_seconds()) / 86400
    return [(horizon, max(0.0, _f(left)))]


def _unit_word(unit: str, t: Translator) -> str:
    return t(UNIT_WORDS[unit]) if unit in UNIT_WORDS else unit


def _money_name(series: BalanceSeries, t: Translator) -> str:
    if series.unit:
        return _unit_word(series.unit, t)
    return series.currency or "?"


def balance_chart(
    group: list[BalanceSeries], view: fmt.View, days: int, tz_name: str
) -> tuple[Chart, str]:
    t = view.t
    first = group[0]
    drawn, rest = group[:MAX_LINES], group[MAX_LINES:]
    if first.unit:
        unit = _unit_word(first.unit, t)
        title = t(T_TITLE_UNITS, unit=unit, days=days)
        y_label = t(T_Y_UNITS, unit=unit)
    else:
        code = first.currency or "?"
        symbol = fmt.SYMBOLS.get(code)
        title = t(T_TITLE_MONEY, currency=code, days=days)
        y_label = t(T_Y_MONEY, currency=symbol or code)
    lines = [
        Line(
            label=s.key.label,
            points=[(at, _f(v)) for at, v in s.points],
            top_ups=[(at, _f(level)) for at, _, level in s.top_ups],
            forecast=_forecast(s, view.now, days),
            thresholds=[_f(level) for level in s.thresholds],
        )
        for s in drawn
    ]
    more = t(T_MORE_LINES, n=len(rest), labels=", ".join(s.key.label for s in rest)) if rest else ""
    chart = Chart(
        title=title,
        y_label=y_label,
        lines=lines,
        tz=tz_name,
        forecast_label=t(T_FORECAST),
        top_up_label=t(T_TOP_UP),
        threshold_label=t(T_THRESHOLD),
        footnote=more,
        end=view.now,
    )
    rows = [_balance_row(s, view, days) for s in drawn]
    if rest:
        rows.append(html.escape(more))
    return chart, caption(title, rows, view, tz_name)


def _balance_row(s: BalanceSeries, view: fmt.View, days: int) -> str:
    t = view.t
    parts = [t(T_SPENT, amount=amount(s.spent, s.currency, s.unit, t))]
    if s.per_day is not None:
        parts.append(t(T_AVERAGE, amount=amount(s.per_day, s.currency, s.unit, t)))
    if s.pace is not None and s.pace.runs_out_at is not None:
        parts.append(t(T_RUNS_OUT, date=day_month(s.pace.runs_out_at, view.tz, t)))
    else:
        parts.append(t(T_NO_RUN_OUT))
    if s.top_ups:
        parts.append(t(T_TOP_UPS, n=len(s.top_ups)))
    return t(T_ROW, label=html.escape(s.key.label), figures=" · ".join(parts))


def window_chart(
    windows: list[WindowSeries], view: fmt.View, days: int, tz_name: str
) -> tuple[Chart, str]:
    t = view.t
    drawn, rest = windows[:MAX_LINES], windows[MAX_LINES:]
    title = t(T_TITLE_WINDOWS, days=days)

    def name(w: WindowSeries) -> str:
        return f"{w.key.label} · {html.unescape(fmt.window_name(w.latest, t))}"

    lines = [Line(label=name(w), points=[(at, _f(p)) for at, p in w.points]) for w in drawn]
    more = t(T_MORE_LINES, n=len(rest), labels=", ".join(name(w) for w in rest)) if rest else ""
    chart = Chart(
        title=title,
        y_label=t(T_Y_WINDOWS),
        lines=lines,
        tz=tz_name,
        percent=True,
        footnote=more,
        end=view.now,
    )
    rows = []
    for w in drawn:
        now_pct = w.points[-1][1].quantize(Decimal(1))
        peak = max(p for _, p in w.points).quantize(Decimal(1))
        figures = t(T_WINDOW_NOW, pct=now_pct, peak=peak)
        rows.append(t(T_ROW, label=html.escape(name(w)), figures=figures))
    if rest:
        rows.append(html.escape(more))
    return chart, caption(title, rows, view, tz_name)


def caption(title: str, rows: list[str], view: fmt.View, tz_name: str) -> str:
    """Title, one row per line drawn, the time zone; rows that do not fit are dropped."""
    t = view.t
    head = f"📈 <b>{html.escape(title)}</b>"
    tail = t(T_TIMES_IN, zone=html.escape(tz_name))
    text = head
    for row in rows:
        candidate = f"{text}\n{row}"
        if fmt.visible_len(f"{candidate}\n{tail}") > MAX_CAPTION - 16:
            text += "\n…"
            break
        text = candidate
    return f"{text}\n{tail}"


def charts_for(
    history: History, view: fmt.View, days: int, tz_name: str
) -> list[tuple[Chart, str]]:
    out = [balance_chart(g, view, days, tz_name) for g in history.groups().values()]
    if history.windows:
        out.append(window_chart(history.windows, view, days, tz_name))
    return out


def too_little(history: History, view: fmt.View, days: int, labelled: bool) -> str:
    t = view.t
    lines = [] if labelled and not history.waiting else [t(T_TOO_LITTLE)]
    for w in history.waiting[:8]:
        label = html.escape(w.key.label)
        if w.readings == 0 and w.last_at is not None and w.last_at < history.since:
            date = fmt.local_date(w.last_at, view.tz)
            lines.append(t(T_WAIT_OLD, label=label, days=days, date=date))
        elif w.readings == 0:
            lines.append(t(T_WAIT_NONE, label=label))
        else:
            when = w.possible_at.astimezone(view.tz).strftime("%H:%M")
            if w.possible_at.astimezone(view.tz).date() != view.now.astimezone(view.tz).date():
                when = f"{day_month(w.possible_at, view.tz, t)} {when}"
            lines.append(t(T_WAIT_KEY, label=label, n=w.readings, when=when))
    if labelled:
        for key in history.no_figures:
            lines.append(t(T_NO_FIGURES, label=html.escape(key.label)))
    return "\n".join(lines)


# -- handlers ---------------------------------------------------------------------------------


async def history_command(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    t = context.t
    keys = await context.services.keys.list(user.id)
    words = [a for a in (context.args or []) if a]
    if not keys:
        await message.reply_text(t(T_NO_KEYS))
        return
    label, period, problem = parse_args([k.label for k in keys], words)
    if problem == "usage":
        await message.reply_text(t(T_USAGE))
        return
    if problem == "label":
        names = ", ".join(f"<code>{html.escape(k.label)}</code>" for k in keys)
        typed = " ".join(words[:-1] if words[-1].lower() in PERIODS else words)
        await message.reply_text(t(T_UNKNOWN_LABEL, label=fmt.clip(typed), labels=names))
        return
    chosen = [k for k in keys if k.label == label] if label is not None else keys
    await send_history(context, message, user.id, chosen, period, labelled=label is not None)


async def send_history(
    context: BotContext,
    message: Message,
    user_id: int,
    keys: Sequence[KeyView],
    period: str,
    *,
    labelled: bool,
) -> None:
    services = context.services
    days = PERIODS[period]
    thresholds: dict[str, tuple[str, ...]] = {}
    if services.alerts is not None:
        views, _ = await services.alerts.overview(user_id)
        thresholds = {v.key_id: v.thresholds for v in views}
    history = await services.history.history(
        user_id,
        [KeyInfo(k.id, k.label, k.provider) for k in keys],
        days,
        interval=timedelta(seconds=services.settings.alert_interval_seconds),
        thresholds=thresholds,
        threshold_amount=threshold_amount,
    )
    view = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
    tz_name = view.tz.key
    charts = charts_for(history, view, days, tz_name)
    if not charts:
        await message.reply_text(too_little(history, view, days, labelled))
        return
    t = context.t
    extra = charts[MAX_CHARTS:]
    charts = charts[:MAX_CHARTS]
    await context.bot.send_chat_action(message.chat_id, ChatAction.UPLOAD_PHOTO)
    for i, (chart, text) in enumerate(charts):
        if extra and i == len(charts) - 1:
            names = ", ".join(html.escape(c.title) for c, _ in extra)
            note = t(T_MORE_CHARTS, n=MAX_CHARTS, names=names)
            if fmt.visible_len(f"{text}\n{note}") <= MAX_CAPTION:
                text = f"{text}\n{note}"
        try:
            png = await services.charts.render(chart)
        except ChartsBusy:
            await message.reply_text(t(T_BUSY))
            return
        await message.reply_photo(png, caption=text)


async def on_button(update: Update, context: BotContext) -> None:
    """`h:key:<key_id>`: the 30-day chart of one key, reloaded with the presser's id."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    cb = callbacks.decode(query.data, PREFIX)
    key = None
    if cb is not None and cb.action == "key" and len(cb.args) == 1:
        key = await context.services.keys.get(user.id, cb.arg(0))
    if key is None or not isinstance(query.message, Message):
        await query.answer(context.t(T_NOT_FOUND), show_alert=True)
        return
    await query.answer()
    await send_history(context, query.message, user.id, [key], DEFAULT_PERIOD, labelled=True)


def button(key_id: str, t: Translator) -> InlineKeyboardButton:
    """ "📈 History" for one key (key cards, alerts)."""
    return InlineKeyboardButton(t(T_BUTTON), callback_data=callbacks.encode(PREFIX, "key", key_id))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("history", history_command, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_button, pattern=callbacks.pattern(PREFIX)))
