"""Shared parsing helpers for provider replies: exact money and honest timestamps.

Providers send amounts as JSON numbers or strings; both go through `to_decimal`, which
never does binary float arithmetic and refuses anything that is not a finite number, so a
bad field becomes a MALFORMED error instead of a made-up zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.providers.base import FetchContext, HttpReply

__all__ = [
    "api_root",
    "from_iso",
    "from_unix",
    "is_bare_sk",
    "json_object",
    "plain",
    "raise_for_status",
    "to_decimal",
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


def _from_text(text: str) -> Decimal:
    # Decimal() also accepts "1_000" and unicode digits; amounts from an API are plain ASCII.
    if not text or "_" in text or not text.isascii():
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BillingError(ErrorKind.MALFORMED, "amount is not a number") from None


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
