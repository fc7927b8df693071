"""Vercel AI Gateway: `GET https://ai-gateway.vercel.sh/v1/credits` (Bearer AI Gateway key).

The answer is `{"balance": "95.50", "total_used": "4.50"}`: USD as decimal strings, for the
whole team (per-key budgets are configured separately and not reported here). `total_used`
is all-time usage, so it is shown as "used", never subtracted from anything.
Source: docs/providers.md ("vercel"), https://vercel.com/docs/ai-gateway/usage.
"""

from __future__ import annotations

from decimal import Decimal

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount, api_root, error_object, get_json_object
from bot.billing.providers.base import FetchContext, Provider


class VercelProvider(Provider):
    id = "vercel"
    title = "Vercel AI Gateway"
    hint = "Vercel AI Gateway (ai-gateway.vercel.sh): team credits"
    kind = FigureKind.BALANCE
    default_base_url = "https://ai-gateway.vercel.sh"
    order = 150

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        body = await get_json_object(ctx, f"{api_root(ctx.base_url)}/v1/credits")
        if body.get("balance") is None:
            raise error_object(body) or BillingError(ErrorKind.MALFORMED, "no balance")
        balance = amount(body["balance"])
        used = (
            None
            if body.get("total_used") is None
            else amount(body["total_used"], minimum=Decimal(0))
        )
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=balance,
            used=used,
            state=KeyState.EXHAUSTED if balance <= 0 else KeyState.OK,
            fetched_at=ctx.now,
        )


PROVIDER = VercelProvider()
