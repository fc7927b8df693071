"""Google Gemini API keys: validity only — Google offers no balance API (docs/providers.md
§gemini).

`GET /v1beta/models?pageSize=1` with the key in the `x-goog-api-key` header (never in the
query string) costs nothing and tells a working key from a bad one. Since 2026 the Gemini
API is prepaid (https://ai.google.dev/gemini-api/docs/billing); exhausted credit shows up as
HTTP 429 `RESOURCE_EXHAUSTED` "Your prepayment credits are depleted" — that is "out of
credit" (state EXHAUSTED), not rate limiting. Errors come as Google's
`{"error": {"code", "message", "status", "details": [{"reason": …}]}}`: API_KEY_INVALID and
friends are a rejected key.

Key shapes: `AIza` + 35 characters (Google API keys); `AQ.` was reported once for newer
keys (a forum thread), so it is only a possible match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import api_root
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider
from bot.i18n import N_

_AIZA = re.compile(r"^AIza[0-9A-Za-z_-]{35}$")
_KEY_REASONS = ("API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED")
_PREPAY_WORDS = ("prepayment credits are depleted", "prepayment credit", "credits are depleted")
_MAX_ERROR_TEXT = 2000


class GeminiProvider(Provider):
    id = "gemini"
    title = "Google Gemini"
    hint = "Google Gemini API key (validity only, no balance API)"
    kind = FigureKind.VALIDITY
    default_base_url = "https://generativelanguage.googleapis.com"
    order = 170
    explanations: ClassVar[Mapping[str, str]] = {
        "no_balance_api": N_(
            "Google shows Gemini credit only in AI Studio and Cloud Billing; the key works."
        ),
        "prepay_depleted": N_(
            "The key works, but the Gemini prepayment credits are used up: top up in AI Studio."
        ),
    }

    def detect(self, key: str) -> Match:
        if _AIZA.match(key):
            return Match.CERTAIN
        return Match.POSSIBLE if key.startswith("AQ.") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = api_root(ctx.base_url).removesuffix("/v1beta")
        reply = await ctx.http.get(
            f"{root}/v1beta/models",
            headers={"x-goog-api-key": ctx.key.reveal()},
            params={"pageSize": "1"},
        )
        error = _google_error(reply)
        if reply.status == 429 and any(w in error["message"] for w in _PREPAY_WORDS):
            return BalanceResult(
                provider=self.id,
                kind=FigureKind.VALIDITY,
                state=KeyState.EXHAUSTED,
                extras={"hint": "prepay_depleted"},
                fetched_at=ctx.now,
            )
        if reply.status in (401, 403) or (
            reply.status == 400
            and (
                any(reason in error["reasons"] for reason in _KEY_REASONS)
                or "api key" in error["message"]
            )
        ):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if reply.status != 200:
            raise BillingError(
                ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status
            )
        body = reply.json()
        if not isinstance(body, dict) or body.get("error"):
            raise BillingError(ErrorKind.MALFORMED, "not a model list", status=200)
        if not isinstance(body.get("models"), list):
            raise BillingError(ErrorKind.MALFORMED, "model list missing", status=200)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.VALIDITY,
            extras={"hint": "no_balance_api"},
            fetched_at=ctx.now,
        )


def _google_error(reply: HttpReply) -> dict[str, Any]:
    """`{"message": lower-case text, "reasons": [...]}` of a Google error body (or empties)."""
    out: dict[str, Any] = {"message": "", "reasons": []}
    if reply.status == 200 or reply.looks_html:
        return out
    body = reply.json_or_none()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return out
    message = error.get("message")
    if isinstance(message, str):
        out["message"] = message[:_MAX_ERROR_TEXT].lower()
    details = error.get("details")
    if isinstance(details, list):
        out["reasons"] = [
            d.get("reason") for d in details[:10] if isinstance(d, dict) and d.get("reason")
        ]
    return out


PROVIDER = GeminiProvider()
