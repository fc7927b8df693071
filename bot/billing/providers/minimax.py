"""MiniMax: the account balance (`sk-api-` keys) or the Token Plan windows (`sk-cp-` keys).

* Balance: `GET /account/query_balance` → `available_amount`, `cash_balance`,
  `voucher_balance`, `credit_balance`, `owed_amount` as decimal strings, plus `base_resp`.
* Token Plan: `GET /v1/token_plan/remains` → `model_remains[]` per model: the current
  interval (`start_time`/`end_time` ms, `current_interval_total_count`,
  `current_interval_usage_count`) and the week (`current_weekly_*`, `weekly_end_time`);
  newer answers add `*_status` (1 normal, 2 exhausted, 3 unlimited) and `*_remaining_percent`.
  On this endpoint `*_usage_count` is what was USED (the retired `coding_plan/remains`
  endpoint put the remaining count in the same field — MiniMax's CLI fixed that in 2026-04).

Failures come as HTTP 200 with `base_resp.status_code`: 2049 (invalid key) and 1004 (login
failed) refuse the key; 2062 says the key has no Token Plan. The payload names no currency:
api.minimaxi.com (China) bills in CNY; api.minimax.io is presumed USD and says so in extras
(`currency_presumed`). Sources: docs/providers.md ("minimax").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import MAX_WINDOWS, BalanceResult, FigureKind, KeyState, Window, WindowState
from bot.billing.providers._parse import (
    amount,
    api_root,
    from_unix_ms,
    get_json_object,
    percent,
    period_name,
    plain,
    short_text,
    unique_name,
)
from bot.billing.providers.base import FetchContext, Match, Provider
from bot.i18n import N_

PLAN_PREFIX = "sk-cp-"
API_PREFIX = "sk-api-"
_REJECTED_CODES = frozenset({1004, 2049})
_NO_PLAN_CODE = 2062
_STATUS = {1: WindowState.OK, 2: WindowState.EXHAUSTED, 3: WindowState.UNLIMITED}
_OPTION_CURRENCIES = frozenset({"CNY", "USD"})
_MAX_MODEL_NAME = 20
_MONEY_EXTRAS = (
    ("cash_balance", "cash"),
    ("voucher_balance", "voucher"),
    ("credit_balance", "credit"),
    ("owed_amount", "owed"),
)


class MiniMaxProvider(Provider):
    id = "minimax"
    title = "MiniMax"
    hint = "MiniMax (api.minimaxi.com, api.minimax.io): balance or Token Plan"
    kind = FigureKind.BALANCE
    default_base_url = "https://api.minimaxi.com"
    order = 120
    explanations: ClassVar[Mapping[str, str]] = {
        "wrong_key_type": N_(
            "This MiniMax key has no Token Plan; an sk-api- key shows the account balance."
        ),
    }

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith((API_PREFIX, PLAN_PREFIX)) else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = api_root(ctx.base_url)
        if ctx.key.reveal().startswith(PLAN_PREFIX):
            body = await get_json_object(ctx, f"{root}/v1/token_plan/remains")
            _raise_for_base_resp(body)
            return self._plan_result(ctx, body)
        body = await get_json_object(ctx, f"{root}/account/query_balance")
        _raise_for_base_resp(body)
        return self._balance_result(ctx, body)

    def _balance_result(self, ctx: FetchContext, body: Mapping[str, Any]) -> BalanceResult:
        if body.get("available_amount") is None:
            raise BillingError(ErrorKind.MALFORMED, "no available_amount")
        available = amount(body["available_amount"])
        currency, presumed = currency_for(ctx.base_url, ctx.options)
        extras: dict[str, Any] = {}
        if presumed:
            extras["currency_presumed"] = True
        for src, name in _MONEY_EXTRAS:
            if body.get(src) is not None:
                extras[name] = plain(amount(body[src]))
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=available,
            state=KeyState.EXHAUSTED if available <= 0 else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )

    def _plan_result(self, ctx: FetchContext, body: Mapping[str, Any]) -> BalanceResult:
        models = body.get("model_remains")
        if not isinstance(models, list):
            raise BillingError(ErrorKind.MALFORMED, "no model_remains list")
        windows: list[Window] = []
        taken: set[str] = set()
        for item in models:
            if not isinstance(item, dict):
                raise BillingError(ErrorKind.MALFORMED, "model entry is not an object")
            model = short_text(item.get("model_name"), _MAX_MODEL_NAME) or "model"
            for window in _model_windows(item, model, taken):
                if len(windows) < MAX_WINDOWS:
                    windows.append(window)
                    taken.add(window.name)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.QUOTA,
            windows=tuple(windows),
            extras={"models": len(models)},
            fetched_at=ctx.now,
        )


def _model_windows(item: Mapping[str, Any], model: str, taken: set[str]) -> list[Window]:
    """The model's interval window and its weekly window (each when it has a cap)."""
    out: list[Window] = []
    start, end = from_unix_ms(item.get("start_time")), from_unix_ms(item.get("end_time"))
    period = end - start if start is not None and end is not None and end > start else None
    interval = _window(
        item,
        "current_interval",
        f"{model} {period_name(period, 'interval')}",
        end,
        period,
        taken,
    )
    if interval is not None:
        out.append(interval)
        taken = taken | {interval.name}
    weekly = _window(
        item,
        "current_weekly",
        f"{model} weekly",
        from_unix_ms(item.get("weekly_end_time")),
        timedelta(days=7),
        taken,
    )
    if weekly is not None:
        out.append(weekly)
    return out


def _window(
    item: Mapping[str, Any],
    prefix: str,
    name: str,
    resets_at: datetime | None,
    period: timedelta | None,
    taken: set[str],
) -> Window | None:
    status = item.get(f"{prefix}_status")
    state = (
        _STATUS.get(status) if isinstance(status, int) and not isinstance(status, bool) else None
    )
    total = _count(item.get(f"{prefix}_total_count"))
    used = _count(item.get(f"{prefix}_usage_count"))
    left_pct = item.get(f"{prefix}_remaining_percent")
    if state is None and not total:
        return None  # no status and no cap (total 0): this window does not apply
    used_pct: Decimal | None = None
    if left_pct is not None:
        used_pct = Decimal(100) - percent(left_pct)
    elif used is not None and total:
        used_pct = min(Decimal(100), used * 100 / total)
    if state is None:
        state = (
            WindowState.EXHAUSTED if used_pct is not None and used_pct >= 100 else WindowState.OK
        )
    # Counts are of the model's own unit (prompts, characters, images…), which the answer
    # does not name: the window shows the used share, not a count with a guessed unit.
    return Window(
        name=unique_name(name, taken),
        used_pct=None if state is WindowState.UNLIMITED else used_pct,
        resets_at=resets_at,
        period=period,
        state=state,
    )


def _count(value: Any) -> Decimal | None:
    return None if value is None else amount(value, minimum=Decimal(0))


def _raise_for_base_resp(body: Mapping[str, Any]) -> None:
    """HTTP 200 with a non-zero `base_resp.status_code` is a failure, never a zero."""
    base = body.get("base_resp")
    if base is None:
        return
    if not isinstance(base, dict):
        raise BillingError(ErrorKind.MALFORMED, "base_resp is not an object")
    code = base.get("status_code")
    if code in (0, None) or code == "0":
        return
    if code in _REJECTED_CODES:
        raise BillingError(ErrorKind.KEY_REJECTED, "auth error in base_resp", status=200)
    if code == _NO_PLAN_CODE:
        raise BillingError(ErrorKind.WRONG_KEY_TYPE, "no Token Plan for this key", status=200)
    raise BillingError(ErrorKind.PROVIDER_ERROR, "error in base_resp", status=200)


def currency_for(base_url: str, options: Mapping[str, str]) -> tuple[str, bool]:
    """(currency, presumed): CNY on minimaxi.com; USD presumed on minimax.io; else the
    `currency` option, else CNY like the default site — presumed unless the option says."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if host == "minimaxi.com" or host.endswith(".minimaxi.com"):
        return "CNY", False
    if host == "minimax.io" or host.endswith(".minimax.io"):
        return "USD", True
    wanted = str(options.get("currency", "")).strip().upper()
    if wanted in _OPTION_CURRENCIES:
        return wanted, False
    return "CNY", True


PROVIDER = MiniMaxProvider()
