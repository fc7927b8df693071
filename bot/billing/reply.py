"""What travels between the HTTP layer (bot.billing.http) and a provider: the capped
reply, and the client protocol a provider may use. Below both, so neither imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.billing.errors import BillingError, ErrorKind


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A fully read, size-capped response. Upstream text stays in here, never in errors."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """Parsed JSON, or a MALFORMED error (HTML pages, empty bodies, garbage)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise BillingError(
                ErrorKind.MALFORMED, f"HTTP {self.status}: not JSON", status=self.status
            ) from None

    def json_or_none(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def looks_html(self) -> bool:
        head = self.body[:256].lstrip().lower()
        ctype = str(self.headers.get("content-type", "")).lower()
        return "text/html" in ctype or head.startswith((b"<!doctype", b"<html"))

    def raise_for_common(self) -> None:
        """Map the statuses every provider treats alike (429, 5xx, other non-2xx)."""
        if self.status == 429:
            raise BillingError(
                ErrorKind.RATE_LIMITED,
                "HTTP 429",
                status=429,
                retry_after=parse_retry_after(self.headers.get("retry-after")),
            )
        if self.status >= 500:
            raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {self.status}", status=self.status)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpClient(Protocol):
    """What a provider may do on the network: GET, or POST a small JSON body to a
    read-only endpoint, with headers; either way a capped reply (see bot.billing.http)."""

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> HttpReply: ...

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply: ...
