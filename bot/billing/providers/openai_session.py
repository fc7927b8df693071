"""OpenAI browser session keys (`sess-…`): the 2023 `credit_grants` endpoint (legacy).

OpenAI restricted `/dashboard/billing/credit_grants` to session keys in April 2023; an
ordinary `sk-` key gets 403 "must be made with a session key", which we report as the
wrong key type rather than a rejected key (docs/providers.md §openai-session).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._openai_common import error_text, has_error_body
from bot.billing.providers._parse import api_root, from_unix, to_decimal
from bot.billing.providers.base import FetchContext, Match, Provider


class OpenAISessionProvider(Provider):
    id = "openai-session"
    title = "OpenAI (session key)"
    hint = "OpenAI browser session key sess- (legacy credit grants)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.openai.com"
    needs_base_url = False
    order = 40
    billing_url = "https://platform.openai.com/settings/organization/billing/overview"

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("sess-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = f"{api_root(ctx.base_url)}/dashboard/billing/credit_grants"
        reply = await ctx.http.get(url, headers=ctx.bearer())
        if reply.status in (401, 403):
            if "session key" in error_text(reply):
                raise BillingError(
                    ErrorKind.WRONG_KEY_TYPE, "needs a browser session key", status=reply.status
                )
            raise BillingError(ErrorKind.KEY_REJECTED, "session key rejected", status=reply.status)
        reply.raise_for_common()
        if reply.status == 404 or reply.looks_html:
            raise BillingError(
                ErrorKind.NO_BALANCE_API, "no credit grants endpoint", status=reply.status
            )
        if reply.status != 200:
            raise BillingError(
                ErrorKind.PROVIDER_ERROR, f"unexpected HTTP {reply.status}", status=reply.status
            )
        payload = reply.json()
        if has_error_body(payload):
            raise BillingError(ErrorKind.PROVIDER_ERROR, "error body with HTTP 200", status=200)
        if not isinstance(payload, dict) or payload.get("total_available") is None:
            raise BillingError(ErrorKind.MALFORMED, "credit summary missing", status=200)
        remaining = to_decimal(payload["total_available"])
        total = _decimal_or_none(payload.get("total_granted"))
        used = _decimal_or_none(payload.get("total_used"))
        expiries = _grant_expiries(payload.get("grants"))
        future = [when for when in expiries if when > ctx.now]
        state = KeyState.OK
        if expiries and not future and remaining <= 0:
            state = KeyState.EXPIRED  # every grant lapsed: the reason there is nothing left
        elif remaining <= 0:
            state = KeyState.EXHAUSTED
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=used,
            expires_at=min(future) if future else None,
            state=state,
        )


def _grant_expiries(grants: Any) -> list[datetime]:
    """Expiry of every grant that states one (`grants.data[].expires_at`, unix seconds)."""
    items = grants.get("data") if isinstance(grants, dict) else grants
    if not isinstance(items, list):
        return []
    found: list[datetime] = []
    for item in items:
        if isinstance(item, dict):
            when = from_unix(item.get("expires_at"))
            if when is not None:
                found.append(when)
    return found


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


PROVIDER = OpenAISessionProvider()
