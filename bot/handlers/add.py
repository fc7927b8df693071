"""/add (guided and one-line), a key pasted without a command, and /cancel.

Guided: provider (bot/handlers/provider_picker.py) → base URL (self-hosted only) → label →
key. The key comes last, so it is checked and saved the moment it arrives. Where a key
*must* wait — an ambiguous bare `sk-` key, a relay key without URL, a site whose software
matched no family, a rejected key awaiting "save anyway", a pasted key awaiting "add it?"
— it stays sealed in the flow row (bot/services/flows.py).

Order, whatever the path: a key is sealed into the flow and committed first, the message
that carried it is deleted next, and only then checked and saved. A crash in between
leaves the sealed key; `resume_interrupted` (a job) tells its owner and offers to save it.
A new key pasted while an earlier one waits for a button replaces it (the user is told);
a key already saved is named before any question. Replies show only the masked hint.
Keys are never accepted in groups.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import CheckOutcome, FigureKind
from bot.billing.providers.base import Provider
from bot.billing.ssrf import UrlRefusal
from bot.context import BotContext
from bot.handlers import alert_messages, callbacks, fallback, provider_picker
from bot.handlers import format as fmt
from bot.handlers.chat import clear_keyboard, delete_message, is_private, private_link
from bot.handlers.provider_picker import AUTO, PAGES, SITE
from bot.i18n import N_, Translator, resolve_language, translator
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
    key_problem,
    looks_like_key,
    single_key,
)

log = logging.getLogger(__name__)

PREFIX = "add"
#: How often the job looks for keys whose saving a crash cut short (seconds).
RESUME_EVERY = 30.0

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
KEY_BEFORE_URL = N_("🔐 Got the key <code>{hint}</code> and deleted your message.")
SAME_KEY = N_(
    "🔐 That is the key <code>{hint}</code> I already have, so I deleted it. "
    "Please answer above, or send /cancel."
)
REPLACED = N_("The earlier key <code>{old}</code> was not saved; I'm going on with the new one.")
OFFER = N_(
    "🔐 That looks like an API key (<code>{hint}</code>), so I deleted your message. "
    "Add it to your keys?"
)
ADD_IT = N_("➕ Add this key")
INTERRUPTED = N_(
    "⚠️ I was interrupted while saving your key <code>{hint}</code>, so it is not saved "
    "yet. Save it now?"
)
INTERRUPTED_SAVED = N_(
    "✅ Your key <code>{hint}</code> was saved as <b>{label}</b> just before I was interrupted."
)
SAVE_NOW = N_("Save it now")
STILL_SAVING = N_(
    "⏳ I'm still saving your key <code>{hint}</code> and will tell you when it's done. "
    "/cancel stops it."
)
SITE_FOUND = N_("🔍 The site runs <b>{family}</b>.")
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


def picker_page(
    context: BotContext, name: str, nonce: str, data: Mapping[str, Any] | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    """A page of the provider buttons; `data` of a flow that waits at PICK."""
    data = data or {}
    waiting = data.get("candidates") is not None
    return provider_picker.page(
        context.t,
        context.services.billing.providers(),
        name,
        nonce,
        key_hint=data.get("hint") if waiting else None,
        candidates=data.get("candidates") or (),
        why=data.get("why"),
    )


def _buttons(t: Translator, *pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t(text), callback_data=data) for text, data in pairs]]
    )


# -- a key arrives -----------------------------------------------------------------------


def key_in(text: str, providers: Iterable[Provider]) -> tuple[Secret | None, KeyProblem | None]:
    """The key in a message meant to carry one: the whole text, or its one key-shaped word."""
    problem = key_problem(text, providers)
    if problem is None:
        return clean_key(text, providers), None
    found = single_key(text, providers)
    return (Secret(found), None) if found is not None else (None, problem)


async def take_key(
    context: BotContext,
    user_id: int,
    data: Mapping[str, Any],
    nonce: str,
    secret: Secret,
    message: Message | None,
    *,
    step: Step = Step.SAVING,
    replacing: Flow | None = None,
) -> list[str] | None:
    """Seal the key (committed), then delete its message: in this order, so that no crash
    loses a key whose message is gone. A key already saved is named here (None returned);
    else the notes for the next reply (a failed deletion, a replaced earlier key)."""
    t = context.t
    same = await context.services.adding.hold(user_id, data, nonce, secret, step=step)
    notes: list[str] = []
    if message is not None and not await delete_message(message):
        notes.append(t(DELETE_FAILED))
    if same is not None:
        await say(context, user_id, t(DUPLICATE, label=_e(same.label)), notes=notes)
        return None
    if replacing is not None and replacing.has_secret and replacing.nonce != nonce:
        notes.append(t(REPLACED, old=_e(replacing.data.get("hint", "…"))))
    return notes


async def offer(
    context: BotContext,
    user_id: int,
    secret: Secret,
    message: Message,
    replacing: Flow | None = None,
) -> None:
    """A key pasted without a command: keep it sealed and ask whether to add it."""
    nonce = context.services.flows.new_nonce()
    data = {"auto": True, "label_done": True}
    notes = await take_key(
        context, user_id, data, nonce, secret, message, step=Step.OFFER, replacing=replacing
    )
    if notes is None:
        return
    t = context.t
    markup = _buttons(
        t,
        (ADD_IT, callbacks.encode(PREFIX, "go", nonce)),
        (DONT_SAVE, callbacks.encode(PREFIX, "drop", nonce)),
    )
    await say(context, user_id, t(OFFER, hint=_e(secret.hint)), markup, notes)


async def stray_key(update: Update, context: BotContext) -> None:
    """Key-shaped text in a private chat outside any flow (routed by bot/handlers/fallback.py)."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    found = single_key(message.text, context.providers.values())
    if found is None:  # several keys, or nothing that could be added: remove it, say so
        await fallback.warn_key(update, context)
        return
    await offer(context, user.id, Secret(found), message)


# -- the dialogue (decisions in bot/services/adding.py) ------------------------------------


async def start_guided(update: Update, context: BotContext, user_id: int) -> None:
    nonce = await context.services.adding.start(user_id)
    text, markup = picker_page(context, "main", nonce)
    await say(context, user_id, text, markup)


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
    t = context.t
    nxt = await context.services.adding.advance(user_id, data, nonce, secret=secret, sealed=sealed)
    step, data = nxt.step, nxt.data
    if data.get("family") and data.get("provider"):
        notes = [*notes, t(SITE_FOUND, family=_e(data["family"]))]
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
        text, markup = picker_page(context, "pick", nonce, data)
    else:  # Step.PROVIDER: only reachable through a fresh /add
        text, markup = picker_page(context, "main", nonce)
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
    if not looks_like_key(text, context.providers.values()) or await delete_message(message):
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
            secret = clean_key(raw_key, context.providers.values())
        except InvalidKey as exc:
            notes = await drop_keyish(context, message, message.text)
            await say(context, user_id, not_a_key(t, exc.problem), notes=notes)
            return
    problem: str | None = None
    if provider is not None:
        try:
            billing.provider(provider)
        except KeyError:
            ids = ", ".join(f"<code>{_e(p.id)}</code>" for p in billing.providers())
            problem = t(UNKNOWN_PROVIDER, provider=_e(provider), ids=ids)
    if problem is None and url is not None:
        try:
            url = billing.validate_base_url(url)
        except BillingError as exc:
            problem = t(BAD_URL_ONE_LINE, reason=url_reason(t, exc))
    if problem is None and label is not None:
        problem = await label_problem(context, user_id, label)
        if problem:
            problem = f"{problem} {t(RESEND)}"
        else:
            label = clean_label(label)
    if problem is not None:  # nothing is kept: the key's message goes, the reason is told
        notes = await drop_keyish(context, message, message.text) if secret is None else []
        if secret is not None and not await delete_message(message):
            notes = [t(DELETE_FAILED)]
        await say(context, user_id, problem, notes=notes)
        return
    data: dict[str, Any] = {"provider": provider, "url": url, "label": label}
    data["label_done"] = label is not None or secret is not None
    nonce = context.services.flows.new_nonce()
    if secret is None:
        await advance(context, user_id, data, nonce)
        return
    waiting = await context.services.adding.flow(user_id)
    notes = await take_key(context, user_id, data, nonce, secret, message, replacing=waiting)
    if notes is not None:
        await advance(context, user_id, data, nonce, secret=secret, notes=notes)


async def label_problem(context: BotContext, user_id: int, raw: str) -> str | None:
    """Why this label can't be used (translated), or None."""
    t = context.t
    if looks_like_key(raw, context.providers.values()):
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
    if step is Step.KEY or looks_like_key(text, context.providers.values()):
        secret, problem = key_in(text, context.providers.values())
        if secret is None:
            assert problem is not None
            notes = await drop_keyish(context, message, text)
            again = t(SEND_KEY_AGAIN) if step is Step.KEY else t(PRESS_BUTTON)
            await say(context, uid, f"{not_a_key(t, problem)} {again}", notes=notes)
            return
        await key_in_flow(context, message, flow, step, secret)
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
    if step is Step.SAVING:
        await message.reply_text(t(STILL_SAVING, hint=_e(data.get("hint", "…"))))
        return
    await message.reply_text(t(PRESS_BUTTON))


async def key_in_flow(
    context: BotContext, message: Message, flow: Flow, step: Step, secret: Secret
) -> None:
    """A key pasted during a dialogue. No key yet: it is the key (what is known so far is
    kept). An earlier key waiting for an answer: the same one is asked about again; a new
    one replaces it (the user is told the earlier one was not saved)."""
    t = context.t
    uid, nonce = flow.user_id, flow.nonce
    adding = context.services.adding
    if flow.has_secret:
        if await adding.sealed_key(uid, nonce) == secret:
            notes = [] if await delete_message(message) else [t(DELETE_FAILED)]
            await say(context, uid, t(SAME_KEY, hint=_e(secret.hint)), notes=notes)
            return
        if step is Step.OFFER:
            await offer(context, uid, secret, message, replacing=flow)
            return
        fresh: dict[str, Any] = {"auto": True, "label_done": True}
        new_nonce = context.services.flows.new_nonce()
        notes = await take_key(context, uid, fresh, new_nonce, secret, message, replacing=flow)
        if notes is not None:
            await advance(context, uid, fresh, new_nonce, secret=secret, notes=notes)
        return
    data = dict(flow.data)
    if step is not Step.KEY:  # skipped ahead by pasting the key: defaults for the rest
        data.setdefault("provider", None)
        data.update(auto=data.get("provider") is None, label_done=True)
    held = await take_key(context, uid, data, nonce, secret, message)
    if held is None:
        return
    if step is Step.URL:
        held.append(t(KEY_BEFORE_URL, hint=_e(secret.hint)))
    await advance(context, uid, data, nonce, secret=secret, notes=held)


def _step(flow: Flow) -> Step | None:
    try:
        return Step(flow.step)
    except ValueError:
        return None


# -- buttons ------------------------------------------------------------------------------

#: Which button actions each step accepts (anything else is an expired button).
_ACCEPTS = {
    "p": (Step.PROVIDER, Step.PICK),
    "pg": (Step.PROVIDER, Step.PICK),
    "skip": (Step.LABEL,),
    "save": (Step.CONFIRM,),
    "drop": (Step.CONFIRM, Step.OFFER, Step.RESUME),
    "go": (Step.OFFER, Step.RESUME),
}


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
    nonce = cb.args[-1] if cb is not None and cb.args else ""
    if (
        cb is None
        or flow is None
        or flow.nonce != nonce
        or _step(flow) not in _ACCEPTS.get(cb.action, ())
        or not is_private(update)
    ):
        await query.answer(t(EXPIRED))
        return
    data = {k: v for k, v in flow.data.items() if k != "by"}
    if cb.action == "pg":
        name = cb.arg(0)
        if name not in PAGES:
            await query.answer(t(EXPIRED))
            return
        await query.answer()
        text, markup = picker_page(context, name, flow.nonce, data)
        await _edit(query.message, text, markup)
        return
    if cb.action == "p":
        choice = cb.arg(0)
        if choice == AUTO and flow.step == Step.PROVIDER:
            data.update(provider=None, auto=True)
        elif choice == SITE:
            data.update(provider=None, site=True, url=None, candidates=None)
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


async def _edit(message: object, text: str, markup: InlineKeyboardMarkup) -> None:
    """Turn the picker's page in place; pressing the page it shows is not an error."""
    if not isinstance(message, Message):
        return
    try:
        await message.edit_text(text, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


# -- keys whose saving was interrupted ----------------------------------------------------


async def resume_interrupted(context: BotContext) -> None:
    """A job: tell each owner of a key whose saving a crash cut short, and offer to save it
    (or say it was saved after all). Each such key is claimed by one process only."""
    services = context.bot_data.services
    if services is None:
        return
    for item in await services.adding.interrupted():
        profile = await services.users.touch(item.user_id)
        t = translator(resolve_language(profile.language, None))
        hint = _e(item.hint)
        markup = None
        if item.saved is not None:
            text = t(INTERRUPTED_SAVED, hint=hint, label=_e(item.saved.label))
        else:
            text = t(INTERRUPTED, hint=hint)
            markup = _buttons(
                t,
                (SAVE_NOW, callbacks.encode(PREFIX, "go", item.nonce)),
                (DONT_SAVE, callbacks.encode(PREFIX, "drop", item.nonce)),
            )
        try:
            await context.bot.send_message(item.user_id, text, reply_markup=markup)
        except TelegramError as exc:  # blocked, gone: the flow expires on its own
            log.info("could not tell user %s about an interrupted key: %s", item.user_id,
                     type(exc).__name__)  # fmt: skip


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
    fallback.on_stray_key(stray_key)
