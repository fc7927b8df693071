"""LiteLLM proxy: `GET /key/info` for the calling virtual key (docs/providers.md §litellm).

Without a `key` parameter LiteLLM describes the key in the `Authorization` header
(litellm/proxy/management_endpoints/key_management_endpoints.py, info_key_fn). Current
proxies answer `{"key": …, "info": {spend, max_budget, budget_duration, budget_reset_at,
expires, key_alias, team_id, blocked, …}}`; older ones are reported to answer with those
fields at the top level — both are read. Money is USD.

* `max_budget: null` means the key has no budget: unlimited, only the spend is shown.
* With a budget, what is left is `max_budget − spend`; a budget with `budget_duration`
  starts afresh at `budget_reset_at`, so it is also a window ("monthly" for "30d"/"1mo",
  "weekly", "daily", else the duration's own text).
* `expires: null` means the key never expires; a past `expires` is EXPIRED.
* A team key may be capped by the team's budget too; that needs `/team/info` and an admin
  view, so it is not read (the key's own budget is what is shown).

Refusals are `{"error": {"message", "type", "code"}}`: auth errors are the key, except
"Expired Key" (expired) and budget errors (used up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers._openai_common import error_text
from bot.billing.providers._parse import amount_or_none, api_root, from_iso, json_object, window
from bot.billing.providers.base import FetchContext, HttpReply, Provider

_INFO_FIELDS = ("spend", "max_budget", "expires", "budget_reset_at", "key_alias", "key_name")
_MAX_TEXT = 100


class LiteLLMProvider(Provider):
    id = "litellm"
    title = "LiteLLM proxy"
    hint = "LiteLLM proxy virtual key (/key/info)"
    kind = FigureKind.BALANCE
    default_base_url = None
    needs_base_url = True
    order = 14

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(f"{api_root(ctx.base_url)}/key/info", headers=ctx.bearer())
        if reply.status != 200:
            return self._refusal(ctx, reply)
        body = json_object(reply)
        info = body.get("info") if isinstance(body.get("info"), dict) else None
        if info is None:
            if not any(name in body for name in _INFO_FIELDS):
                raise BillingError(ErrorKind.MALFORMED, "no key info", status=200)
            info = body  # the older, flat answer
        return self._from_info(ctx, info)

    def _from_info(self, ctx: FetchContext, info: Mapping[str, Any]) -> BalanceResult:
        if info.get("blocked") is True:
            raise BillingError(ErrorKind.KEY_REJECTED, "key is blocked", status=200)
        spend = amount_or_none(info.get("spend"))
        budget = amount_or_none(info.get("max_budget"))
        extras: dict[str, Any] = {}
        for field in ("key_alias", "team_id"):
            value = info.get(field)
            if isinstance(value, str) and value.strip():
                extras[field] = "".join(c for c in value if c.isprintable())[:_MAX_TEXT]
        duration = info.get("budget_duration")
        if isinstance(duration, str) and duration.strip():
            extras["budget_duration"] = duration.strip()[:20]
        resets_at = _when(info.get("budget_reset_at"))
        if resets_at is not None and budget is not None:
            extras["budget_resets_at"] = resets_at.isoformat()

        expires_at = _when(info.get("expires"))
        never = "expires" in info and info.get("expires") is None
        remaining = None if budget is None else budget - (spend or 0)
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        windows: tuple[Window, ...] = ()
        period = _duration(duration)
        if budget is not None and budget > 0 and (period is not None or resets_at is not None):
            # A budget that starts afresh is a window (monthly, weekly, … or "30d").
            full = spend is not None and spend >= budget
            windows = (
                window(
                    _window_name(duration, period),
                    used=spend,
                    limit=budget,
                    unit=Unit.MONEY,
                    currency="USD",
                    period=period,
                    resets_at=resets_at,
                    state=WindowState.EXHAUSTED if full else WindowState.OK,
                ),
            )
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=budget,
            used=spend,
            unlimited=budget is None,
            expires_at=expires_at,
            never_expires=never,
            state=state,
            extras=extras,
            fetched_at=ctx.now,
            windows=windows,
        )

    def _refusal(self, ctx: FetchContext, reply: HttpReply) -> BalanceResult:
        text = error_text(reply)
        if "expired key" in text or "key expired" in text:
            return _state(self.id, ctx, KeyState.EXPIRED)
        if "budget" in text and ("exceeded" in text or "over" in text):
            return _state(self.id, ctx, KeyState.EXHAUSTED)
        if reply.status in (400, 401, 403) and ("auth" in text or reply.status != 400):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if reply.status == 404 or reply.looks_html:
            raise BillingError(ErrorKind.NO_BALANCE_API, "no /key/info here", status=reply.status)
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


def _state(provider: str, ctx: FetchContext, state: KeyState) -> BalanceResult:
    return BalanceResult(
        provider=provider,
        kind=FigureKind.BALANCE,
        currency="USD",
        state=state,
        extras={"source": "refusal"},
        fetched_at=ctx.now,
    )


_DURATION = re.compile(r"^(\d{1,4})(s|m|h|d|w|mo)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000}
_NAMES = {86400: "daily", 604800: "weekly", 2592000: "monthly"}


def _duration(value: Any) -> timedelta | None:
    """LiteLLM's `budget_duration` ("30s", "30m", "30h", "30d", "1mo") as a length."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value.strip().lower())
    if not match or int(match[1]) == 0:
        return None
    return timedelta(seconds=int(match[1]) * _SECONDS[match[2]])


def _window_name(duration: Any, period: timedelta | None) -> str:
    """ "daily" / "weekly" / "monthly" when the budget is one; else its own text ("10d")."""
    if period is not None and int(period.total_seconds()) in _NAMES:
        return _NAMES[int(period.total_seconds())]
    if isinstance(duration, str) and duration.strip():
        return duration.strip()[:20]
    return "budget"


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return from_iso(value)
    except BillingError:
        return None


PROVIDER = LiteLLMProvider()
