"""Zhipu BigModel (open.bigmodel.cn, CNY): the account wallet and the GLM Coding Plan windows.

Two console endpoints accept the normal API key (docs/providers.md, "zhipu / zai"):

* wallet `GET /api/biz/account/query-customer-account-report` →
  `data.{availableBalance, balance, rechargeAmount, giveAmount, totalSpendAmount, frozenBalance}`;
* plan `GET /api/monitor/usage/quota/limit` → `data.limits[]{type, unit, number, usage,
  currentValue, remaining, percentage (USED %), nextResetTime (unix ms)}`.

A key with money and a plan gets both (money first, windows beside it); a key whose site has
no wallet answer but a plan gets a QUOTA result. Failures come as HTTP 200
`{success: false, code}` — 1000/1001/401 and Zhipu's other token codes mean the key was
refused, never an empty account.

The Authorization header is the raw key on some sites and `Bearer <key>` on others (reports
differ per site and endpoint): the site's first style is tried, the other one after an auth
failure, and whichever worked is remembered per site and endpoint (SiteMemo), so a rejected
key costs one request once the site is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import (
    MAX_WINDOWS,
    BalanceResult,
    FigureKind,
    KeyState,
    Unit,
    Window,
    WindowState,
)
from bot.billing.providers._parse import (
    amount,
    from_unix_ms,
    percent,
    period_name,
    plain,
    short_text,
    unique_name,
)
from bot.billing.providers.base import FetchContext, HttpReply, Provider

WALLET_PATH = "/api/biz/account/query-customer-account-report"
PLAN_PATH = "/api/monitor/usage/quota/limit"
RAW, BEARER = "raw", "bearer"

#: Body codes of an HTTP 200 failure that mean "this key is refused" (401 and Zhipu's
#: 1000-1004 token errors) or "slow down" (429 and its 1302/1303/1305 rate codes).
_AUTH_CODES = frozenset({401, 1000, 1001, 1002, 1003, 1004})
_RATE_CODES = frozenset({429, 1302, 1303, 1305})
_OK_CODES = frozenset({0, 200})

#: `limits[].unit` → minutes per `number` (1 day, 3 hour, 5 minute, 6 week).
_UNIT_MINUTES = {1: 1440, 3: 60, 5: 1, 6: 10080}
_WINDOW_TYPES = frozenset({"TOKENS_LIMIT", "CREDIT_LIMIT", "TIME_LIMIT"})
_MAX_NUMBER = 10_000


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one endpoint said: a body, a refusal of the key, no such route, or an error."""

    body: Mapping[str, Any] | None = None
    rejected: bool = False
    missing: bool = False
    error: BillingError | None = None


class ZhipuProvider(Provider):
    id = "zhipu"
    title = "Zhipu BigModel"
    hint = "Zhipu GLM (open.bigmodel.cn): wallet and Coding Plan"
    kind = FigureKind.BALANCE
    default_base_url = "https://open.bigmodel.cn"
    order = 110
    currency: ClassVar[str] = "CNY"
    first_auth: ClassVar[str] = RAW  # reported for the China site; the other style follows

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = site_root(ctx.base_url)
        wallet = await self._ask(ctx, root, WALLET_PATH)
        if wallet.rejected:
            raise BillingError(ErrorKind.KEY_REJECTED, "wallet refused the key")
        if wallet.error is not None and not wallet.missing:
            raise wallet.error  # 5xx, 429, garbage: no half answer, the last figure stays
        plan = await self._ask(ctx, root, PLAN_PATH)

        if wallet.body is not None:
            try:
                if plan.body is None:
                    raise plan.error or BillingError(ErrorKind.NO_BALANCE_API, "no plan")
                windows, extras = _windows(plan.body)
            except BillingError as exc:
                # The wallet is the key's main figure: a plan answer we cannot use (or none)
                # leaves it without windows instead of failing the whole check.
                windows, extras = (), {}
                if exc.kind is not ErrorKind.NO_BALANCE_API or plan.rejected:
                    extras["plan_check"] = "failed"
            return self._wallet_result(ctx, wallet.body, windows, extras)

        # No wallet answer (no such route on this site, or the account has none).
        if plan.rejected:
            raise BillingError(ErrorKind.KEY_REJECTED, "plan endpoint refused the key")
        if plan.body is not None:
            windows, extras = _windows(plan.body)
            if windows:
                return BalanceResult(
                    provider=self.id,
                    kind=FigureKind.QUOTA,
                    windows=windows,
                    state=_plan_state(windows),
                    extras=extras,
                    fetched_at=ctx.now,
                )
        if plan.error is not None and not plan.missing:
            raise plan.error
        if wallet.error is not None:
            raise wallet.error
        raise BillingError(ErrorKind.NO_BALANCE_API, "no wallet and no plan for this key")

    def _wallet_result(
        self,
        ctx: FetchContext,
        body: Mapping[str, Any],
        windows: tuple[Window, ...],
        extras: dict[str, Any],
    ) -> BalanceResult:
        data = body.get("data")
        if not isinstance(data, dict):
            raise BillingError(ErrorKind.MALFORMED, "wallet without data")
        figure = data.get("availableBalance")
        if figure is None:
            figure = data.get("balance")
        if figure is None:
            raise BillingError(ErrorKind.MALFORMED, "wallet without a balance")
        available = amount(figure)
        for src, name in (
            ("balance", "balance"),
            ("rechargeAmount", "topped_up"),
            ("giveAmount", "granted"),
            ("totalSpendAmount", "spent_total"),
            ("frozenBalance", "frozen"),
        ):
            if data.get(src) is not None:
                extras[name] = plain(amount(data[src]))
        state = KeyState.EXHAUSTED if available <= 0 else KeyState.OK
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=self.currency,
            remaining=available,
            state=state,
            windows=windows,
            extras=extras,
            fetched_at=ctx.now,
        )

    # -- one endpoint, either auth style ---------------------------------------------------

    async def _ask(self, ctx: FetchContext, root: str, path: str) -> _Answer:
        """One endpoint. A site's known style is used alone; else both styles, the wallet's
        learnt style (or the site's usual one) first."""
        known = ctx.memo.get(("zhipu:auth", root, path))
        if known in (RAW, BEARER):
            styles = [known]
        else:
            first = ctx.memo.get(("zhipu:auth", root, WALLET_PATH))
            first = first if first in (RAW, BEARER) else self.first_auth
            styles = [first, _other(first)]
        answer = _Answer()
        for style in styles:
            reply = await ctx.http.get(f"{root}{path}", headers=_headers(ctx, style))
            answer = _classify(reply)
            if answer.body is not None:
                ctx.memo.put(("zhipu:auth", root, path), style)
            if not answer.rejected:
                return answer
        return answer


def _other(style: str) -> str:
    return BEARER if style == RAW else RAW


def _headers(ctx: FetchContext, style: str) -> dict[str, str]:
    key = ctx.key.reveal()
    return {"Authorization": key if style == RAW else f"Bearer {key}"}


def _classify(reply: HttpReply) -> _Answer:
    if reply.status in (401, 403):
        return _Answer(rejected=True)
    if reply.status == 429 or reply.status >= 500:
        try:
            reply.raise_for_common()
        except BillingError as exc:
            return _Answer(error=exc)
    if reply.status in (404, 405, 410):
        return _Answer(missing=True)
    if not 200 <= reply.status < 300:
        return _Answer(error=BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}"))
    try:
        body = reply.json()
    except BillingError as exc:
        return _Answer(error=exc)
    if not isinstance(body, dict):
        return _Answer(error=BillingError(ErrorKind.MALFORMED, "reply is not a JSON object"))
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    success = body.get("success")
    if success is True and (code is None or code in _OK_CODES):
        return _Answer(body=body)
    if code in _AUTH_CODES:
        return _Answer(rejected=True)
    if code in _RATE_CODES:
        return _Answer(error=BillingError(ErrorKind.RATE_LIMITED, "rate limit in HTTP 200 body"))
    if success is False or code is not None:
        # Not about the key and not transient-looking: this site or account has no answer
        # here (kept as an error, but the other endpoint may still answer).
        return _Answer(
            missing=True, error=BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200")
        )
    return _Answer(error=BillingError(ErrorKind.MALFORMED, "reply without success"))


# -- plan windows ----------------------------------------------------------------------------


def _windows(body: Mapping[str, Any]) -> tuple[tuple[Window, ...], dict[str, Any]]:
    data = body.get("data")
    if not isinstance(data, dict):
        return (), {}
    extras: dict[str, Any] = {}
    for field in ("planName", "level"):
        label = short_text(data.get(field))
        if label is not None:
            extras["plan"] = label
            break
    limits = data.get("limits")
    if limits is None:
        return (), extras
    if not isinstance(limits, list):
        raise BillingError(ErrorKind.MALFORMED, "plan limits are not a list")
    windows: list[Window] = []
    names: set[str] = set()
    for item in limits[:MAX_WINDOWS]:
        window = _window(item, names)
        if window is not None:
            windows.append(window)
            names.add(window.name)
    return tuple(windows), extras


def _window(item: Any, taken: set[str]) -> Window | None:
    if not isinstance(item, dict):
        raise BillingError(ErrorKind.MALFORMED, "plan limit is not an object")
    kind = item.get("type")
    if kind not in _WINDOW_TYPES:
        return None  # a kind of limit we do not know: not shown rather than guessed
    unit, number = _small_int(item.get("unit")), _small_int(item.get("number"))
    minutes = None
    if unit in _UNIT_MINUTES and number is not None and number > 0:
        minutes = _UNIT_MINUTES[unit] * number
    if kind == "TIME_LIMIT":
        # Monthly MCP tool calls (the plan page's "MCP" quota); unit 5 / number 1 marks
        # the monthly quota rather than a one-minute window.
        name, period = "MCP", None
        if minutes is not None and not (unit == 5 and number == 1):
            period = timedelta(minutes=minutes)
    else:
        period = timedelta(minutes=minutes) if minutes else None
        name = period_name(period)
    name = unique_name(name, taken)

    limit = _count(item.get("usage"))
    used = _count(item.get("currentValue"))
    remaining = _count(item.get("remaining"))
    if used is None and limit is not None and remaining is not None:
        used = max(Decimal(0), limit - remaining)
    used_pct = None
    if item.get("percentage") is not None:
        used_pct = percent(item["percentage"])
    elif used is not None and limit:
        used_pct = min(Decimal(100), used * 100 / limit)
    exhausted = (used_pct is not None and used_pct >= 100) or (
        remaining is not None and remaining <= 0 and bool(limit)
    )
    counted = kind == "TIME_LIMIT" and used is not None and limit is not None
    return Window(
        name=name,
        used=used if counted else None,
        limit=limit if counted else None,
        used_pct=used_pct,
        unit=Unit.REQUESTS if counted else Unit.PERCENT,
        resets_at=from_unix_ms(item.get("nextResetTime")),
        period=period,
        state=WindowState.EXHAUSTED if exhausted else WindowState.OK,
    )


def _plan_state(windows: tuple[Window, ...]) -> KeyState:
    blocked = any(w.state is WindowState.EXHAUSTED and w.name != "MCP" for w in windows)
    return KeyState.EXHAUSTED if blocked else KeyState.OK


def _count(value: Any) -> Decimal | None:
    return None if value is None else amount(value, minimum=Decimal(0))


def _small_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NUMBER:
        return None
    return value


def site_root(base_url: str) -> str:
    """Scheme, host and any prefix before `/api`: people paste the model base URL
    (`https://open.bigmodel.cn/api/paas/v4`, `https://api.z.ai/api/coding/paas/v4`)."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    cut = path.find("/api/")
    if cut >= 0:
        path = path[:cut]
    elif path.endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


PROVIDER = ZhipuProvider()
