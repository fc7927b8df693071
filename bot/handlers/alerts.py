"""/alerts, the alert buttons, and the JobQueue jobs: sweep, digest and the sender.

The sender is the only code that turns outbox rows into Telegram messages. It renders
at send time (the user's current language and time zone), paces itself below
Telegram's limits (a global rate, one message per chat per second), and maps every
failure to the outbox: 429 → retry after `retry_after`, network → back-off, 403 →
pause the user until they talk to the bot again, 400 → give up on that row.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot import metrics
from bot.billing.errors import BillingError, ErrorKind
from bot.context import BotContext
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.i18n import N_, Translator, translator
from bot.services import alerts as rules
from bot.services.alerts import AlertService, BadSpec, KeyAlerts, Prefs
from bot.services.balances import KeyReport
from bot.services.keys import match_label
from bot.services.outbox import MAX_ATTEMPTS, OutboxItem, OutboxService

log = logging.getLogger(__name__)

PREFIX = "al"

# -- texts ----------------------------------------------------------------------------------

NO_KEYS = N_("You have no keys yet. Send /add to add one.")
TITLE = N_("🔔 <b>Alerts</b>")
LOW_SET = N_("low balance: below {ladder}")
LOW_OFF = N_("low balance: off")
FLAGS = N_("expiry {expiry} · revoked key {revoked} · runs-out forecast {forecast}")
MUTED_UNTIL = N_("🔕 muted until {when}")
LAST_FIGURE = N_("last reading: {figure}, {when}")
DELIVERY = N_("Delivery: instant alerts {instant} · daily digest {digest}")
USAGE = N_(
    "<code>/alerts LABEL 50</code> — alert below 50 (the key's currency)\n"
    "<code>/alerts LABEL 50 20 5</code> — a ladder, each step alerts once\n"
    "<code>/alerts LABEL 20%</code> — below 20 % of the total, if the provider reports one\n"
    "<code>/alerts LABEL off</code> — low-balance alerts off (<code>all</code> = every key)\n"
    "<code>/alerts digest on|off</code> — one message a day with every key's balance\n"
    "<code>/alerts instant on|off</code> — alerts as they happen"
)
UNKNOWN_LABEL = N_("No key named <b>{label}</b>. Your keys: {labels}")
BAD_INPUT = N_(
    "I could not read <code>{text}</code> as a threshold: use an amount such as "
    "<code>50</code> or <code>2.5</code>, or a share such as <code>20%</code> "
    "(at most 5 steps). Nothing was changed."
)
SET_OK = N_("🔔 Low-balance alerts for {labels}: below {ladder}.")
SET_PCT_NO_TOTAL = N_(
    "Note: {label}'s provider reports no total, so a percentage cannot trigger. "
    "Use an amount instead."
)
OFF_OK = N_("🔕 Low-balance alerts off for {labels}. Expiry and revoked-key warnings stay on.")
DIGEST_ON = N_("🗓 Daily digest on: one message a day (after 09:00 your time) with every key.")
DIGEST_OFF = N_("Daily digest off.")
INSTANT_ON = N_("Instant alerts on.")
INSTANT_OFF = N_("Instant alerts off: you will only get the daily digest, if it is on.")
ON, OFF = N_("on"), N_("off")
NOT_FOUND = N_("This key was not found. It may have been deleted.")
CHECKING = N_("Checking…")
BUSY = N_("A check of this key is running right now. Try again in a moment.")
TOPPED_UP = N_("💳 Thanks! Checked again:")
MUTED = N_("🔕 Muted until {when}.")
UNMUTED = N_("🔔 Alerts for this key are on again.")
PICK_THRESHOLD = N_(
    "Pick a low-balance threshold for <b>{label}</b>, or send "
    "<code>/alerts {label} 50 20 5</code> (amounts in the key's currency) or "
    "<code>/alerts {label} 20%</code>."
)
THRESHOLD_SET = N_("Threshold set.")

B_CHECK = N_("🔄 Check now")
B_TOPPED = N_("💳 I topped up")
B_MUTE = N_("🔕 Mute 24 h")
B_UNMUTE = N_("🔔 Unmute")
B_CHANGE = N_("⚙️ Change threshold")
B_OFF = N_("🚫 Low-balance off")
B_BACK = N_("« Back")

A_LOW = N_(
    "⚠️ <b>{label}</b> <code>{hint}</code> is running low: <b>{amount}</b> left, "
    "below your alert at {threshold}."
)
A_RECOVERED = N_(
    "✅ <b>{label}</b> <code>{hint}</code> is back above your alert: {amount} left. "
    "Top-up seen, alerts re-armed."
)
A_EXPIRES = N_("⏰ <b>{label}</b> <code>{hint}</code> expires on {date} ({left}).")
A_EXPIRED = N_("⛔ <b>{label}</b> <code>{hint}</code> has expired.")
A_EXPIRED_ON = N_("⛔ <b>{label}</b> <code>{hint}</code> expired on {date}.")
A_REVOKED = N_(
    "⛔ The provider rejected <b>{label}</b> <code>{hint}</code>: the key was revoked, "
    "deactivated, or is wrong."
)
A_STALE = N_(
    "❔ I can't read the balance of <b>{label}</b> <code>{hint}</code> since {since}. "
    "Last error: {reason}"
)
A_FORECAST = N_(
    "📉 At the pace of the last days, <b>{label}</b> <code>{hint}</code> runs out around "
    "{when}: {amount} left."
)
A_MEASURED = N_("<i>Measured {when}.</i>")
A_DIGEST = N_("🗓 <b>Daily balances</b> · {day}")
A_NO_READING = N_("no reading yet")
IN_DAYS = N_("in {n} days")
WITHIN_DAY = N_("within a day")


# -- small helpers --------------------------------------------------------------------------


def _alerts(context: BotContext) -> AlertService:
    service = context.services.alerts
    if service is None:
        raise RuntimeError("alert service not configured")
    return service


def _yes(on: bool) -> str:
    return "✓" if on else "✗"


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _when(value: Any, tz_name: str | None) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return html.escape(value[:32])
    if not isinstance(value, datetime):
        return "?"
    local = value.astimezone(fmt.zone(tz_name))
    return html.escape(local.strftime("%Y-%m-%d %H:%M %Z"))


def _amount(data: dict[str, Any], name: str, t: Translator) -> str:
    value = _dec(data.get(name))
    if value is None:
        return "?"
    return fmt.money(value, data.get("currency"), t, unit=str(data.get("unit") or ""))


def _spec(spec: str, data: dict[str, Any], t: Translator) -> str:
    if spec.endswith("%"):
        amount = _dec(data.get("threshold_amount"))
        shown = html.escape(spec)
        if amount is not None:
            money = fmt.money(amount, data.get("currency"), t, unit=str(data.get("unit") or ""))
            shown += f" ({money})"
        return shown
    value = _dec(spec)
    if value is None:
        return html.escape(spec)
    return fmt.money(value, data.get("currency"), t, unit=str(data.get("unit") or ""))


def _ladder(specs: tuple[str, ...] | list[str], last: dict[str, Any] | None, t: Translator) -> str:
    data = last or {}
    return " · ".join(_spec(s, {**data, "threshold_amount": None}, t) for s in specs)


def _button(t: Translator, text: str, action: str, *args: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(t(text), callback_data=callbacks.encode(PREFIX, action, *args))


# -- rendering (send time) ------------------------------------------------------------------


def render(item: OutboxItem, now: datetime) -> tuple[str, InlineKeyboardMarkup | None]:
    """The message for one outbox row, in the user's language and time zone, escaped."""
    t = translator(item.language or "en")
    tz = item.timezone
    p = item.payload
    if item.kind == rules.DIGEST:
        return _render_digest(p, t, tz), None
    label = html.escape(str(p.get("label", "?")))
    hint = html.escape(str(p.get("hint", "")))
    kind = item.kind
    lines: list[str] = []
    if kind == rules.LOW:
        threshold = _spec(str(p.get("threshold", "")), p, t)
        lines.append(
            t(A_LOW, label=label, hint=hint, amount=_amount(p, "remaining", t), threshold=threshold)
        )
    elif kind == rules.RECOVERED:
        lines.append(t(A_RECOVERED, label=label, hint=hint, amount=_amount(p, "remaining", t)))
    elif kind == rules.EXPIRES:
        left = t(WITHIN_DAY) if p.get("stage") == 2 else _days_left(p, t, now)
        date = _when(p.get("expires_at"), tz)
        lines.append(t(A_EXPIRES, label=label, hint=hint, date=date, left=left))
    elif kind == rules.EXPIRED:
        if p.get("expires_at"):
            lines.append(
                t(A_EXPIRED_ON, label=label, hint=hint, date=_when(p.get("expires_at"), tz))
            )
        else:
            lines.append(t(A_EXPIRED, label=label, hint=hint))
    elif kind == rules.REVOKED:
        lines.append(t(A_REVOKED, label=label, hint=hint))
    elif kind == rules.STALE:
        try:
            reason = fmt.error_sentence(ErrorKind(str(p.get("error"))), t)
        except ValueError:
            reason = fmt.error_sentence(ErrorKind.PROVIDER_ERROR, t)
        lines.append(
            t(A_STALE, label=label, hint=hint, since=_when(p.get("since"), tz), reason=reason)
        )
    elif kind == rules.FORECAST:
        lines.append(
            t(
                A_FORECAST,
                label=label,
                hint=hint,
                when=_when(p.get("runs_out_at"), tz),
                amount=_amount(p, "remaining", t),
            )
        )
    else:
        lines.append(f"<b>{label}</b> <code>{hint}</code>")
    measured = p.get("measured_at") or p.get("at")
    if measured:
        lines.append(t(A_MEASURED, when=_when(measured, tz)))
    return "\n".join(lines), _alert_buttons(item, t)


def _days_left(p: dict[str, Any], t: Translator, now: datetime) -> str:
    try:
        at = datetime.fromisoformat(str(p.get("expires_at")))
    except ValueError:
        return ""
    days = max(1, int((at - now).total_seconds() // 86400))
    return t(IN_DAYS, n=days)


def _alert_buttons(item: OutboxItem, t: Translator) -> InlineKeyboardMarkup | None:
    if item.key_id is None:
        return None
    kid = item.key_id
    if item.kind in (rules.LOW, rules.FORECAST, rules.RECOVERED):
        rows = [
            [_button(t, B_CHECK, "chk", kid), _button(t, B_TOPPED, "top", kid)],
            [_button(t, B_MUTE, "mute", kid), _button(t, B_CHANGE, "thr", kid)],
        ]
    else:
        rows = [[_button(t, B_CHECK, "chk", kid), _button(t, B_MUTE, "mute", kid)]]
    return InlineKeyboardMarkup(rows)


def _render_digest(p: dict[str, Any], t: Translator, tz: str) -> str:
    lines = [t(A_DIGEST, day=html.escape(str(p.get("day", ""))))]
    for entry in p.get("keys", []):
        label = html.escape(str(entry.get("label", "?")))
        hint = html.escape(str(entry.get("hint", "")))
        if entry.get("remaining") is not None:
            figure = _amount(entry, "remaining", t)
            when = _when(entry.get("measured_at"), tz)
            lines.append(f"• <b>{label}</b> <code>{hint}</code>: {figure} · {when}")
        else:
            lines.append(f"• <b>{label}</b> <code>{hint}</code>: {t(A_NO_READING)}")
    return "\n".join(lines)


# -- /alerts --------------------------------------------------------------------------------


def _key_lines(view: KeyAlerts, t: Translator, tz: str, now: datetime) -> list[str]:
    head = f"<b>{html.escape(view.label)}</b> <code>{html.escape(view.hint)}</code>"
    low = (
        t(LOW_SET, ladder=_ladder(view.thresholds, view.last, t)) if view.thresholds else t(LOW_OFF)
    )
    flags = t(
        FLAGS,
        expiry=_yes(view.expiry_on),
        revoked=_yes(view.revoked_on),
        forecast=_yes(view.forecast_on),
    )
    lines = [head, f"  {low}", f"  {flags}"]
    if _muted(view, now):
        lines.append("  " + t(MUTED_UNTIL, when=_when(view.muted_until, tz)))
    return lines


def _overview(views: list[KeyAlerts], prefs: Prefs, t: Translator, tz: str, now: datetime) -> str:
    lines = [t(TITLE), ""]
    for view in views:
        lines += _key_lines(view, t, tz, now)
    lines.append("")
    lines.append(
        t(DELIVERY, instant=t(ON if prefs.instant else OFF), digest=t(ON if prefs.digest else OFF))
    )
    lines.append("")
    lines.append(t(USAGE))
    return "\n".join(lines)


def _overview_markup(views: list[KeyAlerts], t: Translator) -> InlineKeyboardMarkup | None:
    rows = [
        [
            InlineKeyboardButton(
                f"⚙️ {v.label}", callback_data=callbacks.encode(PREFIX, "key", v.key_id)
            )
        ]
        for v in views
    ]
    return InlineKeyboardMarkup(rows) if rows else None


def _key_text(view: KeyAlerts, t: Translator, tz: str, now: datetime) -> str:
    lines = _key_lines(view, t, tz, now)
    last = view.last
    if last and last.get("remaining") is not None:
        figure = _amount(last, "remaining", t)
        lines.append("  " + t(LAST_FIGURE, figure=figure, when=_when(last.get("measured_at"), tz)))
    return "\n".join(lines)


def _muted(view: KeyAlerts, now: datetime) -> bool:
    return view.muted_until is not None and view.muted_until > now


def _key_markup(view: KeyAlerts, t: Translator, now: datetime) -> InlineKeyboardMarkup:
    muted = _muted(view, now)
    return InlineKeyboardMarkup(
        [
            [_button(t, B_CHECK, "chk", view.key_id), _button(t, B_CHANGE, "thr", view.key_id)],
            [
                _button(t, B_UNMUTE, "unm", view.key_id)
                if muted
                else _button(t, B_MUTE, "mute", view.key_id),
                _button(t, B_OFF, "off", view.key_id),
            ],
        ]
    )


async def alerts_command(update: Update, context: BotContext) -> None:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    service = _alerts(context)
    t = context.t
    args = [a for a in (context.args or []) if a]
    if (
        len(args) == 2
        and args[0].lower() in ("digest", "instant")
        and args[1].lower() in ("on", "off")
    ):
        on = args[1].lower() == "on"
        if args[0].lower() == "digest":
            await service.set_delivery(user.id, digest=on)
            await message.reply_text(t(DIGEST_ON if on else DIGEST_OFF))
        else:
            await service.set_delivery(user.id, instant=on)
            await message.reply_text(t(INSTANT_ON if on else INSTANT_OFF))
        return
    views, prefs = await service.overview(user.id)
    if not views:
        await message.reply_text(t(NO_KEYS))
        return
    if not args:
        text = _overview(views, prefs, t, context.timezone, context.now())
        await message.reply_text(text, reply_markup=_overview_markup(views, t))
        return
    target, rest = args[0], args[1:]
    if target.lower() == "all":
        chosen = views
    else:
        label = match_label([v.label for v in views], target)
        match = [v for v in views if v.label == label]
        if not match:
            names = ", ".join(f"<code>{html.escape(v.label)}</code>" for v in views)
            await message.reply_text(t(UNKNOWN_LABEL, label=html.escape(target[:64]), labels=names))
            return
        chosen = match[:1]
    if not rest:
        view = chosen[0]
        await message.reply_text(
            _key_text(view, t, context.timezone, context.now()),
            reply_markup=_key_markup(view, t, context.now()),
        )
        return
    ids = None if target.lower() == "all" else [v.key_id for v in chosen]
    labels = ", ".join(f"<b>{html.escape(v.label)}</b>" for v in chosen)
    if len(rest) == 1 and rest[0].lower() == "off":
        await service.turn_off(user.id, ids)
        await message.reply_text(t(OFF_OK, labels=labels))
        return
    try:
        specs = rules.parse_specs(rest)
    except BadSpec:
        await message.reply_text(t(BAD_INPUT, text=html.escape(" ".join(rest)[:64])))
        return
    await service.set_thresholds(user.id, ids, specs)
    lines = [
        t(
            SET_OK,
            labels=labels,
            ladder=_ladder(specs, chosen[0].last if len(chosen) == 1 else None, t),
        )
    ]
    if any(s.endswith("%") for s in specs):
        for v in chosen:
            if v.last is not None and v.last.get("total") is None:
                lines.append(t(SET_PCT_NO_TOTAL, label=f"<b>{html.escape(v.label)}</b>"))
    await message.reply_text("\n".join(lines))


# -- buttons --------------------------------------------------------------------------------


def _presets(view: KeyAlerts) -> list[str]:
    """A few round thresholds below the last reading, plus shares when a total is known."""
    last = view.last or {}
    remaining = _dec(last.get("remaining"))
    nice = [Decimal(n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)]
    if remaining is not None and remaining > 1:
        below = [n for n in nice if n < remaining][-3:]
        picks = [format(n, "f") for n in reversed(below)]
    else:
        picks = ["50", "20", "10", "5"]
    if last.get("total") is not None:
        picks += ["20%", "10%"]
    return picks


async def on_callback(update: Update, context: BotContext) -> None:
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    cb = callbacks.decode(query.data, PREFIX)
    t = context.t
    if cb is None:
        await query.answer()
        return
    key_id = cb.arg(0)
    service = _alerts(context)
    # Callback data is forgeable: every action re-loads the key with the presser's id.
    view = await service.get(user.id, key_id) if key_id else None
    if view is None:
        await query.answer(t(NOT_FOUND), show_alert=True)
        return
    tz = context.timezone
    action = cb.action
    if action == "key":
        await query.answer()
        await _show(
            query, _key_text(view, t, tz, context.now()), _key_markup(view, t, context.now())
        )
    elif action in ("chk", "top"):
        await query.answer(t(CHECKING))
        await _check(update, context, view, topped_up=action == "top")
    elif action == "mute":
        until = context.now() + rules.MUTE_FOR
        await service.mute(user.id, key_id, until)
        await query.answer(t(MUTED, when=_when(until, tz)), show_alert=False)
    elif action == "unm":
        await service.mute(user.id, key_id, None)
        await query.answer(t(UNMUTED))
        refreshed = await service.get(user.id, key_id)
        if refreshed is not None:
            now = context.now()
            await _show(query, _key_text(refreshed, t, tz, now), _key_markup(refreshed, t, now))
    elif action == "off":
        await service.turn_off(user.id, [key_id])
        await query.answer(t(OFF_OK, labels=view.label)[:200])
        refreshed = await service.get(user.id, key_id)
        if refreshed is not None:
            now = context.now()
            await _show(query, _key_text(refreshed, t, tz, now), _key_markup(refreshed, t, now))
    elif action == "thr":
        await query.answer()
        rows = [
            [_preset_button(view, spec) for spec in _presets(view)[i : i + 3]]
            for i in range(0, len(_presets(view)), 3)
        ]
        rows.append([_button(t, B_BACK, "key", key_id)])
        text = t(PICK_THRESHOLD, label=html.escape(view.label))
        await context.bot.send_message(user.id, text, reply_markup=InlineKeyboardMarkup(rows))
    elif action == "set":
        try:
            specs = rules.parse_specs([cb.arg(1)])
        except BadSpec:
            await query.answer(t(NOT_FOUND), show_alert=True)
            return
        await service.set_thresholds(user.id, [key_id], specs)
        await query.answer(t(THRESHOLD_SET))
        refreshed = await service.get(user.id, key_id)
        if refreshed is not None:
            now = context.now()
            await _show(query, _key_text(refreshed, t, tz, now), _key_markup(refreshed, t, now))
    else:
        await query.answer()


def _preset_button(view: KeyAlerts, spec: str) -> InlineKeyboardButton:
    last = view.last or {}
    shown = spec if spec.endswith("%") else fmt.money(Decimal(spec), last.get("currency"))
    return InlineKeyboardButton(
        html.unescape(shown), callback_data=callbacks.encode(PREFIX, "set", view.key_id, spec)
    )


async def _show(query: Any, text: str, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


async def _check(update: Update, context: BotContext, view: KeyAlerts, *, topped_up: bool) -> None:
    user = update.effective_user
    assert user is not None
    t = context.t
    key = await context.services.keys.get(user.id, view.key_id)
    if key is None:
        await context.bot.send_message(user.id, t(NOT_FOUND))
        return
    outcome = await _alerts(context).check_now(user.id, view.key_id)
    if outcome is None:
        await context.bot.send_message(user.id, t(BUSY))
        return
    if outcome.result is not None:
        report = KeyReport(key, result=outcome.result, checked_at=outcome.result.fetched_at)
    else:
        err = outcome.error
        kind = err.kind if isinstance(err, BillingError) else ErrorKind.PROVIDER_ERROR
        report = KeyReport(key, error=kind, checked_at=context.now())
    body = fmt.report_block(report, fmt.View.make(context.lang, context.timezone, context.now()))
    text = f"{t(TOPPED_UP)}\n{body}" if topped_up else body
    await context.bot.send_message(user.id, text)
    _kick(context)  # an event from this check (e.g. "recovered") is in the outbox


# -- jobs -----------------------------------------------------------------------------------


@dataclass
class Pacer:
    """Evenly spaced sends: at most `rate` per second, no bursts."""

    rate: float
    _next: float = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Sender:
    """Delivers outbox rows through the Bot. One per Application; never runs twice at once."""

    outbox: OutboxService
    concurrency: int = 8
    per_chat_gap: float = 1.05
    batch: int = 50
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last: dict[int, float] = field(default_factory=dict)
    _pacer: Pacer | None = None
    delivered: int = 0
    stopping: bool = False  # shutdown: finish the sends under way, start no more

    async def run(self, context: BotContext) -> None:
        if self._lock.locked():
            return  # the running pass loops until the queue is drained
        async with self._lock:
            if self._pacer is None or self._pacer.rate != self.outbox.send_rate:
                self._pacer = Pacer(self.outbox.send_rate)
            while not self.stopping:
                items = await self.outbox.claim(self.batch)
                if not items:
                    return
                await self._deliver(context, items)

    async def _deliver(self, context: BotContext, items: list[OutboxItem]) -> None:
        assert self._pacer is not None
        slots = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        for item in items:
            if self.stopping:  # hand the rest back: the next process sends them
                await self.outbox.retry_at(item.id, self.outbox.clock(), count=False)
                continue
            now = time.monotonic()
            ready = self._last.get(item.user_id, 0.0) + self.per_chat_gap
            if ready > now:  # one message per chat per second
                when = self.outbox.clock() + timedelta(seconds=ready - now)
                await self.outbox.retry_at(item.id, when, count=False)
                continue
            self._last[item.user_id] = now
            await self._pacer.wait()
            await slots.acquire()
            self._last[item.user_id] = time.monotonic()
            tasks.append(asyncio.create_task(self._send(context, item, slots)))
        await asyncio.gather(*tasks)
        if len(self._last) > 10_000:
            cutoff = time.monotonic() - 10
            self._last = {k: v for k, v in self._last.items() if v > cutoff}

    async def _send(self, context: BotContext, item: OutboxItem, slots: asyncio.Semaphore) -> None:
        try:
            text, markup = render(item, self.outbox.clock())
            await context.bot.send_message(item.user_id, text, reply_markup=markup)
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            await self.outbox.retry_at(item.id, self.outbox.clock() + timedelta(seconds=seconds))
            metrics.alert("failed")
        except Forbidden:
            log.info("user %s blocked the bot: alerts paused", item.user_id)
            await self.outbox.pause_user(item.user_id, item.id)
            metrics.alert("dropped")
        except BadRequest as exc:  # before NetworkError: BadRequest is a subclass
            log.warning("alert %s for user %s refused: %s", item.id, item.user_id, exc.message)
            await self.outbox.fail(item.id)
            metrics.alert("dropped")
        except (NetworkError, TelegramError, Exception) as exc:
            if item.attempts >= MAX_ATTEMPTS:
                log.error("alert %s for user %s dropped after retries", item.id, item.user_id)
                await self.outbox.fail(item.id)
                metrics.alert("dropped")
            else:
                backoff = min(300.0, 2.0 ** min(item.attempts, 9) / 2)
                log.info("alert %s: %s, retry in %.0f s", item.id, type(exc).__name__, backoff)
                metrics.alert("failed")
                await self.outbox.retry_at(
                    item.id, self.outbox.clock() + timedelta(seconds=backoff)
                )
        else:
            await self.outbox.mark_sent(item.id)
            self.delivered += 1
            metrics.alert("sent")
        finally:
            slots.release()


JOB_KWARGS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


async def sweep_job(context: BotContext) -> None:
    """Check due keys; a late or long sweep is never run on top of itself (lock + lease)."""
    services = context.bot_data.services
    if services is None or services.alerts is None:
        return
    started = time.monotonic()
    stats = await services.alerts.sweep()
    metrics.sweep_finished(time.monotonic() - started, services.clock().timestamp())
    if stats.events:
        metrics.alert("queued", stats.events)
        log.info("alerts sweep: %d keys checked, %d events", stats.checked, stats.events)
        _kick(context)


def _kick(context: BotContext) -> None:
    """Deliver new outbox rows now, without making the sweep wait for the sends."""
    sender = context.bot_data.sender
    if sender is not None:
        context.application.create_task(sender.run(context))


async def digest_job(context: BotContext) -> None:
    services = context.bot_data.services
    if services is None or services.alerts is None:
        return
    if await services.alerts.enqueue_digests():
        _kick(context)


def schedule(app: Application) -> None:  # type: ignore[type-arg]
    """Called from post_init once services exist: the sweep, the sender, the digest."""
    services = app.bot_data.services
    if services is None or services.outbox is None or app.job_queue is None:
        return
    interval = services.settings.alert_interval_seconds
    sender = app.bot_data.sender = Sender(services.outbox)
    jq = app.job_queue
    jq.run_repeating(
        sweep_job, interval=interval, first=min(interval, 5.0), name="alerts-sweep",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip
    jq.run_repeating(
        sender.run, interval=min(1.0, interval), first=0.5, name="alerts-send",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip
    jq.run_repeating(
        digest_job, interval=min(300.0, max(interval, 60.0)), first=30.0, name="alerts-digest",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip


def sender_for(app: Application) -> Sender | None:  # type: ignore[type-arg]
    return app.bot_data.sender  # type: ignore[no-any-return]


def stop(app: Application) -> None:  # type: ignore[type-arg]
    """Shutdown begins: the sweep and the sender finish what is under way, then stop."""
    services = app.bot_data.services
    if services is not None and services.alerts is not None:
        services.alerts.request_stop()
    sender = app.bot_data.sender
    if sender is not None:
        sender.stopping = True


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("alerts", alerts_command, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_callback, pattern=callbacks.pattern(PREFIX)))
