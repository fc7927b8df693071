"""Guess a key's provider from its shape alone (`detect`), and a relay site's software from
its public pages (`detect_family`): in both, the key is never sent anywhere to find out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.providers._families import RelayFamily, family_from_status
from bot.billing.providers._parse import api_root
from bot.billing.providers.base import Match, Provider
from bot.billing.reply import HttpClient, HttpReply

RELAY_ID = "relay"


def detect(key: str, base_url: str | None, providers: Iterable[Provider]) -> list[Provider]:
    """Candidate providers, best first.

    A base URL means a relay (one-api/new-api style site). Otherwise a CERTAIN match
    wins alone; else every POSSIBLE match in button order, so an ambiguous bare `sk-`
    gives several and the UI asks the user.
    """
    pool = list(providers)
    if base_url:
        relays = [p for p in pool if p.id == RELAY_ID] or [p for p in pool if p.needs_base_url]
        return sorted(relays, key=lambda p: (p.order, p.id))
    key = key.strip()
    scored = [(p, p.detect(key)) for p in pool]
    certain = [p for p, m in scored if m == Match.CERTAIN]
    if certain:
        return sorted(certain, key=lambda p: (p.order, p.id))[:1]
    possible = [p for p, m in scored if m == Match.POSSIBLE]
    return sorted(possible, key=lambda p: (p.order, p.id))


# -- relay software, from the site itself (no key) ------------------------------------------

__all__ = ["RelayFamily", "detect", "detect_family"]  # RelayFamily.provider: the id to use

_CRS_SERVICE = "claude-relay-service"
_LITELLM_ALIVE = "i'm alive!"


async def detect_family(base_url: str, http: HttpClient) -> RelayFamily | None:
    """Which relay software serves `base_url`, found without sending any key.

    Contract:

    * `base_url` is already canonical (`BillingService.validate_base_url`), and `http` is
      the SSRF-guarded client (`BillingService.detect_family` wires both): every probe
      goes through the same guard, timeouts, retries and size cap as a balance check.
    * No credential is ever sent: the probes are plain GETs without `Authorization`,
      `x-api-key` or a body. They read only public pages and unauthenticated refusals
      (the zero-credential fingerprint in docs/providers.md §relay-families):

      1. `GET /api/status` — one-api and its forks publish their settings there; the
         fields tell new-api, Veloera, done-hub/one-hub and one-api apart. A plain
         one-api-looking answer whose `GET /api/usage/token` says 401 is an old new-api.
      2. `GET /v1/usage` — sub2api refuses it with 401 `{"code": "API_KEY_REQUIRED"}`.
      3. `GET /health` — claude-relay-service says `{"service": "claude-relay-service"}`.
      4. `GET /health/liveliness` — LiteLLM says `"I'm alive!"` (confirmed, if not, by
         `GET /key/info` refusing with LiteLLM's `auth_error`).

    * Returns the family (`.provider` is the provider id to check keys with: "relay",
      "sub2api", "crs" or "litellm"), or None when the site matches none of them or cannot
      be reached — the caller then asks the user. Raises `BillingError(URL_REFUSED)` when
      the guard refuses the address; never raises for network trouble.
    * At most six requests; nothing is remembered (call it once per /add).
    """
    root = api_root(base_url)
    status = await _probe(http, f"{root}/api/status")
    family = family_from_status(_json(status))
    if family is RelayFamily.ONE_API:
        token = await _probe(http, f"{root}/api/usage/token")
        if token is not None and token.status == 401 and not token.looks_html:
            return RelayFamily.NEW_API  # an older new-api, before its own status fields
    if family is not None:
        return family

    usage = await _probe(http, f"{root}/v1/usage")
    body = _json(usage)
    if usage is not None and usage.status == 401 and isinstance(body, dict):
        code = body.get("code")
        if isinstance(code, str) and code.upper() in ("API_KEY_REQUIRED", "INVALID_API_KEY"):
            return RelayFamily.SUB2API

    health = _json(await _probe(http, f"{root}/health"))
    if isinstance(health, dict) and health.get("service") == _CRS_SERVICE:
        return RelayFamily.CRS

    alive = await _probe(http, f"{root}/health/liveliness")
    alive_body = _json(alive)
    if (
        alive is not None
        and alive.status == 200
        and isinstance(alive_body, str)
        and alive_body.strip().lower() == _LITELLM_ALIVE
    ):
        return RelayFamily.LITELLM
    key_info = await _probe(http, f"{root}/key/info")
    info = _json(key_info)
    if key_info is not None and key_info.status in (400, 401) and isinstance(info, dict):
        error = info.get("error")
        if isinstance(error, dict) and error.get("type") == "auth_error":
            return RelayFamily.LITELLM
    return None


async def _probe(http: HttpClient, url: str) -> HttpReply | None:
    """One keyless GET; None when the site could not be reached or answered garbage."""
    try:
        return await http.get(url, headers={})
    except BillingError as exc:
        if exc.kind is ErrorKind.URL_REFUSED:
            raise
        return None


def _json(reply: HttpReply | None) -> Any:
    if reply is None or reply.looks_html:
        return None
    return reply.json_or_none()
