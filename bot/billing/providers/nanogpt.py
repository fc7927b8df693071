"""NanoGPT: `POST /api/check-balance` with the key in `x-api-key` (docs/providers.md §nanogpt).

Documented at https://docs.nano-gpt.com/api-reference/endpoint/check-balance: no request
body, answer `{"usd_balance": "129.46956147", "nano_balance": "26.71801147",
"nanoDepositAddress": "nano_…"}` — decimal strings, USD and XNO (the Nano coin). Only the
USD figure is the balance; XNO is a different asset, shown as an extra, never added in.
The deposit address is not kept. Errors are documented only as HTTP 400 with an error
object; 401/403 and auth-worded 400s are the key, other 400s a provider error.
"""

from __future__ import annotations

from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._openai_common import error_text
from bot.billing.providers._parse import amount, json_object, plain, raise_for_status
from bot.billing.providers.base import FetchContext, HttpReply, Provider

_AUTH_WORDS = ("api key", "apikey", "unauthori", "invalid key", "authenticat", "forbidden")


class NanoGPTProvider(Provider):
    id = "nanogpt"
    title = "NanoGPT"
    hint = "NanoGPT (nano-gpt.com)"
    kind = FigureKind.BALANCE
    default_base_url = "https://nano-gpt.com"
    order = 130

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = f"{_site_root(ctx.base_url)}/api/check-balance"
        reply = await ctx.http.post(url, headers={"x-api-key": ctx.key.reveal()})
        if reply.status == 400:
            raise _bad_request(reply)
        raise_for_status(reply)
        body = json_object(reply)
        if body.get("usd_balance") is None:
            if body.get("error"):
                raise _bad_request(reply)
            raise BillingError(ErrorKind.MALFORMED, "no usd_balance", status=reply.status)
        remaining = amount(body["usd_balance"])
        extras: dict[str, Any] = {}
        if body.get("nano_balance") is not None:
            extras["nano_balance_xno"] = plain(amount(body["nano_balance"]))
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras=extras,
            fetched_at=ctx.now,
        )


def _site_root(base_url: str) -> str:
    """Accept the OpenAI-style base people copy (`https://nano-gpt.com/api/v1`)."""
    root = base_url.strip().rstrip("/")
    for suffix in ("/api/v1", "/v1", "/api"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


def _bad_request(reply: HttpReply) -> BillingError:
    text = error_text(reply)
    if any(word in text for word in _AUTH_WORDS):
        return BillingError(ErrorKind.KEY_REJECTED, "auth error in reply body", status=reply.status)
    return BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


PROVIDER = NanoGPTProvider()
