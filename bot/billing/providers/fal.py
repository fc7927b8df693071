"""fal.ai: `GET https://api.fal.ai/v1/account/billing?expand=credits`, `Authorization: Key …`.

The answer carries `credits.current_balance` in `credits.currency` (and `username`, which is
not kept). Only keys with the `billing:usage:read` permission may read it (the BILLING,
READONLY and FULL presets on fal.ai/dashboard/keys): an inference-only key gets HTTP 403 —
a wrong key type, not a revoked one. A locked account answers 403 with
`{"detail": "User is locked. Reason: …"}`: "Exhausted balance" and "TOP_UP" are an account
out of credit (state EXHAUSTED, balance 0), "Admin lock" is an account fal has locked (key
rejected). Source: docs/providers.md ("fal"), https://fal.ai/docs/platform-apis/v1/account/billing.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount, api_root, json_object, raise_for_status
from bot.billing.providers.base import FetchContext, HttpReply, Provider
from bot.i18n import N_

_CURRENCY = re.compile(r"[A-Z]{3}")
_OUT_OF_CREDIT = ("exhausted balance", "top_up", "top up")


class FalProvider(Provider):
    id = "fal"
    title = "fal.ai"
    hint = "fal.ai (api.fal.ai): credits, needs a key with billing read access"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.fal.ai"
    order = 170
    billing_url = "https://fal.ai/dashboard/billing"
    explanations: ClassVar[Mapping[str, str]] = {
        "wrong_key_type": N_(
            "This fal key can't read billing: create one with the billing read permission "
            "(BILLING, READONLY or FULL preset)."
        ),
    }

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        headers = {"Authorization": f"Key {ctx.key.reveal()}"}
        reply = await ctx.http.get(
            f"{api_root(ctx.base_url)}/v1/account/billing",
            headers=headers,
            params={"expand": "credits"},
        )
        if reply.status == 403:
            return self._forbidden(ctx, reply)
        raise_for_status(reply)
        body = json_object(reply)
        credits = body.get("credits")
        if not isinstance(credits, dict) or credits.get("current_balance") is None:
            # HTTP 200 without a usable credits block: never a zero balance.
            raise BillingError(ErrorKind.MALFORMED, "no credits.current_balance")
        balance = amount(credits["current_balance"])
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=_currency(credits.get("currency")),
            remaining=balance,
            state=KeyState.EXHAUSTED if balance <= 0 else KeyState.OK,
            fetched_at=ctx.now,
        )

    def _forbidden(self, ctx: FetchContext, reply: HttpReply) -> BalanceResult:
        if reply.looks_html:  # a proxy's or firewall's page: says nothing about the key
            raise BillingError(ErrorKind.PROVIDER_ERROR, "HTTP 403 page", status=403)
        detail = _detail(reply)
        if "user is locked" in detail:
            if any(word in detail for word in _OUT_OF_CREDIT):
                return BalanceResult(
                    provider=self.id,
                    kind=FigureKind.BALANCE,
                    currency="USD",
                    remaining=Decimal(0),  # fal locks the account when the balance runs out
                    state=KeyState.EXHAUSTED,
                    extras={"locked": "out_of_credit"},
                    fetched_at=ctx.now,
                )
            raise BillingError(ErrorKind.KEY_REJECTED, "account locked", status=403)
        raise BillingError(ErrorKind.WRONG_KEY_TYPE, "key lacks billing read", status=403)


def _detail(reply: HttpReply) -> str:
    """fal's `detail` text, lower-cased, for classification only (never shown or logged)."""
    body = None if reply.looks_html else reply.json_or_none()
    detail: Any = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI-style [{"msg": …}]
        detail = " ".join(str(d.get("msg", "")) for d in detail[:5] if isinstance(d, dict))
    return detail[:500].lower() if isinstance(detail, str) else ""


def _currency(value: Any) -> str:
    """The answer's ISO code; USD when absent (fal bills in USD); garbage is MALFORMED."""
    if value is None:
        return "USD"
    if isinstance(value, str) and _CURRENCY.fullmatch(value.strip().upper()):
        return value.strip().upper()
    raise BillingError(ErrorKind.MALFORMED, "credits.currency is not a currency code")


PROVIDER = FalProvider()
