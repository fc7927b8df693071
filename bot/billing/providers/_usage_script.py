"""The cc-switch "usage script" answer, read as a balance (docs/providers.md §relay).

Many Chinese relays publish their balance for desktop tools in one shape, defined by
cc-switch (farion1231/cc-switch `src-tauri/src/usage_script.rs`, validate_single_usage):
an object, or a non-empty list of objects, each with optional
`{isValid, invalidMessage, remaining, unit, total, used, planName, extra}` — booleans,
strings and numbers as named, `null` allowed. sub2api's `GET /v1/usage` answers in it
natively; a relay without a file and a declared provider without `response` are read this
way too.

Reading rules (honest numbers): a list is read from its first entry that is not
`isValid: false` (the others' plan names become an extra); `remaining: -1` is sub2api's
"unlimited"; `unit` that is a 3-letter code is a currency, any other word a non-money unit
(never summed with money); a figure the answer did not give is None, never zero; an entry
with `isValid: false` is a refused key unless its message says exhausted or expired.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit
from bot.billing.providers._parse import amount_or_none

FIELDS = ("isValid", "invalidMessage", "remaining", "unit", "total", "used", "planName", "extra")
MARKERS = ("isValid", "remaining", "planName", "invalidMessage")
UNLIMITED = Decimal(-1)
MAX_ENTRIES = 20
MAX_TEXT = 100
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_EXHAUSTED = ("额度已用尽", "已用尽", "已用完", "余额不足", "额度不足", "exhausted", "insufficient",
              "used up", "quota exceeded")  # fmt: skip
_EXPIRED = ("已过期", "过期", "expired")
#: Non-money units by the words relays use; any other word is kept as the unit's label.
UNIT_WORDS = {
    "tokens": Unit.TOKENS, "token": Unit.TOKENS,
    "次": Unit.REQUESTS, "requests": Unit.REQUESTS, "request": Unit.REQUESTS,
    "calls": Unit.REQUESTS,
    "points": Unit.POINTS, "point": Unit.POINTS, "积分": Unit.POINTS, "点": Unit.POINTS,
    "characters": Unit.CHARACTERS, "chars": Unit.CHARACTERS, "字符": Unit.CHARACTERS,
}  # fmt: skip


def looks_like_usage_script(payload: Any) -> bool:
    """True when the answer is in the cc-switch shape (so it is worth reading as one)."""
    entries = payload if isinstance(payload, list) else [payload]
    if not entries or len(entries) > MAX_ENTRIES:
        return False
    return all(isinstance(e, dict) and any(k in e for k in MARKERS) for e in entries)


def read_usage_script(
    payload: Any,
    *,
    provider: str,
    now: datetime,
    default_currency: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> BalanceResult:
    """The answer as a `BalanceResult`, or BillingError (MALFORMED, KEY_REJECTED)."""
    entries = payload if isinstance(payload, list) else [payload]
    if not entries or len(entries) > MAX_ENTRIES:
        raise BillingError(ErrorKind.MALFORMED, "usage answer has no entries")
    for entry in entries:
        _check_types(entry)
    valid = [e for e in entries if e.get("isValid") is not False]
    if not valid:
        return _invalid(entries[0], provider=provider, now=now)
    entry = valid[0]
    out: dict[str, Any] = dict(extras or {})
    plan = _text(entry.get("planName"))
    if plan:
        out["plan"] = plan
    note = _text(entry.get("extra"))
    if note:
        out["note"] = note
    others = [p for p in (_text(e.get("planName")) for e in valid[1:]) if p]
    if others:
        out["other_plans"] = ", ".join(others)[:MAX_TEXT]

    currency, unit, unit_extras = unit_of(entry.get("unit"), default_currency)
    out.update(unit_extras)
    remaining = amount_or_none(entry.get("remaining"))
    total = amount_or_none(entry.get("total"))
    used = amount_or_none(entry.get("used"))
    unlimited = remaining == UNLIMITED
    if unlimited:
        remaining = None
    if remaining is None and total is None and used is None and not unlimited:
        return BalanceResult(provider=provider, kind=FigureKind.VALIDITY, extras=out,
                             fetched_at=now)  # fmt: skip
    state = KeyState.EXHAUSTED if remaining is not None and remaining <= 0 else KeyState.OK
    return BalanceResult(
        provider=provider,
        kind=FigureKind.BALANCE,
        currency=currency,
        remaining=remaining,
        total=None if unlimited else total,
        used=used,
        unlimited=unlimited,
        state=state,
        extras=out,
        fetched_at=now,
        unit=unit,
    )


def unit_of(
    raw: Any, default_currency: str | None
) -> tuple[str | None, Unit | None, dict[str, Any]]:
    """(currency, unit, extras) for a `unit` field: "USD" is money; "tokens", "次",
    "积分" are counted units with no currency; another word is kept as a label only."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default_currency, None, {}
    if not isinstance(raw, str):
        raise BillingError(ErrorKind.MALFORMED, "unit is not text")
    word = raw.strip()
    if _CURRENCY.match(word.upper()) and word.isascii() and word.isalpha():
        return word.upper(), None, {}
    known = UNIT_WORDS.get(word.lower())
    if known is not None:
        return None, known, {}
    return None, None, {"unit_label": _text(word) or "?"}


def state_from_message(text: str) -> KeyState | None:
    """EXHAUSTED / EXPIRED when a refusal's words say so (classification only)."""
    lowered = text.lower()
    if any(m in lowered for m in _EXHAUSTED):
        return KeyState.EXHAUSTED
    if any(m in lowered for m in _EXPIRED):
        return KeyState.EXPIRED
    return None


def _invalid(entry: Mapping[str, Any], *, provider: str, now: datetime) -> BalanceResult:
    message = entry.get("invalidMessage")
    state = state_from_message(message) if isinstance(message, str) else None
    if state is None:
        raise BillingError(ErrorKind.KEY_REJECTED, "isValid is false", status=200)
    return BalanceResult(
        provider=provider,
        kind=FigureKind.BALANCE,
        remaining=Decimal(0) if state is KeyState.EXHAUSTED else None,
        state=state,
        extras={"source": "invalid_message"},
        fetched_at=now,
    )


def _check_types(entry: Any) -> None:
    """cc-switch's own type rules: each field absent, null, or of its one type."""
    if not isinstance(entry, dict):
        raise BillingError(ErrorKind.MALFORMED, "usage entry is not an object")
    expect: Sequence[tuple[str, tuple[type, ...]]] = (
        ("isValid", (bool,)),
        ("invalidMessage", (str,)),
        ("unit", (str,)),
        ("planName", (str,)),
        ("extra", (str,)),
    )
    for name, types in expect:
        value = entry.get(name)
        if value is not None and not isinstance(value, types):
            raise BillingError(ErrorKind.MALFORMED, f"usage field {name} has the wrong type")
    for name in ("remaining", "total", "used"):
        value = entry.get(name)
        if isinstance(value, bool) or not (value is None or isinstance(value, (int, float, str))):
            raise BillingError(ErrorKind.MALFORMED, f"usage field {name} is not a number")


def _text(value: Any) -> str:
    """A short printable string from the answer (plan names reach chat and terminals)."""
    if not isinstance(value, str):
        return ""
    cleaned = "".join(c for c in value if c.isprintable()).strip()
    return cleaned[:MAX_TEXT]
