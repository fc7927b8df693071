"""xAI (Grok): prepaid credit through the Management API (docs/providers.md §xai).

The balance needs a *management key* (xAI Console → Settings → Management Keys), sent to
`https://management-api.x.ai` (https://docs.x.ai/developers/management-api):

1. `GET /auth/management-keys/validation` → `{apiKeyId, teamId, scope: "SCOPE_TEAM",
   scopeId, …}`: the team the key belongs to (`scopeId` for a team-scoped key, else the
   older `teamId`). The id goes into a URL path, so only `[A-Za-z0-9_-]{1,64}` is accepted.
2. `GET /v1/billing/teams/{team}/prepaid/balance` → `{changes: [...], total: {val:
   "<USD cents, string>"}}`. The ledger is inverted (top-ups are negative), so what is left
   is `-val / 100` — the sign comes from third-party readers of this endpoint and is not
   confirmed by xAI's docs (see docs/providers.md). A 404 there means the team is not
   prepaid (billed afterwards): no balance to show.

An ordinary inference key (`xai-…`) is refused by the management API; it is then checked
at `GET https://api.x.ai/v1/api-key` (documented; 200 with `api_key_blocked`,
`api_key_disabled`, `team_blocked` flags, 400/401 for a bad key) and reported as "valid —
needs a management key for the balance".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount, json_object, raise_for_status
from bot.billing.providers.base import FetchContext, Match, Provider
from bot.i18n import N_

MANAGEMENT_HOST = "management-api.x.ai"
INFERENCE_BASE = "https://api.x.ai"
NEEDS_MANAGEMENT_KEY = "needs_management_key"
_TEAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BLOCK_FLAGS = ("api_key_blocked", "api_key_disabled", "team_blocked")


class XAIProvider(Provider):
    id = "xai"
    title = "xAI (Grok)"
    hint = "xAI Grok: a management key shows the prepaid credit"
    kind = FigureKind.BALANCE
    default_base_url = f"https://{MANAGEMENT_HOST}"
    order = 160
    explanations: ClassVar[Mapping[str, str]] = {
        NEEDS_MANAGEMENT_KEY: N_(
            "The key works. xAI shows the prepaid credit only to a management key (xAI "
            "Console → Settings → Management Keys)."
        ),
        "no_balance_api": N_("This xAI team is not prepaid, so there is no credit balance."),
    }

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("xai-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        base = ctx.base_url.strip().rstrip("/")
        reply = await ctx.http.get(f"{base}/auth/management-keys/validation", headers=ctx.bearer())
        if reply.status in (400, 401, 403):
            return await self._inference_key(ctx, base, reply.status)
        raise_for_status(reply)
        team = _team_id(json_object(reply))
        balance = await ctx.http.get(
            f"{base}/v1/billing/teams/{team}/prepaid/balance", headers=ctx.bearer()
        )
        if balance.status == 404:
            raise BillingError(ErrorKind.NO_BALANCE_API, "team is not prepaid", status=404)
        raise_for_status(balance)
        body = json_object(balance)
        total = body.get("total")
        cents = total.get("val") if isinstance(total, dict) else None
        if cents is None:
            raise BillingError(ErrorKind.MALFORMED, "no total", status=balance.status)
        remaining = -amount(cents).scaleb(-2)  # inverted ledger, cents → USD
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras={"scope": "team"},
            fetched_at=ctx.now,
        )

    async def _inference_key(self, ctx: FetchContext, base: str, status: int) -> BalanceResult:
        """Refused by the management API: an `xai-` inference key may still be a good key."""
        if not ctx.key.reveal().startswith("xai-"):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {status}", status=status)
        reply = await ctx.http.get(f"{_inference_base(base)}/v1/api-key", headers=ctx.bearer())
        if reply.status in (400, 401, 403):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        raise_for_status(reply)
        info = json_object(reply)
        if any(info.get(flag) is True for flag in _BLOCK_FLAGS):
            raise BillingError(ErrorKind.KEY_REJECTED, "key or team blocked", status=200)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.VALIDITY,
            extras={"hint": NEEDS_MANAGEMENT_KEY},
            fetched_at=ctx.now,
        )


def _team_id(validation: Mapping[str, Any]) -> str:
    scope_id, team_id = validation.get("scopeId"), validation.get("teamId")
    scope = validation.get("scope")
    candidates = [scope_id, team_id] if scope in (None, "SCOPE_TEAM") else [team_id]
    for candidate in candidates:
        if isinstance(candidate, str) and _TEAM_ID.match(candidate.strip()):
            return candidate.strip()
    raise BillingError(ErrorKind.MALFORMED, "no usable team id", status=200)


def _inference_base(base: str) -> str:
    """api.x.ai for the real management host; the same root for an operator override."""
    host = (urlsplit(base).hostname or "").lower()
    return INFERENCE_BASE if host == MANAGEMENT_HOST else base


PROVIDER = XAIProvider()
