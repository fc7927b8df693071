"""/alerts and the alert buttons: parse, call the alert preferences or a check, render.

What an alert message says lives in bot/handlers/alert_messages.py; sending it, in
bot/delivery.py; the rules and the sweep, in bot/alerts/.
"""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import datetime
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.alerts import rules
from bot.alerts.preferences import MUTE_FOR, AlertPreferences, KeyAlerts, Prefs
from bot.alerts.rules import BadSpec, parse_specs
from bot.alerts.sweep import ManualLimitReached
from bot.alerts.windows import BadRungs, parse_rungs
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import FigureKind
from bot.context import BotContext
from bot.handlers import callbacks
from bot.handlers import format as fmt
from bot.handlers.alert_messages import (
    B_CHANGE,
    B_CHECK,
    B_MUTE,
    PREFIX,
    amount_text,
    button,
    decimal_of,
    local_time,
    spec_text,
    window_figures,
)
from bot.i18n import N_, Translator
from bot.services.balances import KeyReport, stored_report
from bot.services.keys import split_label

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
BAD_PERCENT = N_(
    "<code>{text}</code> is out of range: a share must be more than 0 % and less than "
    "100 % of the total. Nothing was changed."
)
BAD_AMOUNT = N_(
    "<code>{text}</code> is out of range: an amount must be more than 0 and at most "
    "1,000,000,000. Nothing was changed."
)
TOO_MANY_STEPS = N_(
    "At most {max} steps, e.g. <code>/alerts LABEL 50 20 5</code>. Nothing was changed."
)
SPEC_PROBLEMS = {
    rules.PERCENT_RANGE: BAD_PERCENT,
    rules.AMOUNT_RANGE: BAD_AMOUNT,
    rules.TOO_MANY: TOO_MANY_STEPS,
}
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
LIMITED = N_(
    "<i>Many checks in a short time: showing the stored result. Try again in a minute.</i>"
)
TOPPED_UP = N_("💳 Thanks! Checked again:")
MUTED = N_("🔕 Muted until {when}.")
UNMUTED = N_("🔔 Alerts for this key are on again.")
PICK_THRESHOLD = N_(
    "Pick a low-balance threshold for <b>{label}</b>, or send "
    "<code>/alerts {label} 50 20 5</code> (amounts in the key's currency) or "
    "<code>/alerts {label} 20%</code>."
)
THRESHOLD_SET = N_("🔔 Alert below {threshold} set.")
NOW_LEFT = N_("Now {amount} left.")

WINDOWS_SET = N_("plan windows: alerts at {ladder} used, used up, refilled")
WINDOWS_OFF = N_("plan windows: alerts off")
WINDOWS_LAST = N_("windows: {figures}, {when}")
USAGE_WINDOW = N_(
    "<code>/alerts LABEL window 80% 95%</code> — plan windows (5-hour, weekly…): alert at "
    "these shares used, when one is used up and when it refills\n"
    "<code>/alerts LABEL window off</code> — no plan-window alerts"
)
WINDOW_BAD = N_(
    "I could not read <code>{text}</code> as window alerts: use shares of the window such as "
    "<code>80%</code> <code>95%</code> (above 0 and below 100 %, at most 5 steps), or "
    "<code>off</code>. Nothing was changed."
)
WINDOW_SET_OK = N_(
    "🔔 Plan-window alerts for {labels}: at {ladder} used, when a window is used up, and "
    "when it refills."
)
WINDOW_OFF_OK = N_("🔕 Plan-window alerts off for {labels}.")
WINDOW_NO_WINDOWS = N_(
    "Note: {label} has shown no plan windows so far; the setting applies once it does."
)

FLAGS_NO_BALANCE = N_("expiry {expiry} · revoked key {revoked}")
HOW_TITLE = N_("❓ <b>How to set alerts</b>")
B_HOW = N_("❓ How to set")
B_UNMUTE = N_("🔔 Unmute")
B_OFF = N_("🚫 Low-balance off")
B_BACK = N_("« Back")


KEYS_PREFIX = "k"  # the key card's callbacks (bot/handlers/keys.py)
FROM_CARD, FROM_OVERVIEW = "k", "o"  # where a key view was opened: its « Back goes there

# -- small helpers --------------------------------------------------------------------------


def _alerts(context: BotContext) -> AlertPreferences:
    service = context.services.alerts
    if service is None:
        raise RuntimeError("alert service not configured")
    return service


def _yes(on: bool) -> str:
    return "✓" if on else "✗"


def _window_ladder(rungs: tuple[str, ...] | list[str]) -> str:
    return " · ".join(f"{html.escape(r)} %" for r in rungs)


def window_key(view: KeyAlerts, providers: fmt.Providers) -> bool:
    """A key with plan windows: its last reading had some, or its provider is a plan."""
    if view.has_windows:
        return True
    provider = providers.get(view.provider)
    return provider is not None and provider.kind is FigureKind.QUOTA


def _window_setting(view: KeyAlerts, t: Translator) -> str:
    if not view.window_rungs:
        return t(WINDOWS_OFF)
    return t(WINDOWS_SET, ladder=_window_ladder(view.window_rungs))


def _ladder(specs: tuple[str, ...] | list[str], last: dict[str, Any] | None, t: Translator) -> str:
    data = last or {}
    return " · ".join(spec_text(s, {**data, "threshold_amount": None}, t) for s in specs)


# -- /alerts --------------------------------------------------------------------------------


def _key_lines(
    view: KeyAlerts, t: Translator, tz: str, now: datetime, providers: fmt.Providers
) -> list[str]:
    """A key's alert settings; only the rules that can apply to its kind of figure
    (a validity-only key has no balance to fall low or run out)."""
    title = html.escape(fmt.provider_title(providers, view.provider, t))
    head = f"<b>{html.escape(view.label)}</b> · {title} <code>{html.escape(view.hint)}</code>"
    lines = [head]
    if fmt.has_balance(providers, view.provider):
        low = (
            t(LOW_SET, ladder=_ladder(view.thresholds, view.last, t))
            if view.thresholds
            else t(LOW_OFF)
        )
        flags = t(
            FLAGS,
            expiry=_yes(view.expiry_on),
            revoked=_yes(view.revoked_on),
            forecast=_yes(view.forecast_on),
        )
        lines += [f"  {low}", f"  {flags}"]
    else:
        lines.append(
            "  " + t(FLAGS_NO_BALANCE, expiry=_yes(view.expiry_on), revoked=_yes(view.revoked_on))
        )
    if window_key(view, providers):
        lines.append(f"  {_window_setting(view, t)}")
    if _muted(view, now):
        lines.append("  " + t(MUTED_UNTIL, when=local_time(view.muted_until, tz)))
    return lines


def _overview(
    views: list[KeyAlerts],
    prefs: Prefs,
    t: Translator,
    tz: str,
    now: datetime,
    providers: fmt.Providers,
) -> str:
    lines = [t(TITLE), ""]
    for view in views:
        lines += _key_lines(view, t, tz, now, providers)
    lines.append("")
    lines.append(
        t(DELIVERY, instant=t(ON if prefs.instant else OFF), digest=t(ON if prefs.digest else OFF))
    )
    return "\n".join(lines)


def _overview_markup(views: list[KeyAlerts], t: Translator) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                f"⚙️ {v.label}",
                callback_data=callbacks.encode(PREFIX, "key", v.key_id, FROM_OVERVIEW),
            )
        ]
        for v in views
    ]
    rows.append([button(t, B_HOW, "how")])
    return InlineKeyboardMarkup(rows)


def _key_text(
    view: KeyAlerts, t: Translator, tz: str, now: datetime, providers: fmt.Providers
) -> str:
    lines = _key_lines(view, t, tz, now, providers)
    last = view.last
    if last and last.get("remaining") is not None:
        figure = amount_text(last, "remaining", t)
        lines.append(
            "  " + t(LAST_FIGURE, figure=figure, when=local_time(last.get("measured_at"), tz))
        )
    if last and last.get("windows"):
        figures = window_figures(last.get("windows"), t)
        when = local_time(last.get("measured_at"), tz)
        lines.append("  " + t(WINDOWS_LAST, figures=figures, when=when))
    return "\n".join(lines)


def _muted(view: KeyAlerts, now: datetime) -> bool:
    return view.muted_until is not None and view.muted_until > now


def _key_markup(
    view: KeyAlerts,
    t: Translator,
    now: datetime,
    providers: fmt.Providers,
    back: str | None = None,
) -> InlineKeyboardMarkup:
    """The key view's buttons; `back` (callback data) returns to where it was opened."""
    muted = _muted(view, now)
    mute = (
        button(t, B_UNMUTE, "unm", view.key_id) if muted else button(t, B_MUTE, "mute", view.key_id)
    )
    if fmt.has_balance(providers, view.provider):
        rows = [
            [button(t, B_CHECK, "chk", view.key_id), button(t, B_CHANGE, "thr", view.key_id)],
            [mute, button(t, B_OFF, "off", view.key_id)],
        ]
    else:
        rows = [[button(t, B_CHECK, "chk", view.key_id), mute]]
    if back is not None:
        rows.append([InlineKeyboardButton(t(B_BACK), callback_data=back)])
    return InlineKeyboardMarkup(rows)


def _back_of(message: object) -> str | None:
    """The « Back of the pressed key view (to the key card or the overview), if any."""
    for data in _callback_data(message):
        if data.startswith(f"{KEYS_PREFIX}:open:") or data == f"{PREFIX}:all":
            return data
    return None


def _callback_data(message: object) -> list[str]:
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return []
    return [str(b.callback_data) for row in markup.inline_keyboard for b in row if b.callback_data]


def _is_key_view(message: object, key_id: str) -> bool:
    """A key view (from /alerts) rather than an alert: only it has "Low-balance off"."""
    return callbacks.encode(PREFIX, "off", key_id) in _callback_data(message)


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
    views = await _with_readings(context, user.id, views)
    if not views:
        await message.reply_text(t(NO_KEYS))
        return
    if not args:
        text = _overview(views, prefs, t, context.timezone, context.now(), context.providers)
        await message.reply_text(text, reply_markup=_overview_markup(views, t))
        return
    every = args[0].lower() == "all"
    if every:
        chosen, rest = views, args[1:]
    else:
        # One label rule for every command (bot/services/keys.py): spaces allowed.
        label, rest = split_label([v.label for v in views], args)
        chosen = [v for v in views if v.label == label][:1]
        if not chosen:
            names = ", ".join(f"<code>{html.escape(v.label)}</code>" for v in views)
            typed = " ".join(_label_words(args))
            await message.reply_text(t(UNKNOWN_LABEL, label=fmt.clip(typed), labels=names))
            return
    if not rest:
        view = chosen[0]
        await message.reply_text(
            _key_text(view, t, context.timezone, context.now(), context.providers),
            reply_markup=_key_markup(view, t, context.now(), context.providers),
        )
        return
    ids = None if every else [v.key_id for v in chosen]
    labels = ", ".join(f"<b>{html.escape(v.label)}</b>" for v in chosen)
    if rest[0].lower() == "window":
        await _window_command(
            message, service, user.id, ids, chosen, rest[1:], t, context.providers
        )
        return
    if len(rest) == 1 and rest[0].lower() == "off":
        await service.turn_off(user.id, ids)
        await message.reply_text(t(OFF_OK, labels=labels))
        return
    try:
        specs = parse_specs(rest)
    except BadSpec as exc:
        why = SPEC_PROBLEMS.get(exc.problem, BAD_INPUT)
        await message.reply_text(t(why, text=fmt.clip(exc.token), max=rules.MAX_RUNGS))
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


async def _window_command(
    message: Any,
    service: AlertPreferences,
    owner_id: int,
    ids: list[str] | None,
    chosen: list[KeyAlerts],
    rest: list[str],
    t: Translator,
    providers: fmt.Providers,
) -> None:
    """`/alerts <label|all> window <N>% [<M>%…]` and `/alerts <label|all> window off`."""
    labels = ", ".join(f"<b>{html.escape(v.label)}</b>" for v in chosen)
    if len(rest) == 1 and rest[0].lower() == "off":
        await service.set_window_rungs(owner_id, ids, [])
        await message.reply_text(t(WINDOW_OFF_OK, labels=labels))
        return
    try:
        rungs = parse_rungs(rest)
    except BadRungs:
        shown = html.escape(" ".join(["window", *rest])[:64])
        await message.reply_text(t(WINDOW_BAD, text=shown))
        return
    await service.set_window_rungs(owner_id, ids, rungs)
    lines = [t(WINDOW_SET_OK, labels=labels, ladder=_window_ladder(rungs))]
    if ids is not None:
        for v in chosen:
            if not window_key(v, providers):
                lines.append(t(WINDOW_NO_WINDOWS, label=f"<b>{html.escape(v.label)}</b>"))
    await message.reply_text("\n".join(lines))


def _label_words(args: list[str]) -> list[str]:
    """The words before the first threshold-like one: what was meant as a label."""
    words: list[str] = []
    for word in args:
        if word.lower() in ("off", "window") or word == "%":
            break
        try:
            rules.parse_spec(word)
        except BadSpec as exc:
            if exc.problem == rules.UNREADABLE:
                words.append(word)
                continue
        break
    return words or args[:1]


# -- buttons --------------------------------------------------------------------------------


async def _readings(
    context: BotContext, owner_id: int, key_ids: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Each key's latest money figure as alert payloads keep it, from any check (/add,
    /balance, the sweep); keys without one (never read, or no money figure) are absent."""
    statuses = await context.services.balances.statuses(owner_id, key_ids)
    return {
        key_id: rules.reading(st.last_result)
        for key_id, st in statuses.items()
        if st.last_result is not None and rules.money_value(st.last_result) is not None
    }


async def _reading(context: BotContext, owner_id: int, key_id: str) -> dict[str, Any] | None:
    return (await _readings(context, owner_id, [key_id])).get(key_id)


async def _with_readings(
    context: BotContext, owner_id: int, views: list[KeyAlerts]
) -> list[KeyAlerts]:
    """The views with the latest reading (its currency, its figure) where one is stored:
    the alert state's own `last` is only as new as the last sweep."""
    found = await _readings(context, owner_id, [v.key_id for v in views])
    return [replace(v, last=found[v.key_id]) if v.key_id in found else v for v in views]


async def _get(context: BotContext, owner_id: int, key_id: str) -> KeyAlerts | None:
    view = await _alerts(context).get(owner_id, key_id) if key_id else None
    return None if view is None else (await _with_readings(context, owner_id, [view]))[0]


async def on_callback(update: Update, context: BotContext) -> None:
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    cb = callbacks.decode(query.data, PREFIX)
    t = context.t
    if cb is None:
        await query.answer()
        return
    tz = context.timezone
    providers = context.providers
    service = _alerts(context)
    if cb.action in ("all", "how"):  # the overview and its help: no key involved
        await query.answer()
        back = InlineKeyboardMarkup([[button(t, B_BACK, "all")]])
        views, prefs = await service.overview(user.id)
        if cb.action == "how":
            usage = [t(HOW_TITLE), "", t(USAGE)]
            if any(window_key(v, context.providers) for v in views):
                usage.append(t(USAGE_WINDOW))
            await _show(query, "\n".join(usage), back)
            return
        views = await _with_readings(context, user.id, views)
        if not views:
            await _show(query, t(NO_KEYS), None)
            return
        text = _overview(views, prefs, t, tz, context.now(), context.providers)
        await _show(query, text, _overview_markup(views, t))
        return
    key_id = cb.arg(0)
    # Callback data is forgeable: every action re-loads the key with the presser's id.
    view = await _get(context, user.id, key_id)
    if view is None:
        await query.answer(t(NOT_FOUND), show_alert=True)
        return
    action = cb.action
    message = query.message
    back = _back_of(message)

    async def show_key() -> None:
        """The key view again, as it is after the change just made."""
        refreshed = await _get(context, user.id, key_id)
        if refreshed is not None:
            now = context.now()
            text = _key_text(refreshed, t, tz, now, providers)
            await _show(query, text, _key_markup(refreshed, t, now, providers, back))

    if action == "key":
        await query.answer()
        origin = cb.arg(1)
        if origin == FROM_CARD:
            back = callbacks.encode(KEYS_PREFIX, "open", key_id)
        elif origin == FROM_OVERVIEW:
            back = callbacks.encode(PREFIX, "all")
        else:
            back = None
        now = context.now()
        await _show(
            query,
            _key_text(view, t, tz, now, providers),
            _key_markup(view, t, now, providers, back),
        )
    elif action in ("chk", "top"):
        await query.answer(t(CHECKING))
        if action == "top":  # done its job: the alert keeps only what still makes sense
            await _edit_alert(query, _without(message, callbacks.encode(PREFIX, "top", key_id)))
        # In the background: a slow provider must not hold up the user's next command.
        check = _check(update, context, view, topped_up=action == "top")
        context.application.create_task(check, update=update)
    elif action in ("mute", "unm"):
        until = context.now() + MUTE_FOR if action == "mute" else None
        await service.mute(user.id, key_id, until)
        if until is not None:
            await query.answer(t(MUTED, when=local_time(until, tz)))
        else:
            await query.answer(t(UNMUTED))
        if _is_key_view(message, key_id):
            await show_key()
        else:
            await _mark_alert(query, t, key_id, until, tz)
    elif action == "off":
        await service.turn_off(user.id, [key_id])
        await query.answer(t(OFF_OK, labels=view.label)[:200])
        await show_key()
    elif action == "thr":
        await query.answer()
        reading = await _reading(context, user.id, key_id)
        specs = rules.presets(
            decimal_of(reading.get("remaining")) if reading else None,
            decimal_of(reading.get("total")) if reading else None,
        )
        buttons = [_preset_button(view, spec, reading or {}, t) for spec in specs]
        rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
        rows.append([button(t, B_BACK, "key", key_id)])
        text = t(PICK_THRESHOLD, label=html.escape(view.label))
        if reading is not None:
            text = t(NOW_LEFT, amount=amount_text(reading, "remaining", t)) + "\n" + text
        await context.bot.send_message(user.id, text, reply_markup=InlineKeyboardMarkup(rows))
    elif action == "set":
        try:
            specs = parse_specs([cb.arg(1)])
        except BadSpec:
            await query.answer(t(NOT_FOUND), show_alert=True)
            return
        await service.set_thresholds(user.id, [key_id], specs)
        reading = await _reading(context, user.id, key_id) or {}
        shown = fmt.plain(_ladder(specs, reading, t))
        await query.answer(t(THRESHOLD_SET, threshold=shown)[:200])
        await show_key()
    else:
        await query.answer()


def _preset_button(
    view: KeyAlerts, spec: str, reading: dict[str, Any], t: Translator
) -> InlineKeyboardButton:
    """`¥25`, `$5`, `20%`: worded as the confirmation and /alerts word a threshold."""
    shown = fmt.plain(spec_text(spec, {**reading, "threshold_amount": None}, t))
    return InlineKeyboardButton(
        shown, callback_data=callbacks.encode(PREFIX, "set", view.key_id, spec)
    )


def _without(message: object, data: str) -> InlineKeyboardMarkup | None:
    """The pressed message's buttons without the one carrying `data`."""
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return None
    rows = [[b for b in row if b.callback_data != data] for row in markup.inline_keyboard]
    return InlineKeyboardMarkup([row for row in rows if row])


def _swap(message: object, old: str, new: InlineKeyboardButton) -> InlineKeyboardMarkup | None:
    """The pressed message's buttons with the one carrying `old` replaced by `new`."""
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return None
    return InlineKeyboardMarkup(
        [[new if b.callback_data == old else b for b in row] for row in markup.inline_keyboard]
    )


async def _edit_alert(query: Any, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_reply_markup(markup)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


async def _mark_alert(
    query: Any, t: Translator, key_id: str, until: datetime | None, tz: str
) -> None:
    """An alert after Mute/Unmute: a line saying it is muted (or not), the other button."""
    message = query.message
    if not isinstance(message, Message) or message.text is None:
        return
    lines = [line for line in message.text_html.split("\n") if not line.startswith("🔕")]
    if until is not None:
        lines.append(t(MUTED_UNTIL, when=local_time(until, tz)))
        markup = _swap(
            message, callbacks.encode(PREFIX, "mute", key_id), button(t, B_UNMUTE, "unm", key_id)
        )
    else:
        markup = _swap(
            message, callbacks.encode(PREFIX, "unm", key_id), button(t, B_MUTE, "mute", key_id)
        )
    await _show(query, "\n".join(lines), markup)


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
    sweep = context.services.sweep
    shown = fmt.View.make(context.lang, context.timezone, context.now(), context.providers)
    try:
        outcome = await sweep.check_now(user.id, view.key_id) if sweep is not None else None
    except ManualLimitReached:  # the /balance limit, shared: what is stored, and why
        status = (await context.services.balances.statuses(user.id, [key.id])).get(key.id)
        body = fmt.report_block(stored_report(key, status), shown)
        await context.bot.send_message(user.id, f"{body}\n{t(LIMITED)}")
        return
    if outcome is None:
        await context.bot.send_message(user.id, t(BUSY))
        return
    if outcome.result is not None:
        report = KeyReport(key, result=outcome.result, checked_at=outcome.result.fetched_at)
    else:
        err = outcome.error
        kind = err.kind if isinstance(err, BillingError) else ErrorKind.PROVIDER_ERROR
        since = err.since if isinstance(err, BillingError) else None
        report = KeyReport(key, error=kind, checked_at=context.now(), down_since=since)
    body = fmt.report_block(report, shown)
    text = f"{t(TOPPED_UP)}\n{body}" if topped_up else body
    await context.bot.send_message(user.id, text)
    context.deliver_alerts()  # an event from this check (e.g. "recovered") is in the outbox


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("alerts", alerts_command, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(on_callback, pattern=callbacks.pattern(PREFIX)))
