"""ElevenLabs: `GET https://api.elevenlabs.io/v1/user/subscription`, header `xi-api-key`.

The subscription's character credits are a plan window, not money: `character_count`
used of `character_limit`, starting afresh at `next_character_count_reset_unix` (unix
seconds). The result is a QUOTA with one "monthly" window in characters (the period length
is not stated, so none is claimed); `tier` and `status` go to extras as short labels. A key
restricted to other endpoints gets 403 (or 401 `missing_permissions`): a wrong key type,
not a revoked key. Source: docs/providers.md ("elevenlabs").
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers._parse import amount, api_root, from_unix, json_object, short_text
from bot.billing.providers.base import FetchContext, HttpReply, Provider
from bot.i18n import N_

_LABEL = 24


class ElevenLabsProvider(Provider):
    id = "elevenlabs"
    title = "ElevenLabs"
    hint = "ElevenLabs (api.elevenlabs.io): monthly characters"
    kind = FigureKind.QUOTA
    default_base_url = "https://api.elevenlabs.io"
    order = 180
    billing_url = "https://elevenlabs.io/app/subscription"
    explanations: ClassVar[Mapping[str, str]] = {
        "wrong_key_type": N_(
            "This ElevenLabs key may not read the subscription: allow it User (read) access "
            "or remove its endpoint restrictions."
        ),
    }

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        reply = await ctx.http.get(
            f"{api_root(ctx.base_url)}/v1/user/subscription",
            headers={"xi-api-key": ctx.key.reveal()},
        )
        _raise_for_status(reply)
        body = json_object(reply)
        if body.get("character_limit") is None or body.get("character_count") is None:
            raise BillingError(ErrorKind.MALFORMED, "no character count or limit")
        limit = amount(body["character_limit"], minimum=Decimal(0))
        used = amount(body["character_count"], minimum=Decimal(0))
        exhausted = limit > 0 and used >= limit
        window = Window(
            name="monthly",
            used=used,
            limit=limit,
            unit=Unit.CHARACTERS,
            resets_at=from_unix(body.get("next_character_count_reset_unix")),
            state=WindowState.EXHAUSTED if exhausted else WindowState.OK,
        )
        extras: dict[str, Any] = {}
        for field in ("tier", "status"):
            label = short_text(body.get(field), _LABEL)
            if label is not None:
                extras[field] = label
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.QUOTA,
            windows=(window,),
            state=KeyState.EXHAUSTED if exhausted else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )


def _raise_for_status(reply: HttpReply) -> None:
    status = _detail_status(reply)
    if reply.status == 403 or (reply.status == 401 and status == "missing_permissions"):
        if reply.looks_html:
            raise BillingError(ErrorKind.PROVIDER_ERROR, "HTTP 403 page", status=403)
        raise BillingError(ErrorKind.WRONG_KEY_TYPE, "key lacks permission", status=reply.status)
    if reply.status == 401:
        raise BillingError(ErrorKind.KEY_REJECTED, "HTTP 401", status=401)
    reply.raise_for_common()
    if not 200 <= reply.status < 300:
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


def _detail_status(reply: HttpReply) -> str:
    """`detail.status` of an ElevenLabs error (`invalid_api_key`, `missing_permissions`…)."""
    body = None if reply.looks_html else reply.json_or_none()
    detail = body.get("detail") if isinstance(body, dict) else None
    status = detail.get("status") if isinstance(detail, dict) else None
    return status.lower() if isinstance(status, str) else ""


PROVIDER = ElevenLabsProvider()
