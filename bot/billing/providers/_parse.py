"""Shared parsing helpers for provider replies: exact money and honest timestamps.

Providers send amounts as JSON numbers or strings; both go through `to_decimal`, which
never does binary float arithmetic and refuses anything that is not a finite number, so a
bad field becomes a MALFORMED error instead of a made-up zero.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import Window
from bot.billing.providers.base import FetchContext, HttpReply

__all__ = [
    "MAX_AMOUNT",
    "amount",
    "amount_or_none",
    "api_root",
    "error_object",
    "from_iso",
    "from_unix",
    "from_unix_ms",
    "in_range",
    "is_bare_sk",
    "json_object",
    "percent",
    "period_name",
    "plain",
    "raise_for_status",
    "short_text",
    "to_decimal",
    "unique_name",
    "window",
]


def to_decimal(value: Any) -> Decimal:
    """An exact Decimal from an int, a float (via its shortest repr) or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = _from_text(str(value))  # str(0.1) == "0.1": no binary artifacts
    elif isinstance(value, str):
        result = _from_text(value.strip())
    else:
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number")
    if not result.is_finite():
        raise BillingError(ErrorKind.MALFORMED, "amount is not a finite number")
    return result


def in_range(value: Decimal, magnitude: Decimal) -> bool:
    """Whether a computed figure can be shown and stored: finite and |x| < `magnitude`
    (formatting quantizes in a 28-digit context; 1E+40 would break it)."""
    return value.is_finite() and abs(value) < magnitude


def amount_or_none(value: Any) -> Decimal | None:
    """`amount`, with JSON null (absent) as None — never as zero."""
    return None if value is None else amount(value)


def window(name: str, **fields: Any) -> Window:
    """A `Window`, or MALFORMED when the provider's figures break its rules (negative,
    over 100 %, …): hostile numbers never become a crash."""
    try:
        return Window(name, **fields)
    except (ValueError, TypeError):
        raise BillingError(ErrorKind.MALFORMED, "window figures out of range") from None


def _from_text(text: str) -> Decimal:
    # Decimal() also accepts "1_000" and unicode digits; amounts from an API are plain ASCII.
    if not text or "_" in text or not text.isascii():
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number") from None


#: The largest figure a provider may send (money, points, characters, tokens). Anything
#: above is garbage or an attack (`1E+40`, a 60-digit integer) and would break formatting.
MAX_AMOUNT = Decimal("1e15")
_MAX_DIGITS = 24


def amount(value: Any, *, minimum: Decimal | None = None) -> Decimal:
    """`to_decimal`, bounded: |value| <= MAX_AMOUNT, at most 24 significant digits, and not
    below `minimum` when given (counts and limits pass `Decimal(0)`). Else MALFORMED."""
    result = to_decimal(value)
    if abs(result) > MAX_AMOUNT or len(result.as_tuple().digits) > _MAX_DIGITS:
        raise BillingError(ErrorKind.MALFORMED, "amount out of range")
    if minimum is not None and result < minimum:
        raise BillingError(ErrorKind.MALFORMED, "amount below its minimum")
    return result


_HUNDRED = Decimal(100)
#: A used share a little over 100 % (a request that crossed the limit) is shown as 100 %.
_PERCENT_SLACK = Decimal(1000)


def percent(value: Any) -> Decimal:
    """A used share in percent, 0–100: over 100 (up to 1000) means "over the limit" and is
    capped at 100; negative or absurd values are MALFORMED."""
    result = amount(value)
    if result < 0 or result > _PERCENT_SLACK:
        raise BillingError(ErrorKind.MALFORMED, "percentage out of range")
    return min(result, _HUNDRED)


#: Unix-millisecond timestamps are accepted up to the year 9999.
_MAX_UNIX_MS = Decimal(253_402_214_400_000)


def from_unix_ms(millis: Any) -> datetime | None:
    """Aware UTC datetime from unix milliseconds; None when absent or non-positive."""
    if millis is None:
        return None
    value = to_decimal(millis)
    if value <= 0:
        return None
    if value > _MAX_UNIX_MS:
        raise BillingError(ErrorKind.MALFORMED, "timestamp out of range")
    return from_unix(value / 1000)


def short_text(value: Any, limit: int = 32) -> str | None:
    """A provider's label (plan or model name) safe to store and show: printable, no
    control or format characters, whitespace collapsed, at most `limit` characters;
    None when there is nothing left."""
    if not isinstance(value, str):
        return None
    kept = "".join(c if unicodedata.category(c)[0] not in "CZ" else " " for c in value[: limit * 4])
    text = " ".join(kept.split())[:limit].strip()
    return text or None


#: Window lengths with a common name (the renderer translates these ids).
_PERIOD_NAMES = {timedelta(hours=5): "5h", timedelta(days=1): "daily", timedelta(days=7): "weekly"}


def period_name(period: timedelta | None, default: str = "plan") -> str:
    """A window's short id from its length: "5h", "daily", "weekly", else "3h", "2d"…"""
    if period is None or period <= timedelta(0):
        return default
    if period in _PERIOD_NAMES:
        return _PERIOD_NAMES[period]
    minutes = int(period.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}min"


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name #2`, `name #3`… when a window of that name exists already."""
    if name not in taken:
        return name
    n = 2
    while f"{name} #{n}" in taken:
        n += 1
    return f"{name} #{n}"


def from_unix(seconds: Any) -> datetime | None:
    """Aware UTC datetime from unix seconds; None when absent or non-positive.

    Non-positive values are treated as "not set" (relays use 0 for "never"); whether that
    means "never expires" is the caller's decision.
    """
    if seconds is None:
        return None
    value = to_decimal(seconds)
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BillingError(ErrorKind.MALFORMED, "timestamp out of range") from None


def from_iso(text: Any) -> datetime | None:
    """Aware datetime from an ISO-8601 / RFC 3339 string ("Z" allowed); None when absent.

    A timestamp without an offset is taken as UTC.
    """
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise BillingError(ErrorKind.MALFORMED, "timestamp is not a string")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BillingError(ErrorKind.MALFORMED, "timestamp is not ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


#: Prefixes of `sk-…` keys that belong to a known provider, so they are not "bare".
_KNOWN_SK_PREFIXES = ("sk-or-", "sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-")


def is_bare_sk(key: str) -> bool:
    """`sk-…` with no provider marker: DeepSeek, Moonshot, SiliconFlow, relays… (ambiguous).

    Real OpenAI keys carry `T3BlbkFJ`; they are not bare, whatever their prefix.
    """
    return (
        key.startswith("sk-") and not key.startswith(_KNOWN_SK_PREFIXES) and "T3BlbkFJ" not in key
    )


def raise_for_status(reply: HttpReply) -> None:
    """401/403 → KEY_REJECTED; 429/5xx as `raise_for_common`; other non-2xx → PROVIDER_ERROR."""
    if reply.status in (401, 403):
        raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
    reply.raise_for_common()
    if not 200 <= reply.status < 300:
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


def json_object(reply: HttpReply) -> dict[str, Any]:
    """The reply's JSON object, or MALFORMED (HTML, garbage, a list, a bare string)."""
    body = reply.json()
    if not isinstance(body, dict):
        raise BillingError(ErrorKind.MALFORMED, "reply is not a JSON object", status=reply.status)
    return body


def api_root(base_url: str) -> str:
    """Base URL without a trailing `/` or `/v1`: people paste the OpenAI-style `…/v1` base."""
    root = base_url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def plain(value: Decimal) -> str:
    """A Decimal as plain text for extras: `0.0000001`, never `1E-7`; JSON-safe."""
    return format(value, "f")


async def get_json_object(ctx: FetchContext, url: str) -> dict[str, Any]:
    """The common first step of a balance call: GET with the Bearer key, map the status,
    and insist on a JSON object. Providers then read their own fields and error codes."""
    reply = await ctx.http.get(url, headers=ctx.bearer())
    raise_for_status(reply)
    return json_object(reply)


def error_object(body: Mapping[str, Any]) -> BillingError | None:
    """An OpenAI-style `{"error": {...}}` in an HTTP 200 answer, classified by its type/code:
    auth → KEY_REJECTED, rate limit → RATE_LIMITED, anything else → PROVIDER_ERROR; None
    when there is no error. Upstream text is only read here, never passed on."""
    error = body.get("error")
    if not error:
        return None
    words = ""
    if isinstance(error, dict):
        words = " ".join(str(error.get(k, "")) for k in ("type", "code")).lower()
    if "auth" in words or "invalid_api_key" in words:
        return BillingError(ErrorKind.KEY_REJECTED, "auth error in HTTP 200", status=200)
    if "rate_limit" in words:
        return BillingError(ErrorKind.RATE_LIMITED, "rate limit in HTTP 200", status=200)
    return BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)
