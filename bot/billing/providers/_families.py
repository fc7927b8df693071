"""Which relay software a site runs, from what it publishes without a key
(docs/providers.md §relay-families).

`GET /api/status` is public on one-api and its forks, and each fork adds its own fields
(read in their sources): new-api has `quota_display_type`, `setup`, `usd_exchange_rate`,
`mj_notify_enabled`…; Veloera (a new-api fork) `check_in_enabled`; done-hub / one-hub
`telegram_bot`, `chat_links`, `PaymentUSDRate`; one-api none of these. The other families
do not serve it (sub2api, claude-relay-service, LiteLLM) and are told apart by
`bot.billing.detect`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class RelayFamily(StrEnum):
    NEW_API = "new-api"
    ONE_API = "one-api"
    DONE_HUB = "done-hub"  # also one-hub (MartialBE/one-hub), its parent
    VELOERA = "veloera"
    SUB2API = "sub2api"
    CRS = "crs"  # claude-relay-service
    LITELLM = "litellm"

    @property
    def provider(self) -> str:
        """The provider id that reads this family's keys."""
        return "relay" if self in _RELAY_IDS else self.value


_RELAY_IDS = frozenset({RelayFamily.NEW_API, RelayFamily.ONE_API, RelayFamily.DONE_HUB,
                        RelayFamily.VELOERA})  # fmt: skip
_VELOERA = ("check_in_enabled",)
_DONE_HUB = ("telegram_bot", "chat_links", "PaymentUSDRate")
_NEW_API = ("quota_display_type", "setup", "usd_exchange_rate", "mj_notify_enabled",
            "enable_drawing", "price")  # fmt: skip
_ONE_API = ("quota_per_unit", "system_name", "display_in_currency")


def family_from_status(payload: Any) -> RelayFamily | None:
    """The family a `/api/status` answer belongs to, or None when it is not one of them.

    ONE_API can also be an old new-api (before its own fields existed); the caller may
    tell them apart by probing `/api/usage/token` (new-api: 401 without a key).
    """
    if not isinstance(payload, Mapping) or payload.get("success") is not True:
        return None
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return None
    if any(k in data for k in _VELOERA):
        return RelayFamily.VELOERA
    if any(k in data for k in _DONE_HUB):
        return RelayFamily.DONE_HUB
    if any(k in data for k in _NEW_API):
        return RelayFamily.NEW_API
    if any(k in data for k in _ONE_API):
        return RelayFamily.ONE_API
    return None
