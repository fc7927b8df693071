"""Moonshot / Kimi: `GET /v1/users/me/balance` with the API key (docs/providers.md §moonshot).

The reply carries no currency: it is implied by the host (`api.moonshot.cn` bills in CNY,
`api.moonshot.ai` in USD). For any other host (an operator's proxy, a test server) the
per-key option `currency` (CNY or USD) decides, and CNY is the default because the
default base URL is the China site. Errors can arrive as HTTP 200 with `status: false`
or a non-zero `code`: those are failures, never a zero balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import (
    api_root,
    get_json_object,
    is_bare_sk,
    plain,
    to_decimal,
)
from bot.billing.providers.base import FetchContext, Match, Provider

_OPTION_CURRENCIES = frozenset({"CNY", "USD"})


class MoonshotProvider(Provider):
    id = "moonshot"
    title = "Moonshot (Kimi)"
    hint = "Moonshot / Kimi (api.moonshot.cn, api.moonshot.ai)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.moonshot.cn"
    order = 70
    billing_url = "https://platform.moonshot.cn/console/pay"

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = f"{api_root(ctx.base_url)}/v1/users/me/balance"
        body = await get_json_object(ctx, url)
        _raise_for_error_body(body)

        data = body.get("data")
        if not isinstance(data, dict) or data.get("available_balance") is None:
            raise BillingError(ErrorKind.MALFORMED, "no available_balance")
        available = to_decimal(data["available_balance"])
        extras: dict[str, Any] = {}
        for src, name in (("voucher_balance", "voucher"), ("cash_balance", "cash")):
            if data.get(src) is not None:
                extras[name] = plain(to_decimal(data[src]))  # cash may be negative (debt)

        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency_for(ctx.base_url, ctx.options),
            remaining=available,
            # Moonshot documents that inference is blocked once available_balance <= 0.
            state=KeyState.EXHAUSTED if available <= 0 else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )


def currency_for(base_url: str, options: Mapping[str, str]) -> str:
    """CNY for `.cn` hosts, USD for `.ai` hosts, else the `currency` option, else CNY."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if host.endswith(".cn"):
        return "CNY"
    if host.endswith(".ai"):
        return "USD"
    wanted = str(options.get("currency", "")).strip().upper()
    return wanted if wanted in _OPTION_CURRENCIES else "CNY"


def _raise_for_error_body(body: Mapping[str, Any]) -> None:
    """HTTP 200 with `status: false`, a non-zero `code` or an `error` object is a failure."""
    error = body.get("error")
    status = body.get("status")
    code = body.get("code")
    code_ok = code is None or code == "0" or (code == 0 and not isinstance(code, bool))
    if not error and status is not False and code_ok:
        return
    error_type = str(error.get("type", "")) if isinstance(error, dict) else ""
    if code in (401, 403) or "authentication" in error_type.lower():
        raise BillingError(ErrorKind.KEY_REJECTED, "auth error in HTTP 200 body", status=200)
    if code == 429 or "rate_limit" in error_type.lower():
        raise BillingError(ErrorKind.RATE_LIMITED, "rate limit in HTTP 200 body", status=200)
    raise BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)


PROVIDER = MoonshotProvider()
