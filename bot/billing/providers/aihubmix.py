"""AIHubMix: `GET /api/user/self` with the console's Manage Key (docs/providers.md §aihubmix).

AIHubMix runs new-api: the account endpoint takes the *System Access Token* ("Manage Key",
created under Settings → Generate System Access Token) as the raw `Authorization` value —
not the `sk-` inference key (https://docs.aihubmix.com/en/api/Cli). The answer is new-api's
`{"success": true, "data": {"quota": …, "used_quota": …, "request_count": …}}` in quota
units, 500000 per USD. `quota` is what is left; `used_quota` what was spent.

new-api refuses a wrong token either with HTTP 401 or with HTTP 200
`{"success": false, "message": "…access token 无效"}` (one-api middleware/auth.go); for an
`sk-` key that means "this is the inference key, not the Manage Key", which is said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount, amount_or_none, json_object, raise_for_status
from bot.billing.providers.base import FetchContext, HttpReply, Provider
from bot.i18n import N_

#: new-api's default quota units per 1 USD (AIHubMix documents quota / 500000 = USD).
QUOTA_PER_USD = Decimal(500_000)
_AUTH_WORDS = ("access token", "未登录", "无权", "token", "unauthori", "权限")
_MAX_TEXT = 100


class AIHubMixProvider(Provider):
    id = "aihubmix"
    title = "AIHubMix"
    hint = "AIHubMix (aihubmix.com): the console's Manage Key"
    kind = FigureKind.BALANCE
    default_base_url = "https://aihubmix.com"
    order = 140
    explanations: ClassVar[Mapping[str, str]] = {
        "wrong_key_type": N_(
            "AIHubMix shows the balance only to the console's Manage Key (Settings → System "
            "Access Token), not to an sk- inference key."
        ),
    }

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = ctx.base_url.strip().rstrip("/").removesuffix("/v1")
        reply = await ctx.http.get(
            f"{root}/api/user/self", headers={"Authorization": ctx.key.reveal()}
        )
        if reply.status in (401, 403):
            raise _refused(ctx, reply.status)
        raise_for_status(reply)
        body = json_object(reply)
        if body.get("success") is not True:
            raise _refusal_in_body(ctx, body, reply)
        data = body.get("data")
        if not isinstance(data, dict) or data.get("quota") is None:
            raise BillingError(ErrorKind.MALFORMED, "no quota", status=reply.status)
        remaining = amount(data["quota"]) / QUOTA_PER_USD
        used_raw = amount_or_none(data.get("used_quota"))
        used = None if used_raw is None else used_raw / QUOTA_PER_USD
        extras: dict[str, Any] = {}
        count = data.get("request_count")
        if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 10**15:
            extras["request_count"] = count
        group = data.get("group")
        if isinstance(group, str) and group:
            extras["group"] = group[:_MAX_TEXT]
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=None if used is None else remaining + used,
            used=used,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )


def _refused(ctx: FetchContext, status: int) -> BillingError:
    """An `sk-` key is the inference key: the wrong kind, not a bad one."""
    if ctx.key.reveal().startswith("sk-"):
        return BillingError(ErrorKind.WRONG_KEY_TYPE, "needs the Manage Key", status=status)
    return BillingError(ErrorKind.KEY_REJECTED, f"HTTP {status}", status=status)


def _refusal_in_body(ctx: FetchContext, body: Mapping[str, Any], reply: HttpReply) -> BillingError:
    message = body.get("message")
    text = message.lower() if isinstance(message, str) else ""
    if body.get("success") is False and any(word in text for word in _AUTH_WORDS):
        return _refused(ctx, reply.status)
    if body.get("success") is False:
        return BillingError(ErrorKind.PROVIDER_ERROR, "error in reply body", status=reply.status)
    return BillingError(ErrorKind.MALFORMED, "reply without success", status=reply.status)


PROVIDER = AIHubMixProvider()
