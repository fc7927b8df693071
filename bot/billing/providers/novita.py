"""Novita AI: `GET /openapi/v1/billing/balance/detail` with the API key (docs/providers.md §novita).

Amounts are strings in 1/10000 USD (`"10000"` is $1.00). They are converted by shifting
the decimal exponent (`scaleb(-4)`), which is exact: no division rounding, no floats.
docs/providers.md §novita: no key prefix is documented, so detection never claims a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind
from bot.billing.providers._parse import (
    api_root,
    get_json_object,
    plain,
    to_decimal,
)
from bot.billing.providers.base import FetchContext, Match, Provider

#: Novita's money unit is 1/10000 USD: 10^-4.
_UNIT_EXPONENT = -4
_EXTRAS = (
    ("cashBalance", "cash"),
    ("creditLimit", "credit_limit"),
    ("pendingCharges", "pending_charges"),
    ("outstandingInvoices", "outstanding_invoices"),
)


class NovitaProvider(Provider):
    id = "novita"
    title = "Novita AI"
    hint = "Novita AI (api.novita.ai)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.novita.ai"
    order = 100

    def detect(self, key: str) -> Match:
        return Match.NO  # no documented key shape; the user picks Novita explicitly

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = f"{_site_root(ctx.base_url)}/openapi/v1/billing/balance/detail"
        body = await get_json_object(ctx, url)
        if body.get("availableBalance") is None:
            raise _error_for(body)

        extras: dict[str, Any] = {}
        for src, name in _EXTRAS:
            if body.get(src) is not None:
                extras[name] = plain(to_usd(body[src]))
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=to_usd(body["availableBalance"]),
            extras=extras,
            fetched_at=ctx.now,
        )


def _site_root(base_url: str) -> str:
    """Accept the OpenAI-compatible base people copy (`https://api.novita.ai/v3/openai`)."""
    root = api_root(base_url)
    for suffix in ("/v3/openai", "/openai"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


def to_usd(value: Any) -> Decimal:
    """1/10000-USD units → USD, exactly."""
    return to_decimal(value).scaleb(_UNIT_EXPONENT)


def _error_for(body: Mapping[str, Any]) -> BillingError:
    """No `availableBalance`: an error body at HTTP 200 (`code`/`reason`/`error`) or a bad shape."""
    code = body.get("code")
    error = body.get("error")
    if code in (401, 403) or (isinstance(error, dict) and error.get("code") in (401, 403)):
        return BillingError(ErrorKind.KEY_REJECTED, "auth error in HTTP 200 body", status=200)
    if code is not None or error or body.get("reason") is not None:
        return BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)
    return BillingError(ErrorKind.MALFORMED, "no availableBalance", status=200)


PROVIDER = NovitaProvider()
