"""/add (guided and one-line) and /cancel.

Guided: provider → base URL (relays only) → label → key. The key comes last, so it is
saved the moment it arrives and never waits anywhere. Where a key *must* wait — the
one-line form with an ambiguous bare `sk-` key, a relay key without URL, or a rejected
key awaiting "save anyway" — it is sealed into the flow row (see bot/services/flows.py).
Every message that carried a key is deleted as soon as it is read; replies show only
the masked hint. Keys are never accepted in groups.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import CheckOutcome, FigureKind
from bot.billing.providers.base import Provider
from bot.billing.ssrf import UrlRefusal
from bot.context import BotContext
from bot.handlers import alert_messages, callbacks, fallback
from bot.handlers import format as fmt
from bot.handlers.chat import clear_keyboard, delete_message, is_private, private_link
from bot.i18n import N_, Translator
from bot.secret import Secret
from bot.services.adding import KIND, AddResult, Status, Step
from bot.services.flows import Flow
from bot.services.keys import (
    MAX_KEYS_PER_USER,
    MAX_LABEL_CHARS,
    InvalidKey,
    InvalidLabel,
    clean_key,
    clean_label,
)
from bot.services.keyshape import (
    MAX_KEY_CHARS,
    MIN_KEY_CHARS,
    KeyProblem,
    looks_like_key,
)

PREFIX = "add"
AUTO = "auto"

PROVIDER_PROMPT = N_(
    "➕ <b>Add a key</b>\nWhich provider is it for? Pick one, or let me detect it "
    "from the key.\n\n/cancel stops at any step."
)
DETECT = N_("🔍 Detect automatically")
URL_PROMPT = N_(
    "Send the <b>base URL</b> of the site — the address you use instead of "
    "https://api.openai.com, e.g. <code>https://relay.example.com</code>."
)
URL_REFUSED = N_("🚫 I can't use that address: {reason}. Send another base URL, or /cancel.")
LABEL_PROMPT = N_(
    "Send a short <b>name</b> for this key (e.g. <code>work</code>), "
    "or press Skip to call it <b>{default}</b>."
)
LABEL_PROMPT_AUTO = N_(
    "Send a short <b>name</b> for this key (e.g. <code>work</code>), "
    "or press Skip to name it after its provider."
)
SKIP = N_("Skip")
KEY_PROMPT = N_("Now send the <b>key</b> itself. I'll delete your message as soon as I've read it.")
PICK_PROMPT = N_("Which provider is the key <code>{hint}</code> for?")
CONFIRM_PROMPT = N_(
    "⚠️ {provider} rejected the key <code>{hint}</code>. It may be revoked or mistyped "
    "— or the site may be having trouble right now. Save it anyway?"
)
SAVE_ANYWAY = N_("Save anyway")
DONT_SAVE = N_("Don't save")
SAVED = N_("✅ Saved <b>{label}</b> · {provider} · <code>{hint}</code>")
SAVED_REJECTED = N_(
    "✅ Saved <b>{label}</b> · {provider} · <code>{hint}</code>\n"
    "Marked as rejected by the provider: /balance shows whether it works again."
)
DUPLICATE = N_("This key is already saved as <b>{label}</b>. Nothing was added.")
TOO_MANY = N_(
    "You already have {max} keys, the most I keep per person. "
    "Delete one with /remove first. Nothing was saved."
)
NOT_SAVED = N_("Not saved. Nothing was stored.")
OFFER_ALERT = N_("🔔 Alert me when it runs low")
SLOW_DOWN = N_(
    "⏳ You have added many keys in the last hour. Please try again later. Nothing was stored."
)
CANCELLED = N_("Cancelled. Nothing was saved.")
NOTHING_TO_CANCEL = N_("There is nothing to cancel.")
NOT_A_KEY = N_("🤔 That doesn't look like an API key: {why}. Nothing was stored.")
SEND_KEY_AGAIN = N_("Send the key, or /cancel.")
#: Why a text is not taken as a key (bot/services/keyshape.py: KeyProblem), in the user's words.
KEY_PROBLEMS: Mapping[KeyProblem, str] = {
    KeyProblem.EMPTY: N_("there is nothing there"),
    KeyProblem.SPACES: N_("a key is one word, without spaces or line breaks"),
    KeyProblem.CHARACTERS: N_(
        "keys use only Latin letters, digits and a few symbols such as - and _"
    ),
    KeyProblem.TOO_SHORT: N_("it is too short (keys have at least {min} characters)"),
    KeyProblem.TOO_LONG: N_("it is too long (at most {max} characters)"),
    KeyProblem.SHAPE: N_("it has no provider's prefix (such as sk-) and doesn't look random"),
}
DELETE_FAILED = N_(
    "⚠️ I couldn't delete your message with the key. Please delete it yourself — "
    "and consider rotating the key."
)
PRESS_BUTTON = N_("Please press one of the buttons above, or send /cancel.")
KEY_NOT_URL = N_(
    "🔐 That looks like a key, not an address, so I deleted it. "
    "Send the base URL first, or /cancel."
)
KEY_NOT_ANSWER = N_(
    "🔐 That looks like a key, so I deleted it. Please press one of the buttons above, "
    "or send /cancel."
)
LABEL_TOO_LONG = N_("That name is too long (at most {max} characters).")
LABEL_INVALID = N_("That name can't be used: it is empty or has control characters.")
LABEL_BLANK = N_("That name would look blank in a list. Use letters, digits or an emoji.")
LABEL_TAKEN = N_("You already have a key named <b>{label}</b>.")
LABEL_KEYISH = N_("That name looks like an API key.")
ASK_LABEL_AGAIN = N_("Send another name, or press Skip.")
RESEND = N_("Nothing was saved. Send the command again.")
UNKNOWN_PROVIDER = N_("I don't know the provider <code>{provider}</code>. Use one of: {ids}.")
BAD_URL_ONE_LINE = N_("🚫 I can't use that address: {reason}. Nothing was saved.")
IN_GROUP = N_("🔐 Keys are added in a private chat only. Tap the button to talk to me there.")
OPEN_PRIVATE = N_("Open a private chat")
EXPIRED = N_("This button has expired.")
FLOW_EXPIRED = N_("That step has expired. Send /add to start again.")

#: Why the SSRF guard refused an address (bot/billing/ssrf.py: UrlRefusal), in the user's words.
URL_REASONS: Mapping[UrlRefusal, str] = {
    UrlRefusal.INVALID_URL: N_("it is not a valid URL"),
    UrlRefusal.TOO_LONG: N_("the address is too long"),
    UrlRefusal.NOT_HTTPS: N_("only https:// addresses are allowed"),
    UrlRefusal.USERINFO: N_("addresses with a user name or password are not allowed"),
    UrlRefusal.QUERY_OR_FRAGMENT: N_("addresses with ? or # parts are not allowed"),
    UrlRefusal.INVALID_HOST: N_("the host name is not valid"),
    UrlRefusal.NO_HOST: N_("the address has no host"),
    UrlRefusal.NON_STANDARD_PORT: N_("only the standard port 443 is allowed"),
    UrlRefusal.INVALID_PORT: N_("the port is not valid"),
    UrlRefusal.DOT_SEGMENTS: N_("paths with . or .. are not allowed"),
    UrlRefusal.INTERNAL_NAME: N_("local and internal host names are not allowed"),
    UrlRefusal.SINGLE_LABEL: N_("the host name must contain a dot"),
    UrlRefusal.LINK_LOCAL: N_("it points to a link-local or cloud metadata address"),
    UrlRefusal.UNSPECIFIED: N_("it points to an unusable address"),
    UrlRefusal.EMBEDDED_IPV4: N_("it points to a tunnelled IPv4 address"),
    UrlRefusal.RESERVED: N_("it points to a reserved address"),
    UrlRefusal.RETIRED: N_("it points to a retired or documentation address"),
    UrlRefusal.PRIVATE: N_("it points to a private network"),
    UrlRefusal.CGNAT: N_("it points to a private network"),
    UrlRefusal.LOOPBACK: N_("it points to this machine"),
    UrlRefusal.UNPARSABLE: N_("that address is not allowed"),
}
URL_REASON_DEFAULT = N_("that address is not allowed")


# -- rendering --------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=False)


def provider_button_text(t: Translator, p: Provider) -> str:
    """Title plus one-line hint; just the hint when it already names the provider."""
    first = p.title.split()[0] if p.title else ""
    hint = t(p.hint)
    return hint if first and p.hint.startswith(first) else f"{p.title} · {hint}"


def provider_keyboard(
    t: Translator, providers: Sequence[Provider], nonce: str, *, auto: bool
) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                provider_button_text(t, p), callback_data=callbacks.encode(PREFIX, "p", p.id, nonce)
            )
        ]
        for p in providers
    ]
    if auto:
        data = callbacks.encode(PREFIX, "p", AUTO, nonce)
        rows.append([InlineKeyboardButton(t(DETECT), callback_data=data)])
    return InlineKeyboardMarkup(rows)


def brief_check(context: BotContext, outcome: CheckOutcome | None) -> str:
    """The first check in /balance's words (bot/handlers/format.py), a few lines."""
    if outcome is None:
        return ""
    t = context.t
    if outcome.result is None:
        error = outcome.error
        kind = error.kind if isinstance(error, BillingError) else ErrorKind.PROVIDER_ERROR
        return fmt.error_sentence(kind, t)
    now = context.now()
    return "\n".join(
        fmt.detail_lines(outcome.result, now, fmt.zone(context.timezone), t, context.providers)
    )


def not_a_key(t: Translator, problem: KeyProblem) -> str:
    why = t(KEY_PROBLEMS[problem], min=MIN_KEY_CHARS, max=MAX_KEY_CHARS)
    return t(NOT_A_KEY, why=why)


def url_reason(t: Translator, error: BillingError) -> str:
    reason = error.reason if isinstance(error.reason, UrlRefusal) else None
    return t(URL_REASONS[reason] if reason is not None else URL_REASON_DEFAULT)


async def say(
    context: BotContext,
    chat_id: int,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    notes: Sequence[str] = (),
) -> Message:
    return await context.bot.send_message(chat_id, "\n\n".join([*notes, text]), reply_markup=markup)


# -- the dialogue (decisions in bot/services/adding.py) ------------------------------------


async def start_guided(update: Update, context: BotContext, user_id: int) -> None:
    nonce = await context.services.adding.start(user_id)
    t = context.t
    providers = context.services.billing.providers()
    await say(
        context, user_id, t(PROVIDER_PROMPT), provider_keyboard(t, providers, nonce, auto=True)
    )


async def advance(
    context: BotContext,
    user_id: int,
    data: dict[str, Any],
    nonce: str,
    *,
    secret: Secret | None = None,
    sealed: bool = False,
    notes: Sequence[str] = (),
) -> None:
    """Ask for the first missing piece — or save (AddService decides which)."""
    billing = context.services.billing
    t = context.t
    nxt = await context.services.adding.advance(user_id, data, nonce, secret=secret, sealed=sealed)
    step, data = nxt.step, nxt.data
    if step is Step.DONE:
        if nxt.secret is None:
            await say(context, user_id, t(FLOW_EXPIRED), notes=notes)
            return
        await finish(context, user_id, data, nonce, nxt.secret, notes=notes)
        return
    markup: InlineKeyboardMarkup | None = None
    if step is Step.URL:
        text = t(URL_PROMPT)
    elif step is Step.LABEL:
        if nxt.default_label is not None:
            text = t(LABEL_PROMPT, default=_e(nxt.default_label))
        else:
            text = t(LABEL_PROMPT_AUTO)
        skip = callbacks.encode(PREFIX, "skip", nonce)
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(t(SKIP), callback_data=skip)]])
    elif step is Step.KEY:
        text = t(KEY_PROMPT)
    elif step is Step.PICK:
        ids = data.get("candidates") or []
        every = billing.providers()
        shown = [p for p in every if p.id in ids] or every
        text = t(PICK_PROMPT, hint=_e(data.get("hint", "")))
        markup = provider_keyboard(t, shown, nonce, auto=False)
    else:  # Step.PROVIDER: only reachable through a fresh /add
        text = t(PROVIDER_PROMPT)
        markup = provider_keyboard(t, billing.providers(), nonce, auto=True)
    await say(context, user_id, text, markup, notes)


async def finish(
    context: BotContext,
    user_id: int,
    data: dict[str, Any],
    nonce: str,
    secret: Secret,
    *,
    confirmed: bool = False,
    notes: Sequence[str] = (),
) -> None:
    t = context.t
    provider_id = str(data["provider"])
    result = await context.services.adding.finish(user_id, data, nonce, secret, confirmed=confirmed)
    title = _provider_title(context, provider_id)
    if result.status is Status.REJECTED:
        buttons = [
            InlineKeyboardButton(
                t(SAVE_ANYWAY), callback_data=callbacks.encode(PREFIX, "save", nonce)
            ),
            InlineKeyboardButton(
                t(DONT_SAVE), callback_data=callbacks.encode(PREFIX, "drop", nonce)
            ),
        ]
        text = t(CONFIRM_PROMPT, provider=_e(title), hint=_e(secret.hint))
        await say(context, user_id, text, InlineKeyboardMarkup([buttons]), notes)
        return
    markup = None
    if result.status is Status.SAVED and result.key is not None:
        markup = _alert_offer(context, result.key.id, provider_id)
    text = render_result(context, result, title, confirmed)
    await say(context, user_id, text, markup, notes=notes)


def _alert_offer(context: BotContext, key_id: str, provider_id: str) -> InlineKeyboardMarkup | None:
    """Low-balance alerts are off until set: offer one right away, where a balance exists."""
    try:
        provider = context.services.billing.provider(provider_id)
    except KeyError:
        return None
    if provider.kind is not FigureKind.BALANCE:
        return None
    # the alerts feature (bot/handlers/alerts.py) takes it from here
    data = callbacks.encode(alert_messages.PREFIX, "thr", key_id)
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(context.t(OFFER_ALERT), callback_data=data)]]
    )


def render_result(context: BotContext, result: AddResult, title: str, confirmed: bool) -> str:
    t = context.t
    if result.status is Status.DUPLICATE and result.key is not None:
        return t(DUPLICATE, label=_e(result.key.label))
    if result.status is Status.SLOW_DOWN:
        return t(SLOW_DOWN)
    if result.status is Status.TOO_MANY or result.key is None:
        return t(TOO_MANY, max=MAX_KEYS_PER_USER)
    key = result.key
    fields = {"label": _e(key.label), "provider": _e(title), "hint": _e(key.hint)}
    if confirmed:
        return t(SAVED_REJECTED, **fields)
    line = brief_check(context, result.check)
    return t(SAVED, **fields) + (f"\n{line}" if line else "")


def _provider_title(context: BotContext, provider_id: str) -> str:
    """The provider's name in the user's language, as /balance writes it."""
    return fmt.provider_title(context.providers, provider_id, context.t)


# -- /add ---------------------------------------------------------------------------------


def parse_one_line(args: Sequence[str]) -> tuple[str, str | None, str | None, str | None]:
    """`KEY [label…] [provider=ID] [url=BASE_URL]` → (key, label, provider, url)."""
    key = ""
    label: list[str] = []
    provider = url = None
    for arg in args:
        low = arg.lower()
        if low.startswith("provider="):
            provider = arg.split("=", 1)[1].strip().lower()
        elif low.startswith("url="):
            url = arg.split("=", 1)[1].strip()
        elif not key:
            key = arg
        else:
            label.append(arg)
    return key, (" ".join(label) or None), provider, url


async def cmd_add(update: Update, context: BotContext) -> None:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    t = context.t
    if not is_private(update):
        if context.args:  # a key may be in there: try to remove it, store nothing
            await fallback.group_key(update, context)
            return
        await message.reply_text(
            t(IN_GROUP), reply_markup=private_link(context, t(OPEN_PRIVATE), "add")
        )
        return
    if not context.args:
        await start_guided(update, context, user.id)
        return
    await one_line(context, user.id, context.args, message)


async def drop_keyish(context: BotContext, message: Message, text: str | None) -> list[str]:
    """Delete a message that carries something key-shaped; the note to add if Telegram refused."""
    if not looks_like_key(text) or await delete_message(message):
        return []
    return [context.t(DELETE_FAILED)]


async def one_line(
    context: BotContext, user_id: int, args: Sequence[str], message: Message
) -> None:
    t = context.t
    billing = context.services.billing
    raw_key, label, provider, url = parse_one_line(args)
    secret: Secret | None = None
    if raw_key:  # `/add provider=ID` alone: the guided dialogue, provider preset
        try:
            secret = clean_key(raw_key)
        except InvalidKey as exc:
            notes = await drop_keyish(context, message, message.text)
            await say(context, user_id, not_a_key(t, exc.problem), notes=notes)
            return
    notes = [] if await delete_message(message) else [t(DELETE_FAILED)]
    if provider is not None:
        try:
            billing.provider(provider)
        except KeyError:
            ids = ", ".join(f"<code>{_e(p.id)}</code>" for p in billing.providers())
            await say(
                context, user_id, t(UNKNOWN_PROVIDER, provider=_e(provider), ids=ids), notes=notes
            )
            return
    if url is not None:
        try:
            url = billing.validate_base_url(url)
        except BillingError as exc:
            await say(context, user_id, t(BAD_URL_ONE_LINE, reason=url_reason(t, exc)), notes=notes)
            return
        provider = provider or "relay"
    if label is not None:
        problem = await label_problem(context, user_id, label)
        if problem:
            await say(context, user_id, f"{problem} {t(RESEND)}", notes=notes)
            return
        label = clean_label(label)
    data: dict[str, Any] = {"provider": provider, "url": url, "label": label}
    data["label_done"] = label is not None or secret is not None
    nonce = context.services.flows.new_nonce()
    await advance(context, user_id, data, nonce, secret=secret, notes=notes)


async def label_problem(context: BotContext, user_id: int, raw: str) -> str | None:
    """Why this label can't be used (translated), or None."""
    t = context.t
    if looks_like_key(raw):
        return t(LABEL_KEYISH)
    try:
        label = clean_label(raw)
    except InvalidLabel as exc:
        if str(exc) == "too long":
            return t(LABEL_TOO_LONG, max=MAX_LABEL_CHARS)
        if str(exc) == "blank":
            return t(LABEL_BLANK)
        return t(LABEL_INVALID)
    if await context.services.adding.label_taken(user_id, label):
        return t(LABEL_TAKEN, label=_e(label))
    return None


# -- answers inside the flow --------------------------------------------------------------


async def on_text(update: Update, context: BotContext, flow: Flow) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    t = context.t
    uid, text, data = flow.user_id, message.text, dict(flow.data)
    step = _step(flow)
    if step is None:  # written by another version of the bot: start over
        await context.services.adding.cancel(uid)
        await message.reply_text(t(FLOW_EXPIRED))
        return
    keyish = looks_like_key(text)
    if step is Step.KEY or (keyish and step in (Step.PROVIDER, Step.LABEL)):
        try:
            secret = clean_key(text)
        except InvalidKey as exc:
            notes = await drop_keyish(context, message, text)
            await say(context, uid, f"{not_a_key(t, exc.problem)} {t(SEND_KEY_AGAIN)}", notes=notes)
            return
        notes = [] if await delete_message(message) else [t(DELETE_FAILED)]
        if step is not Step.KEY:  # skipped ahead by pasting the key: defaults for the rest
            data.setdefault("provider", None)
            data.update(auto=True, label_done=True)
        await advance(context, uid, data, flow.nonce, secret=secret, notes=notes)
        return
    if keyish:  # at a step that is not asking for a key: remove it, ask again
        notes = [] if await delete_message(message) else [t(DELETE_FAILED)]
        reply = KEY_NOT_URL if step is Step.URL else KEY_NOT_ANSWER
        await say(context, uid, t(reply), notes=notes)
        return
    if step is Step.URL:
        try:
            data["url"] = context.services.billing.validate_base_url(text)
        except BillingError as exc:
            await message.reply_text(t(URL_REFUSED, reason=url_reason(t, exc)))
            return
        await advance(context, uid, data, flow.nonce, sealed=flow.has_secret)
        return
    if step is Step.LABEL:
        problem = await label_problem(context, uid, text)
        if problem:
            await message.reply_text(f"{problem} {t(ASK_LABEL_AGAIN)}")
            return
        data.update(label=clean_label(text), label_done=True)
        await advance(context, uid, data, flow.nonce)
        return
    await message.reply_text(t(PRESS_BUTTON))


def _step(flow: Flow) -> Step | None:
    try:
        return Step(flow.step)
    except ValueError:
        return None


# -- buttons ------------------------------------------------------------------------------


async def on_button(update: Update, context: BotContext) -> None:
    """Callback data is forgeable: the flow is loaded by the presser's id and must match
    the button's nonce and the step it belongs to; anything else changes nothing."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    t = context.t
    cb = callbacks.decode(query.data, PREFIX)
    adding = context.services.adding
    flow = await adding.flow(user.id)
    expected = {"p": (Step.PROVIDER, Step.PICK), "skip": (Step.LABEL,),
                "save": (Step.CONFIRM,), "drop": (Step.CONFIRM,)}  # fmt: skip
    nonce = cb.args[-1] if cb is not None and cb.args else ""
    if (
        cb is None
        or flow is None
        or flow.nonce != nonce
        or _step(flow) not in expected.get(cb.action, ())
        or not is_private(update)
    ):
        await query.answer(t(EXPIRED))
        return
    data = dict(flow.data)
    if cb.action == "p":
        choice = cb.arg(0)
        if choice == AUTO and flow.step == Step.PROVIDER:
            data.update(provider=None, auto=True)
        else:
            try:
                context.services.billing.provider(choice)
            except KeyError:
                await query.answer(t(EXPIRED))
                return
            data["provider"] = choice
    elif cb.action == "skip":
        data.update(label=None, label_done=True)
    await query.answer()
    await clear_keyboard(update)
    if cb.action == "drop":
        await adding.cancel(user.id)
        await say(context, user.id, t(NOT_SAVED))
        return
    if cb.action == "save":
        secret = await adding.sealed_key(user.id, flow.nonce)
        if secret is None:
            await adding.cancel(user.id)
            await say(context, user.id, t(FLOW_EXPIRED))
            return
        await finish(context, user.id, data, flow.nonce, secret, confirmed=True)
        return
    await advance(context, user.id, data, flow.nonce, sealed=flow.has_secret)


# -- /cancel ------------------------------------------------------------------------------


async def cmd_cancel(update: Update, context: BotContext) -> None:
    user = update.effective_user
    message = update.effective_message
    assert user is not None and message is not None
    had = await context.services.adding.cancel(user.id)
    await message.reply_text(context.t(CANCELLED if had else NOTHING_TO_CANCEL))


def register(app: Application) -> None:  # type: ignore[type-arg]
    new = filters.UpdateType.MESSAGE
    app.add_handler(CommandHandler("add", cmd_add, filters=new))
    app.add_handler(CommandHandler("cancel", cmd_cancel, filters=new & filters.ChatType.PRIVATE))
    app.add_handler(CallbackQueryHandler(on_button, pattern=callbacks.pattern(PREFIX)))
    fallback.on_flow_text(KIND, on_text)
