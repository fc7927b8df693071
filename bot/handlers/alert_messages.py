"""What an alert says: the message for one outbox row, and its buttons.

`render` is handed to the sender (bot/delivery.py) by bot/app.py; it runs at send
time, so the text is in the user's current language and time zone. Every dynamic
value is escaped (parse_mode=HTML, docs/security.md §T10).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.alerts import rules, windows
from bot.alerts.outbox import OutboxItem
from bot.billing.errors import ErrorKind
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.handlers.history import button as history_button
from bot.i18n import N_, Translator, translator

PREFIX = "al"  # callback data of every alert button (handled in bot/handlers/alerts.py)

B_CHECK = N_("🔄 Check now")
B_TOPPED = N_("💳 I topped up")
B_MUTE = N_("🔕 Mute 24 h")
B_CHANGE = N_("⚙️ Change threshold")
B_TOP_UP = N_("💳 Top up")

A_LOW = N_(
    "⚠️ <b>{label}</b> · {provider} <code>{hint}</code> is running low: <b>{amount}</b> left, "
    "below your alert at {threshold}."
)
A_RECOVERED = N_(
    "✅ <b>{label}</b> · {provider} <code>{hint}</code> is back above your alert: {amount} left. "
    "Top-up seen, alerts re-armed."
)
A_EXPIRES = N_("⏰ <b>{label}</b> · {provider} <code>{hint}</code> expires on {date} ({left}).")
A_EXPIRED = N_("⛔ <b>{label}</b> · {provider} <code>{hint}</code> has expired.")
A_EXPIRED_ON = N_("⛔ <b>{label}</b> · {provider} <code>{hint}</code> expired on {date}.")
A_REVOKED = N_(
    "⛔ The provider rejected <b>{label}</b> · {provider} <code>{hint}</code>: the key was "
    "revoked, deactivated, or is wrong."
)
A_STALE = N_(
    "❔ I can't read the balance of <b>{label}</b> · {provider} <code>{hint}</code> since {since}. "
    "Last error: {reason}"
)
A_FORECAST = N_(
    "📉 At the pace of the last days, <b>{label}</b> · {provider} <code>{hint}</code> runs out "
    "around {when}: {amount} left."
)
A_WIN_LOW = N_("⚠️ <b>{label}</b> · {provider} · {window} window {pct} % used, resets {when}.")
A_WIN_LOW_NO_RESET = N_("⚠️ <b>{label}</b> · {provider} · {window} window {pct} % used.")
A_WIN_OUT = N_("⛔ <b>{label}</b> · {provider} · {window} window used up — resets {when}.")
A_WIN_OUT_NO_RESET = N_(
    "⛔ <b>{label}</b> · {provider} · {window} window used up; the provider gives no reset time."
)
A_WIN_REFILLED = N_("✅ <b>{label}</b> · {provider} · {window} window refilled: {pct} % used now.")
A_WIN_NEXT_RESET = N_("Next reset {when}.")
AT_IN = N_("{when} (in {left})")
W_USED_UP = N_("{name} used up")
W_MORE = N_("+{n} more")
A_MEASURED = N_("<i>Measured {when}.</i>")
A_DIGEST = N_("🗓 <b>Daily balances</b> · {day}")
A_NO_READING = N_("no reading yet")

# -- value helpers (shared with /alerts) ---------------------------------------------


def decimal_of(value: Any) -> Decimal | None:
    """A payload figure (stored as text) as Decimal; None when absent or not a number."""
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def local_time(value: Any, tz_name: str | None) -> str:
    """A datetime or ISO string in the user's zone, escaped; `?` when it is neither."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return html.escape(value[:32])
    if not isinstance(value, datetime):
        return "?"
    local = value.astimezone(fmt.zone(tz_name))
    return html.escape(local.strftime("%Y-%m-%d %H:%M %Z"))


def amount_text(data: dict[str, Any], name: str, t: Translator) -> str:
    value = decimal_of(data.get(name))
    if value is None:
        return "?"
    return fmt.money(value, data.get("currency"), t, unit=str(data.get("unit") or ""))


def spec_text(spec: str, data: dict[str, Any], t: Translator) -> str:
    """A threshold as every place words it (buttons, confirmation, /alerts, the alert):
    `¥20`, `$2.50`, `20%` (with its amount when known)."""
    if spec.endswith("%"):
        amount = decimal_of(data.get("threshold_amount"))
        shown = html.escape(spec)
        if amount is not None:
            money = fmt.money(amount, data.get("currency"), t, unit=str(data.get("unit") or ""))
            shown += f" ({money})"
        return shown
    value = decimal_of(spec)
    if value is None:
        return html.escape(spec)
    unit = str(data.get("unit") or "")
    return fmt.money(value, data.get("currency"), t, unit=unit, compact=True)


def window_figures(entries: Any, t: Translator, most: int = 4) -> str:
    """`5-hour 52 % · weekly 10 %` from stored windows (`windows.figure`), fullest first
    when there are more than `most`. HTML-safe."""
    if not isinstance(entries, list):
        return ""
    shown: list[tuple[Decimal, str]] = []
    for w in entries:
        if not isinstance(w, dict):
            continue
        name = fmt.window_name(str(w.get("window", "?"))[:32], t)
        pct = decimal_of(w.get("pct"))
        if w.get("state") == "exhausted":
            shown.append((Decimal(101), t(W_USED_UP, name=name)))
        elif pct is None or not pct.is_finite():
            shown.append((Decimal(-1), f"{name} ?"))
        else:
            shown.append((pct, f"{name} {fmt.whole_pct(pct)} %"))
    if len(shown) > most:
        rest = len(shown) - most
        top = sorted(shown, key=lambda p: p[0], reverse=True)[:most]
        return " · ".join(text for _, text in top) + " · " + t(W_MORE, n=rest)
    return " · ".join(text for _, text in shown)


def button(t: Translator, text: str, action: str, *args: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(t(text), callback_data=callbacks.encode(PREFIX, action, *args))


# -- rendering (send time) ------------------------------------------------------------------


def render(
    item: OutboxItem, now: datetime, providers: fmt.Providers
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The message for one outbox row, in the user's language and time zone, escaped.

    `providers` is the program's registry (app.post_init binds it: the sender calls
    `render(item, now)`), for the provider's name, own words and top-up page."""
    t = translator(item.language or "en")
    tz = item.timezone
    p = item.payload
    if item.kind == rules.DIGEST:
        return _render_digest(p, t, tz), None
    label = html.escape(str(p.get("label", "?")))
    hint = html.escape(str(p.get("hint", "")))
    provider_id = str(p.get("provider", ""))
    provider = html.escape(fmt.provider_title(providers, provider_id, t))
    who = {"label": label, "hint": hint, "provider": provider}
    kind = item.kind
    lines: list[str] = []
    if kind == rules.LOW:
        threshold = spec_text(str(p.get("threshold", "")), p, t)
        lines.append(
            t(
                A_LOW,
                **who,
                amount=amount_text(p, "remaining", t),
                threshold=threshold,
            )
        )
    elif kind == rules.RECOVERED:
        lines.append(t(A_RECOVERED, **who, amount=amount_text(p, "remaining", t)))
    elif kind == rules.EXPIRES:
        left = _days_left(p, t, now, tz)
        date = local_time(p.get("expires_at"), tz)
        lines.append(t(A_EXPIRES, **who, date=date, left=left))
    elif kind == rules.EXPIRED:
        if p.get("expires_at"):
            lines.append(t(A_EXPIRED_ON, **who, date=local_time(p.get("expires_at"), tz)))
        else:
            lines.append(t(A_EXPIRED, **who))
    elif kind == rules.REVOKED:
        lines.append(t(A_REVOKED, **who))
    elif kind == rules.STALE:
        try:
            kind = ErrorKind(str(p.get("error")))
        except ValueError:
            kind = ErrorKind.PROVIDER_ERROR
        reason = fmt.error_sentence(kind, t, providers.get(provider_id))
        lines.append(t(A_STALE, **who, since=local_time(p.get("since"), tz), reason=reason))
    elif kind == rules.FORECAST:
        lines.append(
            t(
                A_FORECAST,
                **who,
                when=local_time(p.get("runs_out_at"), tz),
                amount=amount_text(p, "remaining", t),
            )
        )
    elif kind in windows.KINDS:
        lines += _window_lines(kind, p, {"label": label, "provider": provider}, t, tz, now)
    else:
        lines.append(f"<b>{label}</b> <code>{hint}</code>")
    measured = p.get("measured_at") or p.get("at")
    if measured:
        lines.append(t(A_MEASURED, when=local_time(measured, tz)))
    return "\n".join(lines), _alert_buttons(item, t, fmt.billing_url(providers, provider_id))


def reset_when(value: Any, tz_name: str | None, t: Translator, now: datetime) -> str | None:
    """`14:20 (in 2 h 10 min)` in the user's zone at send time; None when unknown."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    when = fmt.clock_time(at, now, fmt.zone(tz_name), t)
    if at <= now:
        return when
    return t(AT_IN, when=when, left=fmt.duration((at - now).total_seconds(), t))


def window_pct(p: dict[str, Any]) -> str:
    value = decimal_of(p.get("pct"))
    return "?" if value is None or not value.is_finite() else fmt.whole_pct(value)


def _window_lines(
    kind: str, p: dict[str, Any], who: dict[str, str], t: Translator, tz: str, now: datetime
) -> list[str]:
    """ "kimi · Kimi Code · 5-hour window 85 % used, resets 14:20 (in 2 h 10 min)."."""
    names = {**who, "window": fmt.window_name(str(p.get("window", "?"))[:32], t)}
    when = reset_when(p.get("resets_at"), tz, t, now)
    if kind == windows.WINDOW_LOW:
        if when is None:
            return [t(A_WIN_LOW_NO_RESET, pct=window_pct(p), **names)]
        return [t(A_WIN_LOW, pct=window_pct(p), when=when, **names)]
    if kind == windows.WINDOW_OUT:
        if when is None:
            return [t(A_WIN_OUT_NO_RESET, **names)]
        return [t(A_WIN_OUT, when=when, **names)]
    lines = [t(A_WIN_REFILLED, pct=window_pct(p), **names)]
    if when is not None:
        lines.append(t(A_WIN_NEXT_RESET, when=when))
    return lines


def _days_left(p: dict[str, Any], t: Translator, now: datetime, tz: str) -> str:
    """`tomorrow`, `in 3 days`: calendar days in the user's zone, as /balance counts them."""
    try:
        at = datetime.fromisoformat(str(p.get("expires_at")))
    except ValueError:
        return ""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return fmt.relative_day(max(0, fmt.days_left(at, now, fmt.zone(tz))), t)


def _alert_buttons(item: OutboxItem, t: Translator, url: str | None) -> InlineKeyboardMarkup | None:
    """Only what still makes sense: a recovered key needs no "I topped up" nor Mute; a
    key that is low, running out or expiring gets "Top up" to its provider's page."""
    if item.key_id is None:
        return None
    kid = item.key_id
    if item.kind == rules.RECOVERED:
        # Only what applies once the balance is back (issue 12): no History here.
        rows = [[button(t, B_CHECK, "chk", kid), button(t, B_CHANGE, "thr", kid)]]
    elif item.kind in (rules.LOW, rules.FORECAST):
        topped = InlineKeyboardButton(
            t(B_TOPPED), callback_data=callbacks.encode(PREFIX, "top", kid), style="success"
        )
        rows = [
            [button(t, B_CHECK, "chk", kid), topped],
            [button(t, B_MUTE, "mute", kid), button(t, B_CHANGE, "thr", kid)],
            [history_button(kid, t)],
        ]
    else:
        rows = [[button(t, B_CHECK, "chk", kid), button(t, B_MUTE, "mute", kid)]]
    if url and item.kind in (rules.LOW, rules.FORECAST, rules.EXPIRES, rules.EXPIRED):
        rows.append([InlineKeyboardButton(t(B_TOP_UP), url=url)])
    return InlineKeyboardMarkup(rows)


def _render_digest(p: dict[str, Any], t: Translator, tz: str) -> str:
    lines = [t(A_DIGEST, day=html.escape(str(p.get("day", ""))))]
    for entry in p.get("keys", []):
        label = html.escape(str(entry.get("label", "?")))
        hint = html.escape(str(entry.get("hint", "")))
        figures = []
        if entry.get("remaining") is not None:
            figures.append(amount_text(entry, "remaining", t))
        if entry.get("windows"):  # a plan's windows: used share each
            figures.append(window_figures(entry.get("windows"), t))
        if figures:
            when = local_time(entry.get("measured_at"), tz)
            lines.append(f"• <b>{label}</b> <code>{hint}</code>: {' · '.join(figures)} · {when}")
        else:
            lines.append(f"• <b>{label}</b> <code>{hint}</code>: {t(A_NO_READING)}")
    return "\n".join(lines)
