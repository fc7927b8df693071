"""Anthropic Admin key: month-to-date spend, Cost Report (docs/providers.md §anthropic-admin).

Anthropic has no balance API at all, so this is a SPEND figure: the sum of every cost
line since the first day of the current month (UTC). Amounts are decimal strings in the
currency's lowest unit (cents: `"123.45"` is $1.2345); they are summed exactly and shifted
by 10^-2. Auth is `x-api-key` + `anthropic-version`, not Bearer. The report is paginated
(`has_more` / `next_page`); a page count cap stops a server that never says "done".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind
from bot.billing.providers._parse import api_root, json_object, to_decimal
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider

_VERSION = "2023-06-01"
_PAGE_LIMIT = "31"  # the API maximum: one page covers a whole month of daily buckets
_MAX_PAGES = 20
_CURRENCY = re.compile(r"[A-Z]{3}")
_DEFAULT_CURRENCY = "USD"  # the docs: "currency" is always USD


class AnthropicAdminProvider(Provider):
    id = "anthropic-admin"
    title = "Anthropic (Admin key)"
    hint = "Anthropic admin key sk-ant-admin01- (spend this month)"
    kind = FigureKind.SPEND
    default_base_url = "https://api.anthropic.com"
    order = 110
    billing_url = "https://console.anthropic.com/settings/billing"

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("sk-ant-admin01-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        now = ctx.now.astimezone(UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        url = f"{api_root(ctx.base_url)}/v1/organizations/cost_report"
        headers = {"x-api-key": ctx.key.reveal(), "anthropic-version": _VERSION}
        params = {
            "starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bucket_width": "1d",
            "limit": _PAGE_LIMIT,
        }

        cents = Decimal(0)
        currencies: set[str] = set()
        seen_pages: set[str] = set()
        for _ in range(_MAX_PAGES):
            reply = await ctx.http.get(url, headers=headers, params=params)
            body = _body(reply, inference_key=_is_inference_key(ctx.key.reveal()))
            page_cents, page_currencies = _sum_page(body)
            cents += page_cents
            currencies |= page_currencies
            if body.get("has_more") is not True:
                break
            next_page = body.get("next_page")
            if not isinstance(next_page, str) or not next_page or next_page in seen_pages:
                raise BillingError(ErrorKind.MALFORMED, "has_more without a new next_page")
            seen_pages.add(next_page)
            params = {**params, "page": next_page}
        else:
            raise BillingError(ErrorKind.MALFORMED, "too many cost report pages")

        if len(currencies) > 1:
            raise BillingError(ErrorKind.MALFORMED, "cost report mixes currencies")
        # No cost lines at all is an honest zero spend; the currency then follows the docs.
        currency = currencies.pop() if currencies else _DEFAULT_CURRENCY
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.SPEND,
            currency=currency,
            used=cents.scaleb(-2),
            period_start=start,
            extras={"period": "month_to_date"},
            fetched_at=ctx.now,
        )


def _is_inference_key(key: str) -> bool:
    """`sk-ant-api03-…` and friends: a real Anthropic key, but not one for the Admin API."""
    return key.startswith("sk-ant-") and not key.startswith("sk-ant-admin")


def _body(reply: HttpReply, *, inference_key: bool) -> Mapping[str, Any]:
    """A cost report page, or the error its status / `{"type": "error"}` body means."""
    error_type = ""
    payload = None if reply.looks_html else reply.json_or_none()
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error_type = str(payload["error"].get("type", ""))
    if reply.status in (401, 403) or error_type in ("authentication_error", "permission_error"):
        status = reply.status
        if inference_key:
            raise BillingError(ErrorKind.WRONG_KEY_TYPE, "not an admin key", status=status)
        raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {status}", status=status)
    reply.raise_for_common()
    if error_type == "rate_limit_error":
        raise BillingError(ErrorKind.RATE_LIMITED, "rate limit error body", status=reply.status)
    error_body = isinstance(payload, dict) and payload.get("type") == "error"
    if not 200 <= reply.status < 300 or error_type or error_body:
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)
    return json_object(reply)


def _sum_page(body: Mapping[str, Any]) -> tuple[Decimal, set[str]]:
    """Cents and currencies of one page; a missing or odd field fails the whole check."""
    buckets = body.get("data")
    if not isinstance(buckets, list):
        raise BillingError(ErrorKind.MALFORMED, "cost report without data")
    total = Decimal(0)
    currencies: set[str] = set()
    for bucket in buckets:
        results = bucket.get("results") if isinstance(bucket, dict) else None
        if not isinstance(results, list):
            raise BillingError(ErrorKind.MALFORMED, "cost bucket without results")
        for line in results:
            if not isinstance(line, dict) or line.get("amount") is None:
                raise BillingError(ErrorKind.MALFORMED, "cost line without amount")
            currency = line.get("currency")
            if currency is not None:
                if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
                    raise BillingError(ErrorKind.MALFORMED, "cost line with a bad currency")
                currencies.add(currency)
            total += to_decimal(line["amount"])
    return total, currencies


PROVIDER = AnthropicAdminProvider()
