"""Poe: `GET https://api.poe.com/usage/current_balance` (Bearer Poe API key).

The answer is `{"current_point_balance": <int>}`: Poe compute POINTS (subscription plus
add-on points), not money — the result has unit "points" and no currency, so it is never
shown with a currency symbol nor added into money totals. 401 `authentication_error` is a
rejected key. Source: docs/providers.md ("poe"),
https://creator.poe.com/docs/resources/usage-api.
"""

from __future__ import annotations

from decimal import Decimal

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit
from bot.billing.providers._parse import amount, api_root, error_object, get_json_object
from bot.billing.providers.base import FetchContext, Provider


class PoeProvider(Provider):
    id = "poe"
    title = "Poe"
    hint = "Poe (api.poe.com): compute points"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.poe.com"
    order = 160

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        body = await get_json_object(ctx, f"{api_root(ctx.base_url)}/usage/current_balance")
        points = body.get("current_point_balance")
        if points is None:
            raise error_object(body) or BillingError(
                ErrorKind.MALFORMED, "no current_point_balance"
            )
        balance = amount(points, minimum=Decimal(0))
        if balance != balance.to_integral_value():
            raise BillingError(ErrorKind.MALFORMED, "points are whole numbers")
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            unit=Unit.POINTS,
            remaining=balance,
            state=KeyState.EXHAUSTED if balance <= 0 else KeyState.OK,
            fetched_at=ctx.now,
        )


PROVIDER = PoeProvider()
