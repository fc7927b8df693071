"""StepFun (阶跃星辰): `GET /v1/accounts` with the normal API key (docs/providers.md §stepfun).

`balance` is what is available; `total_cash_balance` / `total_voucher_balance` split it
into topped-up and granted money and go to extras. The documentation states no currency:
CNY is presumed (unverified; StepFun is a China-market platform billing in yuan), and the
per-key option `currency` (CNY or USD) can override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind
from bot.billing.providers._parse import (
    api_root,
    get_json_object,
    is_bare_sk,
    plain,
    to_decimal,
)
from bot.billing.providers.base import FetchContext, Match, Provider

_OPTION_CURRENCIES = frozenset({"CNY", "USD"})
_ACCOUNT_TYPES = frozenset({"prepaid", "postpaid"})


class StepFunProvider(Provider):
    id = "stepfun"
    title = "StepFun"
    hint = "StepFun (api.stepfun.com)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.stepfun.com"
    order = 90

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        body = await get_json_object(ctx, f"{api_root(ctx.base_url)}/v1/accounts")
        _raise_for_error_body(body)
        if body.get("balance") is None:
            raise BillingError(ErrorKind.MALFORMED, "no balance")

        extras: dict[str, Any] = {}
        for src, name in (("total_cash_balance", "cash"), ("total_voucher_balance", "voucher")):
            if body.get(src) is not None:
                extras[name] = plain(to_decimal(body[src]))
        account_type = body.get("type")
        if isinstance(account_type, str) and account_type in _ACCOUNT_TYPES:  # fixed words only
            extras["account_type"] = account_type

        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=_currency(ctx.options),
            remaining=to_decimal(body["balance"]),
            extras=extras,
            fetched_at=ctx.now,
        )


def _currency(options: Mapping[str, str]) -> str:
    wanted = str(options.get("currency", "")).strip().upper()
    return wanted if wanted in _OPTION_CURRENCIES else "CNY"  # CNY: presumed, unverified


def _raise_for_error_body(body: Mapping[str, Any]) -> None:
    """An HTTP 200 carrying an OpenAI-style `error` or another object is not an account."""
    error = body.get("error")
    if error:
        error_type = str(error.get("type", "")).lower() if isinstance(error, dict) else ""
        if "auth" in error_type:
            raise BillingError(ErrorKind.KEY_REJECTED, "auth error in HTTP 200 body", status=200)
        raise BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)
    obj = body.get("object")
    if obj is not None and obj != "account":
        raise BillingError(ErrorKind.MALFORMED, "reply is not an account object")


PROVIDER = StepFunProvider()
