"""The failures a balance check can end in, each explainable in one sentence.

Messages here are fixed strings chosen by us; upstream bodies never go into them,
so they are safe to log and to show (after translation by the UI, keyed on `kind`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ErrorKind(StrEnum):
    KEY_REJECTED = "key_rejected"  # 401/403: revoked, wrong, deactivated account
    WRONG_KEY_TYPE = "wrong_key_type"  # e.g. an sk- key on credit_grants (needs sess-)
    NO_BALANCE_API = "no_balance_api"  # this provider / site has no balance endpoint for this key
    RATE_LIMITED = "rate_limited"  # 429, maybe with retry_after
    PROVIDER_ERROR = "provider_error"  # 5xx or an error body
    NETWORK = "network"  # timeout, DNS, connection refused
    MALFORMED = "malformed"  # not JSON, missing fields, oversized
    URL_REFUSED = "url_refused"  # base URL blocked by the SSRF guard
    UNREADABLE = "unreadable"  # stored ciphertext could not be decrypted (vault)
    PROVIDER_DOWN = "provider_down"  # not asked: its host failed repeatedly (circuit breaker)


#: Failures that say nothing about the key itself: retry later, do not alert on one.
TRANSIENT = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.PROVIDER_ERROR,
        ErrorKind.NETWORK,
        ErrorKind.MALFORMED,
        ErrorKind.PROVIDER_DOWN,
    }
)


class BillingError(Exception):
    """A check failed. `detail` is a short fixed phrase for logs, never upstream text."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        reason: StrEnum | None = None,
        since: datetime | None = None,
    ) -> None:
        self.kind = kind
        self.since = since  # PROVIDER_DOWN: when its host started failing (program's clock)
        self.detail = detail
        self.reason = reason  # a finer code within the kind (e.g. ssrf.UrlRefusal)
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT


class MalformedFigure(BillingError, ValueError):
    """A figure no answer can honestly hold (`1E+40`, `9E+999999`, a 49-digit count, a
    20-letter currency): raised where a result is built (bot/billing/models.py), so every
    provider's answer is bounded in one place. A ValueError too, so a stored row holding
    such a figure reads as unusable instead of breaking whoever renders it."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.MALFORMED, detail)
