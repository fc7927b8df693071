"""DeepInfra: prepaid funds from `GET /payment/checklist?compute_owed=true` (Bearer API key).

`stripe_balance` is the Stripe customer balance in USD: NEGATIVE means prepaid funds,
positive means money owed. `recent` is usage not yet invoiced, so what can still be spent
is `−stripe_balance − recent`; below zero that is money owed (shown as 0 left, the debt in
extras). `limit` is the account's spending limit (absent, null or ≤ 0: none), `suspended`
blocks the account (state EXHAUSTED). The answer also carries the account's postal address
and other personal details: only the figures above are read, and nothing else of the body
is kept, logged or stored. Source: docs/providers.md ("deepinfra").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount, api_root, json_object, plain, raise_for_status
from bot.billing.providers.base import FetchContext, Provider

_ZERO = Decimal(0)


class DeepInfraProvider(Provider):
    id = "deepinfra"
    title = "DeepInfra"
    hint = "DeepInfra (api.deepinfra.com): prepaid balance"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.deepinfra.com"
    order = 140
    billing_url = "https://deepinfra.com/dash/billing"

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(
            f"{_site_root(ctx.base_url)}/payment/checklist",
            headers=ctx.bearer(),
            params={"compute_owed": "true"},
        )
        raise_for_status(reply)
        body = json_object(reply)
        if body.get("stripe_balance") is None:
            if body.get("error") or body.get("detail"):
                raise BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)
            raise BillingError(ErrorKind.MALFORMED, "no stripe_balance")
        stripe = amount(body["stripe_balance"])
        recent = _ZERO if body.get("recent") is None else amount(body["recent"], minimum=_ZERO)
        spendable = -stripe - recent
        extras: dict[str, Any] = {"recent": plain(recent)}
        if spendable < 0:
            extras["owed"] = plain(-spendable)
        limit = body.get("limit")
        if limit is not None and amount(limit) > 0:
            extras["spending_limit"] = plain(amount(limit))
        suspended = body.get("suspended") is True
        if suspended:
            extras["suspended"] = True
        remaining = max(_ZERO, spendable)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            state=KeyState.EXHAUSTED if suspended or remaining <= 0 else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )


def _site_root(base_url: str) -> str:
    """Accept the OpenAI-compatible base people copy (`https://api.deepinfra.com/v1/openai`)."""
    root = api_root(base_url)
    for suffix in ("/v1/openai", "/openai"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


PROVIDER = DeepInfraProvider()
