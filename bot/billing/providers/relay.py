"""OpenAI-compatible relay sites (one-api, new-api, done-hub/one-hub, Veloera, hosted
resellers): one relay token's credit (docs/providers.md §relay).

Attempts, in order:

1. new-api `GET /api/usage/token`: answers even for exhausted/expired tokens, in raw quota
   units converted with the site's public `GET /api/status` (`quota_per_unit`, display type).
   one-api, done-hub/one-hub and Veloera have no such route (404 or the SPA page): the site
   is remembered as lacking it.
2. The legacy OpenAI pair `/v1/dashboard/billing/subscription` + `/usage`, then the same
   without `/v1`: total = `hard_limit_usd`, used = `total_usage / 100` (cents), 1e8 = unlimited.
   On done-hub/one-hub (known from its public `/api/status`) an *unlimited* token answers
   with the **account** wallet, without the 1e8 sentinel and without its expiry
   (deanxv/done-hub controller/billing.go): the result says the figure may be the account's
   and never claims "no expiry" there.
3. new-api's `GET /v1/credits` (`credit_summary`: `total_granted/used/available`).
4. `GET /v1/usage` in the cc-switch "usage script" shape (sub2api and relays that publish
   for desktop tools), read by `_usage_script`.

Relays refuse exhausted/expired tokens with 401 and a Chinese message; that is an answer
about the key (state EXHAUSTED/EXPIRED), not a rejected key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._families import RelayFamily, family_from_status
from bot.billing.providers._openai_common import error_text, has_error_body
from bot.billing.providers._parse import (
    amount_or_none,
    api_root,
    from_unix,
    is_bare_sk,
    to_decimal,
)
from bot.billing.providers._usage_script import looks_like_usage_script, read_usage_script
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider

#: `hard_limit_usd` at or above this is one-api/new-api's "unlimited token" sentinel.
UNLIMITED_SENTINEL = Decimal(100_000_000)
#: one-api/new-api default: 500000 quota units per 1 USD.
DEFAULT_QUOTA_PER_UNIT = Decimal(500_000)
#: Relays ignore the usage dates (lifetime ledger), but send a window OpenAI would accept.
USAGE_WINDOW_DAYS = 99

_EXHAUSTED_MARKERS = ("额度已用尽", "已用尽", "额度不足", "exhausted", "used up")
_EXPIRED_MARKERS = ("已过期", "过期", "expired")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_RAW_UNIT_WORDS = frozenset({"TOKENS", "TOKEN", "QUOTA"})
_MAX_EXTRA_LEN = 100


class _StateAnswer(Exception):
    """The relay refused the token but told us why (exhausted / expired)."""

    def __init__(self, state: KeyState) -> None:
        super().__init__(state.value)
        self.state = state


@dataclass(frozen=True, slots=True)
class _Units:
    """How to turn new-api raw quota into what the site displays."""

    per_unit: Decimal | None  # None: show raw quota, we cannot name a currency
    rate: Decimal = Decimal(1)  # USD → display currency
    currency: str | None = "USD"
    extras: Mapping[str, Any] = field(default_factory=dict)

    def convert(self, raw: Decimal | None) -> Decimal | None:
        if raw is None or self.per_unit is None:
            return raw
        return raw * self.rate / self.per_unit


class RelayProvider(Provider):
    id = "relay"
    title = "OpenAI-compatible relay"
    hint = "OpenAI-compatible relay (one-api/new-api)"
    kind = FigureKind.BALANCE
    default_base_url = None
    needs_base_url = True
    order = 10

    def detect(self, key: str) -> Match:
        # A bare `sk-` key may be a relay token, but so may it be DeepSeek, Moonshot, …
        return Match.POSSIBLE if is_bare_sk(key) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = api_root(ctx.base_url)
        try:
            return await self._fetch(ctx, root)
        except _StateAnswer as answer:
            return self._state_result(ctx, answer.state)

    async def _fetch(self, ctx: FetchContext, root: str) -> BalanceResult:
        headers = ctx.bearer()
        # A failure here is not conclusive (one-api has no such route); keep it in case the
        # legacy pair finds nothing either, so "no balance endpoint" does not hide it.
        deferred: BillingError | None = None
        # A route that answers 200 with garbage (not a page, not JSON) is the site
        # answering badly: MALFORMED, unless another route answers properly.
        broken: list[BillingError] = []
        if ctx.memo.get(("relay:no-token-usage", root)):
            try:
                return await self._legacy(ctx, root, headers, broken)
            except BillingError as exc:
                if exc.kind is ErrorKind.NO_BALANCE_API and broken:
                    raise broken[0] from None
                raise
        reply = await ctx.http.get(f"{root}/api/usage/token", headers=headers)
        if _route_missing(reply):  # one-api and friends: skip this request next time
            ctx.memo.put(("relay:no-token-usage", root), True)
        if reply.status == 429:
            reply.raise_for_common()  # the whole site is rate limiting us: stop here
        if reply.status == 200 and not reply.looks_html:
            payload = reply.json_or_none()
            if (
                isinstance(payload, dict)
                and payload.get("code") is True
                and isinstance(payload.get("data"), dict)
            ):
                units = await self._site_units(ctx, root, headers)
                return self._from_token_usage(ctx, payload["data"], units)
            if payload is None:
                broken.append(_broken())
        elif reply.status in (401, 403) and not reply.looks_html:
            _raise_if_state(reply)
            deferred = _rejected(reply.status)
        elif reply.status >= 500:
            deferred = BillingError(
                ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status
            )
        try:
            return await self._legacy(ctx, root, headers, broken)
        except BillingError as exc:
            if exc.kind is not ErrorKind.NO_BALANCE_API:
                raise
            other = await self._other_shapes(ctx, root, headers, broken)
            if other is not None:
                return other
            if deferred is not None:
                raise deferred from None
            if broken:
                raise broken[0] from None
            raise

    # -- new-api /api/usage/token ----------------------------------------------------------

    async def _site_units(self, ctx: FetchContext, root: str, headers: Mapping[str, str]) -> _Units:
        """The site's quota unit and display currency (public /api/status), remembered."""
        known = ctx.memo.get(("relay:units", root))
        if isinstance(known, _Units):
            return known
        units = await self._read_units(ctx, root, headers)
        if not units.extras.get("units_unknown"):
            ctx.memo.put(("relay:units", root), units)
        return units

    async def _read_units(self, ctx: FetchContext, root: str, headers: Mapping[str, str]) -> _Units:
        reply = await ctx.http.get(f"{root}/api/status", headers=headers)
        reply.raise_for_common()
        payload = None if reply.status != 200 or reply.looks_html else reply.json_or_none()
        _remember_family(ctx, root, payload)
        status = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(status, dict):
            # Without the site's unit we must not guess a money figure: show raw quota.
            return _Units(None, currency=None, extras={"unit": "quota", "units_unknown": True})
        raw_qpu = status.get("quota_per_unit")
        per_unit = DEFAULT_QUOTA_PER_UNIT if raw_qpu is None else to_decimal(raw_qpu)
        if per_unit <= 0:
            raise BillingError(ErrorKind.MALFORMED, "relay quota unit is not positive")
        display = status.get("quota_display_type")
        if not isinstance(display, str):
            display = "TOKENS" if status.get("display_in_currency") is False else "USD"
        display = display.strip().upper()
        if display == "TOKENS":
            return _Units(None, currency=None, extras={"unit": "tokens"})
        if display == "CNY":
            rate = _positive_or_none(status.get("usd_exchange_rate"))
            if rate is not None:
                return _Units(per_unit, rate, "CNY")
        elif display == "CUSTOM":
            rate = _positive_or_none(status.get("custom_currency_exchange_rate"))
            if rate is not None:
                symbol = status.get("custom_currency_symbol")
                extras = {"currency_symbol": symbol[:8]} if isinstance(symbol, str) else {}
                return _Units(per_unit, rate, None, extras)
        # USD, an unknown display type, or no usable exchange rate: quota / per_unit is
        # USD by definition, so say USD rather than guess a conversion.
        return _Units(per_unit)

    def _from_token_usage(
        self, ctx: FetchContext, data: Mapping[str, Any], units: _Units
    ) -> BalanceResult:
        unlimited = data.get("unlimited_quota") is True
        used_raw = _decimal_or_none(data.get("total_used"))
        remaining_raw: Decimal | None = None
        total_raw: Decimal | None = None
        if not unlimited:
            if data.get("total_available") is None:
                raise BillingError(ErrorKind.MALFORMED, "token usage has no available quota")
            remaining_raw = to_decimal(data["total_available"])
            total_raw = _decimal_or_none(data.get("total_granted"))
        expires_at, never = _expiry(data.get("expires_at"))
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining_raw is not None and remaining_raw <= 0:
            state = KeyState.EXHAUSTED
        extras: dict[str, Any] = {"source": "token_usage", **units.extras}
        name = data.get("name")
        if isinstance(name, str) and name:
            extras["token_name"] = name[:_MAX_EXTRA_LEN]
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=units.currency,
            remaining=units.convert(remaining_raw),
            total=units.convert(total_raw),
            used=units.convert(used_raw),
            unlimited=unlimited,
            expires_at=expires_at,
            never_expires=never,
            state=state,
            extras=extras,
        )

    # -- legacy /dashboard/billing pair ----------------------------------------------------

    async def _legacy(
        self,
        ctx: FetchContext,
        root: str,
        headers: Mapping[str, str],
        broken: list[BillingError] | None = None,
    ) -> BalanceResult:
        today = ctx.now.astimezone(UTC).date()
        window = {
            "start_date": (today - timedelta(days=USAGE_WINDOW_DAYS)).isoformat(),
            "end_date": today.isoformat(),
        }
        for prefix in (f"{root}/v1", root):
            sub_reply = await ctx.http.get(
                f"{prefix}/dashboard/billing/subscription", headers=headers
            )
            subscription = _legacy_payload(sub_reply)
            if subscription is None and broken is not None and _is_garbage(sub_reply):
                broken.append(_broken())
            if subscription is None or subscription.get("object") != "billing_subscription":
                continue  # 404, SPA HTML, {"code":"404"}: maybe the other prefix
            usage_reply = await ctx.http.get(
                f"{prefix}/dashboard/billing/usage", headers=headers, params=window
            )
            usage = _legacy_payload(usage_reply)
            if usage is None:
                raise BillingError(ErrorKind.MALFORMED, "relay usage answer unusable")
            result = self._from_legacy(ctx, subscription, usage)
            # Only a token without expiry can be done-hub's "unlimited = account wallet".
            if result.never_expires and await self._family(ctx, root, headers) is (
                RelayFamily.DONE_HUB
            ):
                return _done_hub(result)
            return result
        raise BillingError(ErrorKind.NO_BALANCE_API, "this site has no balance endpoint")

    async def _family(
        self, ctx: FetchContext, root: str, headers: Mapping[str, str]
    ) -> RelayFamily | None:
        """The site's software from its /api/status (as `_site_units` asks it), remembered."""
        known = ctx.memo.get(("relay:family", root))
        if known is not None:
            return RelayFamily(known) if known else None
        reply = await ctx.http.get(f"{root}/api/status", headers=headers)
        if reply.status == 429 or reply.status >= 500:
            return None  # not now; ask again next time
        payload = None if reply.status != 200 or reply.looks_html else reply.json_or_none()
        _remember_family(ctx, root, payload)
        return family_from_status(payload)

    # -- new-api /v1/credits and the cc-switch usage shape ---------------------------------

    async def _other_shapes(
        self,
        ctx: FetchContext,
        root: str,
        headers: Mapping[str, str],
        broken: list[BillingError] | None = None,
    ) -> BalanceResult | None:
        """The answers some sites give instead of the legacy pair; None if neither."""
        if not ctx.memo.get(("relay:no-credits", root)):
            reply = await ctx.http.get(f"{root}/v1/credits", headers=headers)
            reply.raise_for_common()
            payload = None if reply.status != 200 or reply.looks_html else reply.json_or_none()
            summary = _credit_summary(payload)
            if summary is not None:
                return self._from_credits(ctx, summary)
            if broken is not None and _is_garbage(reply):
                broken.append(_broken())
            if _route_missing(reply):
                ctx.memo.put(("relay:no-credits", root), True)
        reply = await ctx.http.get(f"{root}/v1/usage", headers=headers)
        reply.raise_for_common()
        payload = None if reply.status != 200 or reply.looks_html else reply.json_or_none()
        if broken is not None and _is_garbage(reply):
            broken.append(_broken())
        if looks_like_usage_script(payload):
            currency, extras = _legacy_currency(ctx.options)
            extras["source"] = "usage_script"
            return read_usage_script(
                payload,
                provider=self.id,
                now=ctx.now,
                default_currency=currency,
                extras=extras,
            )
        return None

    def _from_credits(self, ctx: FetchContext, summary: Mapping[str, Any]) -> BalanceResult:
        remaining = amount_or_none(summary.get("total_available"))
        if remaining is None:
            raise BillingError(ErrorKind.MALFORMED, "credits without total_available")
        currency, extras = _legacy_currency(ctx.options)
        extras["source"] = "credits"
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=remaining,
            total=amount_or_none(summary.get("total_granted")),
            used=amount_or_none(summary.get("total_used")),
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras=extras,
        )

    def _from_legacy(
        self, ctx: FetchContext, subscription: Mapping[str, Any], usage: Mapping[str, Any]
    ) -> BalanceResult:
        if subscription.get("hard_limit_usd") is None:
            raise BillingError(ErrorKind.MALFORMED, "subscription has no hard limit")
        if usage.get("total_usage") is None:
            raise BillingError(ErrorKind.MALFORMED, "usage has no total")
        total = to_decimal(subscription["hard_limit_usd"])
        used = to_decimal(usage["total_usage"]) / 100  # cents
        unlimited = total >= UNLIMITED_SENTINEL
        remaining = None if unlimited else total - used
        expires_at, never = _expiry(subscription.get("access_until"))
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        currency, extras = _legacy_currency(ctx.options)
        extras["source"] = "billing_subscription"
        plan = subscription.get("plan")
        if isinstance(plan, dict) and isinstance(plan.get("title"), str) and plan["title"]:
            extras["plan"] = plan["title"][:_MAX_EXTRA_LEN]
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=remaining,
            total=None if unlimited else total,
            used=used,
            unlimited=unlimited,
            expires_at=expires_at,
            never_expires=never,
            state=state,
            extras=extras,
        )

    def _state_result(self, ctx: FetchContext, state: KeyState) -> BalanceResult:
        """A token the relay refused as exhausted (remaining is 0: it said so) or expired."""
        currency, extras = _legacy_currency(ctx.options)
        extras["source"] = "auth_error"
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=Decimal(0) if state is KeyState.EXHAUSTED else None,
            state=state,
            extras=extras,
        )


def _is_garbage(reply: HttpReply) -> bool:
    """HTTP 200, not a web page, and not JSON: the route exists and sent garbage."""
    return reply.status == 200 and not reply.looks_html and reply.json_or_none() is None


def _broken() -> BillingError:
    return BillingError(ErrorKind.MALFORMED, "relay answered 200 with broken JSON", status=200)


def _route_missing(reply: HttpReply) -> bool:
    """The site has no /api/usage/token at all (404, or an SPA page), whoever asks."""
    return reply.status == 404 or (reply.status == 200 and reply.looks_html)


def _legacy_payload(reply: HttpReply) -> dict[str, Any] | None:
    """The JSON object of a legacy-pair reply; None when the route is not there."""
    if reply.status in (401, 403):
        _raise_if_state(reply)
        if "session key" in error_text(reply):
            # api.openai.com itself: these endpoints are closed to API keys since 2023.
            raise BillingError(
                ErrorKind.WRONG_KEY_TYPE, "official OpenAI has no key balance", status=reply.status
            )
        raise _rejected(reply.status)
    reply.raise_for_common()
    if reply.status != 200 or reply.looks_html:
        return None
    payload = reply.json_or_none()
    if not isinstance(payload, dict):
        return None
    if has_error_body(payload) or (payload.get("success") is False and payload.get("message")):
        # one-api/new-api report internal errors as HTTP 200 {"error": …}, done-hub as
        # HTTP 200 {"success": false, "message": …}: never a zero.
        raise BillingError(ErrorKind.PROVIDER_ERROR, "relay returned an error", status=200)
    return payload


def _remember_family(ctx: FetchContext, root: str, status_payload: Any) -> None:
    family = family_from_status(status_payload)
    ctx.memo.put(("relay:family", root), family.value if family else "")


def _credit_summary(payload: Any) -> Mapping[str, Any] | None:
    """new-api `/v1/credits`: the figures at the top or under `data` (versions differ)."""
    if not isinstance(payload, dict) or has_error_body(payload):
        return None
    for candidate in (payload, payload.get("data")):
        if isinstance(candidate, dict) and candidate.get("total_available") is not None:
            return candidate
    return None


def _done_hub(result: BalanceResult) -> BalanceResult:
    """done-hub/one-hub: an unlimited token answers with the account wallet and no expiry,
    so the figure may be the account's, and `access_until: 0` is not "never expires"."""
    extras = {**result.extras, "scope": "token_or_account", "family": "done-hub"}
    return replace(result, never_expires=False, extras=extras)


def _raise_if_state(reply: HttpReply) -> None:
    text = error_text(reply)
    if any(marker in text for marker in _EXHAUSTED_MARKERS):
        raise _StateAnswer(KeyState.EXHAUSTED)
    if any(marker in text for marker in _EXPIRED_MARKERS):
        raise _StateAnswer(KeyState.EXPIRED)


def _rejected(status: int) -> BillingError:
    detail = "relay rejected the key" if status == 401 else "relay refused the key"
    return BillingError(ErrorKind.KEY_REJECTED, detail, status=status)


def _legacy_currency(options: Mapping[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The user's stated currency for this relay (`_usd` fields hold CNY on some sites)."""
    raw = options.get("currency")
    if raw is None or not raw.strip():
        return "USD", {}
    code = raw.strip().upper()
    if _CURRENCY_RE.match(code):
        return code, {}
    if code in _RAW_UNIT_WORDS:
        return None, {"unit": "quota"}
    return None, {}


def _expiry(value: Any) -> tuple[datetime | None, bool]:
    """(expires_at, never_expires): relays send 0 (or -1) for "never", absent for unknown."""
    if value is None:
        return None, False
    if to_decimal(value) <= 0:
        return None, True
    return from_unix(value), False


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _positive_or_none(value: Any) -> Decimal | None:
    try:
        number = to_decimal(value)
    except BillingError:
        return None
    return number if number > 0 else None


PROVIDER = RelayProvider()
