"""DeepSeek: `GET /user/balance` with the normal API key (docs/providers.md §deepseek).

The reply lists one entry per currency (CNY and/or USD) with amounts as strings. The
primary figure is the CNY entry when there is one, otherwise the first entry in the
order DeepSeek sent them; every entry is still shown in `extras["balances"]` (one-api
only reads CNY and fails on USD-only accounts, which is the trap avoided here).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

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

_CURRENCY = re.compile(r"[A-Z]{3}")
_PREFERRED = "CNY"


class DeepSeekProvider(Provider):
    id = "deepseek"
    title = "DeepSeek"
    hint = "DeepSeek (api.deepseek.com)"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.deepseek.com"
    order = 60
    billing_url = "https://platform.deepseek.com/top_up"

    def detect(self, key: str) -> Match:
        # A bare `sk-` key is shared by DeepSeek, Moonshot, SiliconFlow and relays: ask.
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        body = await get_json_object(ctx, f"{api_root(ctx.base_url)}/user/balance")
        if body.get("error"):
            raise BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)

        infos = body.get("balance_infos")
        if not isinstance(infos, list) or not infos:
            raise BillingError(ErrorKind.MALFORMED, "no balance entries")
        entries = [_entry(item) for item in infos]
        primary = next((e for e in entries if e["currency"] == _PREFERRED), entries[0])

        extras: dict[str, Any] = {
            "balances": "; ".join(f"{e['currency']} {plain(e['total'])}" for e in entries),
        }
        for name in ("granted", "topped_up"):
            if primary[name] is not None:
                extras[name] = plain(primary[name])
        for e in entries:
            if e is not primary:
                extras[f"balance_{e['currency'].lower()}"] = plain(e["total"])

        available = body.get("is_available")
        state = KeyState.OK
        if isinstance(available, bool):
            extras["available"] = available
            if not available:  # DeepSeek says the balance cannot pay for API calls
                state = KeyState.EXHAUSTED

        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=primary["currency"],
            remaining=primary["total"],
            state=state,
            extras=extras,
            fetched_at=ctx.now,
        )


def _entry(item: Any) -> dict[str, Any]:
    """One `balance_infos` entry; the total is essential, the split is optional."""
    if not isinstance(item, dict):
        raise BillingError(ErrorKind.MALFORMED, "balance entry is not an object")
    currency = item.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise BillingError(ErrorKind.MALFORMED, "balance entry without a currency")
    if item.get("total_balance") is None:
        raise BillingError(ErrorKind.MALFORMED, "balance entry without total_balance")
    return {
        "currency": currency,
        "total": to_decimal(item["total_balance"]),
        "granted": _optional(item.get("granted_balance")),
        "topped_up": _optional(item.get("topped_up_balance")),
    }


def _optional(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


PROVIDER = DeepSeekProvider()
