"""The provider buttons of /add: a few pages instead of one long column.

With ~30 providers one button per provider, each carrying its hint, no longer fits a phone
(`Moonshot / Kimi (api.moonshot.cn, api.moonshot.ai)` is cut off). So the buttons carry
only the short title (in the user's language), two per row, and the one-line hints are in
the message text:

* `main` — "🔍 Detect automatically" first (while no key is known), the providers ordered
  before FIRST_PAGE_ORDER, then "🏠 Self-hosted relay ›" and "More providers ›";
* `relay` — the self-hosted kinds (providers that need a base URL) and "🔍 Detect from the
  site's address" (the site is asked which software it runs, without the key);
* `more` — everyone else;
* `pick` — when a key is waiting: the providers its shape fits, why the question is asked
  (e.g. a bare `sk-` key fits several) and "Other provider ›" to the full list.

Page changes edit the message in place; the buttons carry the flow's nonce like every
/add button (bot/handlers/add.py checks it).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.billing.providers.base import Provider
from bot.handlers import callbacks
from bot.i18n import N_, Translator

PREFIX = "add"
AUTO = "auto"  # detect from the key's shape
SITE = "site"  # detect from the site's address
PAGES = ("main", "relay", "more", "pick")
#: Providers ordered below this (and not self-hosted) are on the first page.
FIRST_PAGE_ORDER = 100

PROVIDER_PROMPT = N_(
    "➕ <b>Add a key</b>\nWhich provider is it for? Pick one, or let me detect it "
    "from the key.\n\n/cancel stops at any step."
)
DETECT = N_("🔍 Detect automatically")
DETECT_SITE = N_("🔍 Detect from the site's address")
RELAY_PAGE = N_("🏠 Self-hosted relay ›")
MORE_PAGE = N_("More providers ›")
OTHER_PAGE = N_("Other provider ›")
BACK = N_("« Back")
RELAY_TITLE = N_(
    "🏠 <b>Self-hosted relays</b>\nSend me the site's address and I'll find out which "
    "software it runs — or pick it yourself:"
)
MORE_TITLE = N_("➕ <b>More providers</b>")
PICK_PROMPT = N_("Which provider is the key <code>{hint}</code> for?")
PICK_SITE = N_("Which software runs that site?")
WHY_PREFIX = N_(
    "Keys that look like this one are used by {names}, so the key alone doesn't tell me "
    "which one it is."
)
WHY_SK = N_(
    "Keys that start with <code>sk-</code> are used by {names}, so the key alone doesn't "
    "tell me which one it is."
)
WHY_SHAPE = N_("I don't recognise this key's shape, so please tell me where it is from.")
WHY_SITE = N_(
    "I couldn't tell from the site which software it runs. Nothing is saved until you pick."
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=False)


def title(t: Translator, p: Provider) -> str:
    """The provider's name in the user's language (Moonshot（Kimi）in Chinese), as /balance
    and /add's confirmation write it (titles are msgids, like hints)."""
    return t(p.title)


def hint_line(t: Translator, p: Provider) -> str:
    """Title plus one-line hint; just the hint when it already names the provider (decided
    on the English texts, which every translation follows)."""
    first = p.title.split()[0] if p.title else ""
    hint = t(p.hint)
    return hint if first and p.hint.startswith(first) else f"{title(t, p)} · {hint}"


def on_page(providers: Sequence[Provider], page: str) -> list[Provider]:
    if page == "relay":
        return [p for p in providers if p.needs_base_url]
    if page == "main":
        return [p for p in providers if not p.needs_base_url and p.order < FIRST_PAGE_ORDER]
    return [p for p in providers if not p.needs_base_url and p.order >= FIRST_PAGE_ORDER]


def _data(action: str, *args: str) -> str:
    return callbacks.encode(PREFIX, action, *args)


def _pairs(buttons: list[InlineKeyboardButton]) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + 2] for i in range(0, len(buttons), 2)]


def _provider_rows(
    t: Translator, ps: Sequence[Provider], nonce: str
) -> list[list[InlineKeyboardButton]]:
    return _pairs(
        [InlineKeyboardButton(title(t, p), callback_data=_data("p", p.id, nonce)) for p in ps]
    )


def _hints(t: Translator, ps: Sequence[Provider]) -> str:
    return "\n".join(f"• {_e(hint_line(t, p))}" for p in ps)


def page(
    t: Translator,
    providers: Sequence[Provider],
    name: str,
    nonce: str,
    *,
    key_hint: str | None = None,
    candidates: Sequence[str] = (),
    why: str | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    """One page of the picker: its text and buttons.

    `key_hint` set: a key is waiting (no "Detect automatically"; back from the full list
    goes to the `pick` page); `candidates` and `why` fill the `pick` page.
    """
    waiting = key_hint is not None or bool(candidates)
    if name == "pick":
        return _pick(t, providers, nonce, key_hint, candidates, why)
    shown = on_page(providers, name)
    rows: list[list[InlineKeyboardButton]] = []
    if name == "main":
        text = t(PICK_PROMPT, hint=_e(key_hint)) if key_hint else t(PROVIDER_PROMPT)
        if not waiting:
            rows.append([InlineKeyboardButton(t(DETECT), callback_data=_data("p", AUTO, nonce))])
        rows += _provider_rows(t, shown, nonce)
        relay = InlineKeyboardButton(t(RELAY_PAGE), callback_data=_data("pg", "relay", nonce))
        more = InlineKeyboardButton(t(MORE_PAGE), callback_data=_data("pg", "more", nonce))
        rows.append([relay, more])
        if waiting:
            rows.append([InlineKeyboardButton(t(BACK), callback_data=_data("pg", "pick", nonce))])
    else:
        text = t(RELAY_TITLE) if name == "relay" else t(MORE_TITLE)
        if name == "relay":
            rows.append(
                [InlineKeyboardButton(t(DETECT_SITE), callback_data=_data("p", SITE, nonce))]
            )
        rows += _provider_rows(t, shown, nonce)
        rows.append([InlineKeyboardButton(t(BACK), callback_data=_data("pg", "main", nonce))])
    hints = _hints(t, shown)
    return (f"{text}\n\n{hints}" if hints else text), InlineKeyboardMarkup(rows)


def _pick(
    t: Translator,
    providers: Sequence[Provider],
    nonce: str,
    key_hint: str | None,
    candidates: Sequence[str],
    why: str | None,
) -> tuple[str, InlineKeyboardMarkup]:
    by_id = {p.id: p for p in providers}
    shown = [by_id[c] for c in candidates if c in by_id]
    if not shown:  # nothing fits: the full picker, without "Detect automatically"
        text, markup = page(t, providers, "main", nonce, key_hint=key_hint or "…")
        return f"{t(WHY_SHAPE)}\n\n{text}", markup
    lines = [t(PICK_SITE) if why == "site" else t(PICK_PROMPT, hint=_e(key_hint or "…"))]
    names = ", ".join(_e(title(t, p)) for p in shown)
    if why == "site":
        lines.append(t(WHY_SITE))
    elif why == "prefix" and len(shown) > 1:
        bare_sk = (key_hint or "").startswith("sk-")
        lines.append(t(WHY_SK if bare_sk else WHY_PREFIX, names=names))
    rows = _provider_rows(t, shown, nonce)
    rows.append([InlineKeyboardButton(t(OTHER_PAGE), callback_data=_data("pg", "main", nonce))])
    text = "\n".join(lines) + "\n\n" + _hints(t, shown)
    return text, InlineKeyboardMarkup(rows)
