"""sub2api (Wei-Shaw/sub2api): `GET /v1/usage` on the user's site (docs/providers.md §sub2api).

The endpoint exists "for CC Switch integration" (backend/internal/handler/gateway_handler.go)
and answers in the cc-switch shape `{isValid, planName, remaining, unit: "USD"}`:

* wallet groups: `planName: "钱包余额"`, `remaining` = the account balance (newer builds add
  `balance`, `mode: "unrestricted"`);
* subscription groups: `remaining` = the smallest of the daily/weekly/monthly remainders, 0
  when any window is used up, `-1` when the plan has no limit; newer builds add
  `subscription: {daily|weekly|monthly_usage_usd, …_limit_usd, expires_at}`;
* keys with their own limits (newer builds, `mode: "quota_limited"`): `quota: {limit, used,
  remaining, unit}`, `status`, `expires_at`, `rate_limits[]` (5h / 1d / 7d).

`usage.today|total` carry both `cost` (list price) and `actual_cost` (what was charged, ≈30 %
lower on discounted groups): only `actual_cost` is shown, as what was spent.

Refusals come from the auth middleware as `{code, message}`: INVALID_API_KEY,
API_KEY_DISABLED, USER_INACTIVE… are the key; INSUFFICIENT_BALANCE, API_KEY_QUOTA_EXHAUSTED,
USAGE_LIMIT_EXCEEDED and the window codes mean used up; API_KEY_EXPIRED and the
SUBSCRIPTION_* codes mean expired. An exhausted key cannot read its own usage, so those
refusals are answers about the key, not errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers._parse import amount_or_none, api_root, from_iso, window
from bot.billing.providers._usage_script import (
    looks_like_usage_script,
    read_usage_script,
    state_from_message,
)
from bot.billing.providers.base import FetchContext, HttpReply, Provider

_EMPTY_CODES = frozenset({"INSUFFICIENT_BALANCE", "API_KEY_QUOTA_EXHAUSTED"})
_WINDOW_CODES = frozenset({"USAGE_LIMIT_EXCEEDED"})  # and API_KEY_RATE_*_EXCEEDED
_EXPIRED_CODES = frozenset(
    {"API_KEY_EXPIRED", "SUBSCRIPTION_EXPIRED", "SUBSCRIPTION_NOT_FOUND", "SUBSCRIPTION_INVALID"}
)
_KEY_STATUS = {"quota_exhausted": KeyState.EXHAUSTED, "expired": KeyState.EXPIRED}
#: Subscription windows (daily/weekly/monthly USD limits) and their lengths; sub2api's
#: windows start with the first use and last a day, a week and 30 days.
_PLAN_WINDOWS = (("daily", timedelta(days=1)), ("weekly", timedelta(days=7)),
                 ("monthly", timedelta(days=30)))  # fmt: skip
#: A key's own rate-limit windows (newer builds' `rate_limits[].window`).
_KEY_WINDOWS = {"5h": ("5h", timedelta(hours=5)), "1d": ("daily", timedelta(days=1)),
                "7d": ("weekly", timedelta(days=7))}  # fmt: skip
_MIN_YEAR = 1971  # Go's zero time (0001-01-01) means "not set"


class Sub2APIProvider(Provider):
    id = "sub2api"
    title = "sub2api"
    hint = "sub2api relay (/v1/usage)"
    kind = FigureKind.BALANCE
    default_base_url = None
    needs_base_url = True
    order = 12

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(f"{api_root(ctx.base_url)}/v1/usage", headers=ctx.bearer())
        if reply.status != 200:
            return self._refusal(ctx, reply)
        payload = reply.json()
        if isinstance(payload, dict) and payload.get("mode") == "quota_limited":
            return self._quota_limited(ctx, payload)
        if not looks_like_usage_script(payload):
            raise BillingError(ErrorKind.MALFORMED, "not a sub2api usage answer", status=200)
        result = read_usage_script(payload, provider=self.id, now=ctx.now, default_currency="USD")
        if not isinstance(payload, dict) or result.kind is not FigureKind.BALANCE:
            return result
        return _with_details(result, payload, ctx.now)

    def _quota_limited(self, ctx: FetchContext, payload: Mapping[str, Any]) -> BalanceResult:
        """A key with its own limit: the key's quota is the figure, not the wallet."""
        quota = payload.get("quota")
        remaining = total = used = None
        if isinstance(quota, dict):
            remaining = amount_or_none(quota.get("remaining"))
            total = amount_or_none(quota.get("limit"))
            used = amount_or_none(quota.get("used"))
        elif payload.get("remaining") is not None:
            remaining = amount_or_none(payload.get("remaining"))
        state = _KEY_STATUS.get(str(payload.get("status")), KeyState.OK)
        if state is KeyState.OK and remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        extras: dict[str, Any] = {"mode": "quota_limited"}
        extras.update(_charged(payload))
        expires_at = _when(payload.get("expires_at"))
        if state is KeyState.OK and expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=used,
            unlimited=remaining is None and total is None,
            expires_at=expires_at,
            state=state,
            extras=extras,
            fetched_at=ctx.now,
            windows=_rate_limit_windows(payload.get("rate_limits")),
        )

    def _refusal(self, ctx: FetchContext, reply: HttpReply) -> BalanceResult:
        code, message = _error(reply)
        if code in _EMPTY_CODES:
            return _state(self.id, ctx, KeyState.EXHAUSTED, code, Decimal(0))
        if code in _WINDOW_CODES or (
            code.startswith("API_KEY_RATE_") and code.endswith("EXCEEDED")
        ):
            return _state(self.id, ctx, KeyState.EXHAUSTED, code, None)
        if code in _EXPIRED_CODES:
            return _state(self.id, ctx, KeyState.EXPIRED, code, None)
        if reply.status in (401, 403):
            if not code:  # the gateway's own {"error": {"message"}} form
                if "subscription" in message.lower():
                    return _state(self.id, ctx, KeyState.EXPIRED, "no_subscription", None)
                state = state_from_message(message)
                if state is not None:
                    return _state(self.id, ctx, state, "message", None)
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if reply.status == 404 or reply.looks_html:
            raise BillingError(ErrorKind.NO_BALANCE_API, "no /v1/usage here", status=reply.status)
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


def _with_details(
    result: BalanceResult, payload: Mapping[str, Any], now: datetime
) -> BalanceResult:
    """Newer builds' extras: the subscription's expiry and what was charged."""
    extras = dict(result.extras)
    extras.update(_charged(payload))
    mode = payload.get("mode")
    if isinstance(mode, str) and mode in ("unrestricted", "quota_limited"):
        extras["mode"] = mode
    subscription = payload.get("subscription")
    expires_at = result.expires_at
    state = result.state
    windows: tuple[Window, ...] = ()
    if isinstance(subscription, dict):
        extras["scope"] = "subscription"
        expires_at = _when(subscription.get("expires_at")) or expires_at
        if expires_at is not None and expires_at <= now:
            state = KeyState.EXPIRED
        windows = _plan_windows(subscription)
    elif payload.get("planName") == "钱包余额" or payload.get("balance") is not None:
        extras["scope"] = "wallet"
    return replace(result, expires_at=expires_at, state=state, extras=extras, windows=windows)


def _plan_windows(subscription: Mapping[str, Any]) -> tuple[Window, ...]:
    """A subscription's daily/weekly/monthly USD limits (0 or absent = no such limit).

    The usage is what sub2api itself counts and enforces: its auth middleware resets an
    expired window before answering, so the figure is the current window's.
    """
    out: list[Window] = []
    for name, period in _PLAN_WINDOWS:
        limit = amount_or_none(subscription.get(f"{name}_limit_usd"))
        if limit is None or limit <= 0:
            continue
        used = amount_or_none(subscription.get(f"{name}_usage_usd"))
        start = _when(subscription.get(f"{name}_window_start"))
        out.append(_money_window(name, used, limit, period, start + period if start else None))
    return tuple(out)


def _rate_limit_windows(raw: Any) -> tuple[Window, ...]:
    """A key's own 5h / 1d / 7d USD limits (newer builds' `rate_limits`)."""
    if not isinstance(raw, list):
        return ()
    out: list[Window] = []
    for item in raw[:6]:
        key = item.get("window") if isinstance(item, dict) else None
        if not isinstance(key, str) or key not in _KEY_WINDOWS:
            continue
        name, period = _KEY_WINDOWS[key]
        limit = amount_or_none(item.get("limit"))
        if limit is None or limit <= 0 or any(w.name == name for w in out):
            continue
        resets_at = _when(item.get("reset_at"))
        used = amount_or_none(item.get("used"))
        out.append(_money_window(name, used, limit, period, resets_at))
    return tuple(out)


def _money_window(
    name: str,
    used: Decimal | None,
    limit: Decimal,
    period: timedelta,
    resets_at: datetime | None,
) -> Window:
    full = used is not None and used >= limit
    return window(
        name,
        used=used,
        limit=limit,
        unit=Unit.MONEY,
        currency="USD",
        period=period,
        resets_at=resets_at,
        state=WindowState.EXHAUSTED if full else WindowState.OK,
    )


def _charged(payload: Mapping[str, Any]) -> dict[str, Any]:
    """`usage.{today,total}.actual_cost` — what was charged, never the list-price `cost`."""
    usage = payload.get("usage")
    out: dict[str, Any] = {}
    if not isinstance(usage, dict):
        return out
    for period in ("today", "total"):
        block = usage.get(period)
        if isinstance(block, dict) and block.get("actual_cost") is not None:
            out[f"charged_{period}"] = format(amount_or_none(block["actual_cost"]), "f")
    return out


def _state(
    provider: str, ctx: FetchContext, state: KeyState, why: str, remaining: Decimal | None
) -> BalanceResult:
    return BalanceResult(
        provider=provider,
        kind=FigureKind.BALANCE,
        currency="USD",
        remaining=remaining,
        state=state,
        extras={"source": "refusal", "reason": why.lower()[:40]},
        fetched_at=ctx.now,
    )


def _error(reply: HttpReply) -> tuple[str, str]:
    """(CODE, message) of `{code, message}` or `{error: {type, message}}`; empties if none."""
    payload = None if reply.looks_html else reply.json_or_none()
    if not isinstance(payload, dict):
        return "", ""
    code = payload.get("code")
    message = payload.get("message")
    error = payload.get("error")
    if isinstance(error, dict):
        message = message or error.get("message")
    code_text = code.strip().upper()[:60] if isinstance(code, str) else ""
    return code_text, message[:300] if isinstance(message, str) else ""


def _when(value: Any) -> datetime | None:
    """An RFC 3339 time from Go; its zero time and junk are "not set"."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = from_iso(value)
    except BillingError:
        return None
    return when if when is not None and when.year >= _MIN_YEAR else None


PROVIDER = Sub2APIProvider()
