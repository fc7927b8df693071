"""Ordinary OpenAI API keys: OpenAI exposes no balance for them, only whether they work.

`GET /v1/models` costs nothing and tells a valid key from a revoked one (docs/providers.md §openai).
A 429 `insufficient_quota` means the key is fine but its credit is used up; we still do not
know a number, so the result says EXHAUSTED with no figures.
"""

from __future__ import annotations

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._openai_common import error_code, error_text, has_error_body
from bot.billing.providers._parse import api_root
from bot.billing.providers.base import FetchContext, Match, Provider

_QUOTA_CODES = ("insufficient_quota", "credit_balance_exhausted")
_OWN_PREFIXES = ("sk-proj-", "sk-svcacct-")
_OPENAI_MARKER = "T3BlbkFJ"  # base64 "OpenAI", inside every real OpenAI key


class OpenAIProvider(Provider):
    id = "openai"
    title = "OpenAI"
    hint = "OpenAI API key (validity only, no balance API)"
    kind = FigureKind.VALIDITY
    default_base_url = "https://api.openai.com"
    needs_base_url = False
    order = 20
    billing_url = "https://platform.openai.com/settings/organization/billing/overview"

    def detect(self, key: str) -> Match:
        if key.startswith(("sk-admin-", "sess-")):
            return Match.NO  # admin keys cannot call /v1/models; session keys are legacy
        if key.startswith(_OWN_PREFIXES):
            return Match.CERTAIN
        if key.startswith("sk-") and _OPENAI_MARKER in key:
            return Match.CERTAIN
        return Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(f"{api_root(ctx.base_url)}/v1/models", headers=ctx.bearer())
        if reply.status == 401:
            text = error_text(reply)
            if "deactivated" in text:
                detail = "deactivated account"
            elif "member of an organization" in text:
                detail = "no organization"
            elif "ip not authorized" in text:
                detail = "IP not allowed"
            else:
                detail = "key rejected"
            raise BillingError(ErrorKind.KEY_REJECTED, detail, status=401)
        if reply.status == 403:
            text = error_text(reply)
            detail = "region not supported" if "not supported" in text else "access refused"
            raise BillingError(ErrorKind.KEY_REJECTED, detail, status=403)
        if reply.status == 429 and (
            error_code(reply) in _QUOTA_CODES or "exceeded your current quota" in error_text(reply)
        ):
            return BalanceResult(
                provider=self.id,
                kind=FigureKind.VALIDITY,
                state=KeyState.EXHAUSTED,
                extras={"hint": "no_balance_api", "insufficient_quota": True},
            )
        reply.raise_for_common()
        if reply.status != 200:
            raise BillingError(
                ErrorKind.PROVIDER_ERROR, f"unexpected HTTP {reply.status}", status=reply.status
            )
        payload = reply.json()  # HTML or garbage → MALFORMED
        if has_error_body(payload):
            raise BillingError(ErrorKind.PROVIDER_ERROR, "error body with HTTP 200", status=200)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise BillingError(ErrorKind.MALFORMED, "model list missing", status=200)
        return BalanceResult(
            provider=self.id, kind=FigureKind.VALIDITY, extras={"hint": "no_balance_api"}
        )


PROVIDER = OpenAIProvider()
