"""OpenAI Admin keys (`sk-admin-…`): organisation spend from the Costs API.

The Costs API reports daily spend, never what is left (docs/providers.md §openai-admin). With a
user-entered starting balance and its date we show `start_balance − costs since then`,
flagged as an estimate; otherwise we show spend since the first day of the month (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._openai_common import error_text, has_error_body
from bot.billing.providers._parse import api_root, to_decimal
from bot.billing.providers.base import FetchContext, Match, Provider

#: Buckets per page (the API allows 1–180 daily buckets).
PAGE_LIMIT = 180
#: Stop after this many pages: a longer history is refused rather than summed partially.
MAX_PAGES = 40


class OpenAIAdminProvider(Provider):
    id = "openai-admin"
    title = "OpenAI (admin key)"
    hint = "OpenAI admin key sk-admin- (organisation costs)"
    kind = FigureKind.SPEND
    default_base_url = "https://api.openai.com"
    needs_base_url = False
    order = 30
    billing_url = "https://platform.openai.com/settings/organization/billing/overview"

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("sk-admin-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        basis = _start_balance(ctx.options, ctx.now)
        if basis is not None:
            start_balance, since = basis
        else:
            start_balance = None
            since = ctx.now.astimezone(UTC).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
        spent, currency = await self._costs_since(ctx, since)
        extras: dict[str, Any] = {}
        if basis is None and ctx.options.get("start_balance"):
            extras["start_balance_ignored"] = True  # unusable amount or date
        if start_balance is None:
            return BalanceResult(
                provider=self.id,
                kind=FigureKind.SPEND,
                currency=currency,
                used=spent,
                period_start=since,
                extras=extras,
            )
        remaining = start_balance - spent
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=remaining,
            total=start_balance,
            used=spent,
            period_start=since,
            estimate=True,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras=extras,
        )

    async def _costs_since(self, ctx: FetchContext, since: datetime) -> tuple[Decimal, str]:
        """Sum `amount.value` over every daily bucket since `since`, following `next_page`."""
        url = f"{api_root(ctx.base_url)}/v1/organization/costs"
        headers = ctx.bearer()
        base_params = {
            "start_time": str(int(since.timestamp())),
            "bucket_width": "1d",
            "limit": str(PAGE_LIMIT),
        }
        total = Decimal(0)
        currencies: set[str] = set()
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = dict(base_params) if cursor is None else {**base_params, "page": cursor}
            reply = await ctx.http.get(url, headers=headers, params=params)
            if reply.status == 401:
                raise BillingError(ErrorKind.KEY_REJECTED, "admin key rejected", status=401)
            if reply.status == 403:
                if "scope" in error_text(reply):
                    raise BillingError(
                        ErrorKind.WRONG_KEY_TYPE, "needs an admin key with usage scope", status=403
                    )
                raise BillingError(ErrorKind.KEY_REJECTED, "admin key refused", status=403)
            reply.raise_for_common()
            if reply.status == 404 or reply.looks_html:
                raise BillingError(
                    ErrorKind.NO_BALANCE_API, "no costs endpoint", status=reply.status
                )
            if reply.status != 200:
                raise BillingError(
                    ErrorKind.PROVIDER_ERROR, f"unexpected HTTP {reply.status}", status=reply.status
                )
            page = reply.json()
            if has_error_body(page):
                raise BillingError(ErrorKind.PROVIDER_ERROR, "error body with HTTP 200", status=200)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise BillingError(ErrorKind.MALFORMED, "costs page has no data", status=200)
            total += _sum_page(page["data"], currencies)
            if page.get("has_more") is not True:
                break
            cursor = page.get("next_page")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                raise BillingError(ErrorKind.MALFORMED, "costs pagination broken", status=200)
            seen.add(cursor)
        else:
            raise BillingError(ErrorKind.MALFORMED, "cost history too long")
        if len(currencies) > 1:
            raise BillingError(ErrorKind.MALFORMED, "costs in several currencies")
        # The Costs API bills in USD; with no cost lines there is nothing else to go on.
        return total, currencies.pop() if currencies else "USD"


def _sum_page(buckets: list[Any], currencies: set[str]) -> Decimal:
    total = Decimal(0)
    for bucket in buckets:
        results = bucket.get("results") if isinstance(bucket, dict) else None
        if not isinstance(results, list):
            raise BillingError(ErrorKind.MALFORMED, "cost bucket has no results")
        for result in results:
            amount = result.get("amount") if isinstance(result, dict) else None
            if not isinstance(amount, dict):
                raise BillingError(ErrorKind.MALFORMED, "cost line has no amount")
            total += to_decimal(amount.get("value"))
            currency = amount.get("currency")
            if isinstance(currency, str) and currency.strip():
                currencies.add(currency.strip().upper())
    return total


def _start_balance(options: Mapping[str, str], now: datetime) -> tuple[Decimal, datetime] | None:
    """The user's starting balance and the UTC midnight of its date, if both are usable.

    Costs are counted from the start of that day, so the estimate errs on the low side.
    """
    raw_balance = options.get("start_balance")
    raw_date = options.get("start_date")
    if not raw_balance or not raw_date:
        return None
    try:
        balance = to_decimal(raw_balance)
    except BillingError:
        return None
    try:
        day = date.fromisoformat(raw_date.strip()[:10])
    except ValueError:
        return None
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if since > now:
        return None
    return balance, since


PROVIDER = OpenAIAdminProvider()
