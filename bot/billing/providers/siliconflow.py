"""SiliconFlow: `GET /v1/user/info` with the normal API key (providers.md §9).

Success is `code == 20000` in the body, whatever the HTTP status says; amounts are
strings (`totalBalance` = `balance` granted + `chargeBalance` topped up). The China site
bills in CNY. The international host (`api.siliconflow.com`) is not documented with a
currency, so it gets none rather than a guess; other hosts (proxies, test servers) take the
per-key option `currency` (CNY or USD) and default to CNY like the default base URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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

_OK_CODE = 20000
_OPTION_CURRENCIES = frozenset({"CNY", "USD"})
#: Words in an error message that mean the key itself was refused (classification only).
_AUTH_WORDS = ("unauthorized", "invalid token", "api key", "apikey", "authenticat", "forbidden")


class SiliconFlowProvider(Provider):
    id = "siliconflow"
    title = "SiliconFlow"
    hint = "SiliconFlow (api.siliconflow.cn)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.siliconflow.cn"
    order = 80

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = f"{api_root(ctx.base_url)}/v1/user/info"
        body = await get_json_object(ctx, url)
        if body.get("code") not in (_OK_CODE, str(_OK_CODE)):
            raise _error_for(body)

        data = body.get("data")
        if not isinstance(data, dict) or data.get("totalBalance") is None:
            raise BillingError(ErrorKind.MALFORMED, "no totalBalance")
        extras: dict[str, Any] = {}
        for src, name in (("balance", "granted"), ("chargeBalance", "topped_up")):
            if data.get(src) is not None:
                extras[name] = plain(to_decimal(data[src]))

        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency_for(ctx.base_url, ctx.options),
            remaining=to_decimal(data["totalBalance"]),
            extras=extras,
            fetched_at=ctx.now,
        )


def currency_for(base_url: str, options: Mapping[str, str]) -> str | None:
    """CNY on `.cn`; unknown on siliconflow.com; otherwise the option, else CNY."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if host.endswith(".cn"):
        return "CNY"
    if host == "siliconflow.com" or host.endswith(".siliconflow.com"):
        return None  # international site: currency not documented (providers.md §9)
    wanted = str(options.get("currency", "")).strip().upper()
    return wanted if wanted in _OPTION_CURRENCIES else "CNY"


def _error_for(body: Mapping[str, Any]) -> BillingError:
    """A body without `code == 20000`: auth-looking failures are KEY_REJECTED."""
    code = body.get("code")
    message = body.get("message")
    error = body.get("error")
    parts = [message, error]
    if isinstance(error, dict):
        parts += [error.get("message"), error.get("type"), error.get("code")]
    text = " ".join(p for p in parts if isinstance(p, str)).lower()
    if code in (401, 403) or any(word in text for word in _AUTH_WORDS):
        return BillingError(ErrorKind.KEY_REJECTED, "auth error in reply body", status=200)
    if code == 429:
        return BillingError(ErrorKind.RATE_LIMITED, "rate limit in reply body", status=200)
    if code is None and not body.get("error") and message is None:
        return BillingError(ErrorKind.MALFORMED, "reply without code", status=200)
    return BillingError(ErrorKind.PROVIDER_ERROR, "error code in reply body", status=200)


PROVIDER = SiliconFlowProvider()
