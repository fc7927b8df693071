"""SiliconFlow: `GET /v1/user/info` with the normal API key (docs/providers.md §siliconflow).

Success is `code == 20000` in the body, whatever the HTTP status says; amounts are
strings (`totalBalance` = `balance` granted + `chargeBalance` topped up). The China site
bills in CNY. The international host (`api.siliconflow.com`) is not documented with a
currency, so it gets none rather than a guess; other hosts (proxies, test servers) take the
per-key option `currency` (CNY or USD) and default to CNY like the default base URL.

`api.siliconflow.cn/v1/user/info` was retired on 2026-08-14
(https://docs.siliconflow.cn/docs/release-notes/overview): it answers HTTP 410 with
business code 20092 while the key still works for inference. That answer says nothing
about the key, so it is never "key rejected": the key is checked with the free
`GET /v1/models` instead and the result is "valid — the balance API is gone". The site's
retirement is remembered for a while (`SiteMemo`), so later checks skip the dead route.
`.com` is unchanged: it is recognised by its answer, not its host name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind
from bot.billing.providers._parse import (
    api_root,
    is_bare_sk,
    json_object,
    plain,
    raise_for_status,
    to_decimal,
)
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider
from bot.i18n import N_

_OK_CODE = 20000
#: Business code of the retired China `/v1/user/info` (with HTTP 410).
RETIRED_CODE = 20092
RETIRED_ON = "2026-08-14"
RETIRED_HINT = "balance_api_retired"
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
    explanations: ClassVar[Mapping[str, str]] = {
        RETIRED_HINT: N_(
            "SiliconFlow no longer offers a balance API for this site; the key itself works."
        ),
    }

    def detect(self, key: str) -> Match:
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = api_root(ctx.base_url)
        if ctx.memo.get(("siliconflow:retired", root)):
            return await self._validity(ctx, root)
        reply = await ctx.http.get(f"{root}/v1/user/info", headers=ctx.bearer())
        if _retired(reply):
            ctx.memo.put(("siliconflow:retired", root), True)
            return await self._validity(ctx, root)
        raise_for_status(reply)
        body = json_object(reply)
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

    async def _validity(self, ctx: FetchContext, root: str) -> BalanceResult:
        """The balance route is gone: say whether the key works (free model list)."""
        reply = await ctx.http.get(f"{root}/v1/models", headers=ctx.bearer())
        raise_for_status(reply)
        body = json_object(reply)
        if not isinstance(body.get("data"), list):
            if "code" in body or body.get("error"):
                raise _error_for(body)
            raise BillingError(ErrorKind.MALFORMED, "model list missing", status=reply.status)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.VALIDITY,
            extras={"hint": RETIRED_HINT, "retired_on": RETIRED_ON},
            fetched_at=ctx.now,
        )


def _retired(reply: HttpReply) -> bool:
    """HTTP 410 (Gone), or business code 20092 at any status: the route was retired."""
    if reply.status == 410:
        return True
    body = reply.json_or_none()
    return isinstance(body, dict) and body.get("code") in (RETIRED_CODE, str(RETIRED_CODE))


def currency_for(base_url: str, options: Mapping[str, str]) -> str | None:
    """CNY on `.cn`; unknown on siliconflow.com; otherwise the option, else CNY."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if host.endswith(".cn"):
        return "CNY"
    if host == "siliconflow.com" or host.endswith(".siliconflow.com"):
        return None  # international site: currency not documented (docs/providers.md §siliconflow)
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
