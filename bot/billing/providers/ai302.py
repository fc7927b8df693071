"""302.AI (id `302ai`): `GET /dashboard/balance` with the API key (docs/providers.md §302ai).

The key must have the "balance query" permission switched on in 302.AI's key settings
(third-party integrations say so: "Key 需要开启余额查询权限"). The documented answer is
`{"data": {"balance": "12.34"}}` (https://doc-en.302.ai/api-263735171, as cited by
third-party code); another integration reads a flat `{balance, total, used}` and a third
`{code: 0, data: {balance: 12.3}}` — all three are read. There is no currency field: USD
is presumed (302.AI prices in USD), said in `extras` so it is not taken for a fact.

Which status a key *without* the balance permission gets is not documented: 403, or an
error body mentioning the permission, is read as "this key may not see the balance"
(wrong key type, with an explanation); 401 is a rejected key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._openai_common import error_text
from bot.billing.providers._parse import amount, amount_or_none, api_root, json_object
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider
from bot.i18n import N_

_PERMISSION_WORDS = ("permission", "权限", "not allowed", "forbidden", "scope")
_AUTH_WORDS = ("api key", "apikey", "token", "unauthori", "invalid", "无效", "鉴权")


class AI302Provider(Provider):
    id = "302ai"
    title = "302.AI"
    hint = "302.AI (api.302.ai): a key with balance query on"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.302.ai"
    order = 150
    explanations: ClassVar[Mapping[str, str]] = {
        "wrong_key_type": N_(
            "This 302.AI key may not read the balance: switch on its balance query permission "
            "in 302.AI's API key settings."
        ),
    }

    def detect(self, key: str) -> Match:
        return Match.NO  # 302.AI keys are bare `sk-…`: ambiguous, the user picks 302.AI

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(
            f"{api_root(ctx.base_url)}/dashboard/balance", headers=ctx.bearer()
        )
        if reply.status in (401, 403):
            raise _refused(reply)
        reply.raise_for_common()
        if reply.status != 200:
            raise BillingError(
                ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status
            )
        body = json_object(reply)
        figures = _figures(body)
        if figures is None:
            raise _error_in_body(body, reply)
        remaining = amount(figures["balance"])
        total = amount_or_none(figures.get("total"))
        used = amount_or_none(figures.get("used"))
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=used,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras={"currency_presumed": True},
            fetched_at=ctx.now,
        )


def _figures(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`data.balance` (documented) or a flat `balance`; None when neither is there."""
    code = body.get("code")
    if code not in (None, 0, "0", 200, "200"):
        return None  # an error code, whatever else the body holds
    data = body.get("data")
    if isinstance(data, dict) and data.get("balance") is not None:
        return data
    if body.get("balance") is not None:
        return body
    return None


def _refused(reply: HttpReply) -> BillingError:
    text = error_text(reply)
    if reply.status == 403 or any(word in text for word in _PERMISSION_WORDS):
        return BillingError(ErrorKind.WRONG_KEY_TYPE, "no balance permission", status=reply.status)
    return BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)


def _error_in_body(body: Mapping[str, Any], reply: HttpReply) -> BillingError:
    text = error_text(reply)
    if any(word in text for word in _PERMISSION_WORDS):
        return BillingError(ErrorKind.WRONG_KEY_TYPE, "no balance permission", status=200)
    if any(word in text for word in _AUTH_WORDS):
        return BillingError(ErrorKind.KEY_REJECTED, "auth error in reply body", status=200)
    if body.get("code") not in (None, 0, "0") or body.get("error") or body.get("message"):
        return BillingError(ErrorKind.PROVIDER_ERROR, "error in reply body", status=200)
    return BillingError(ErrorKind.MALFORMED, "no balance", status=200)


PROVIDER = AI302Provider()
