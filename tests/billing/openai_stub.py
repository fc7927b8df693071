"""An in-process `HttpClient` for unit tests of the OpenAI-shaped providers.

Fixtures (tests/fixtures/providers/*.yaml) cover replies end to end through the real HTTP
stack; these unit tests need what fixtures cannot express: a frozen `now`, the exact query
parameters, long pagination, and hypothesis-generated amounts without a server per example.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.billing.providers.base import FetchContext, HttpReply
from bot.secret import Secret

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = "sk-CANARY-0123456789abcdefghijklmnop"
HTML_404 = HttpReply(404, b"<html><body>404</body></html>", {"content-type": "text/html"})


def reply(
    status: int = 200,
    json_body: Any = None,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpReply:
    raw = body if body is not None else json.dumps(json_body).encode()
    return HttpReply(status, raw, dict(headers or {"content-type": "application/json"}))


@dataclass
class Call:
    url: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]


@dataclass
class StubHttp:
    """Routes by URL path; a list answers successive calls (the last one repeats)."""

    routes: dict[str, HttpReply | list[HttpReply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        path = urlsplit(url).path
        self.calls.append(Call(url, path, dict(headers), dict(params or {})))
        route = self.routes.get(path, HTML_404)
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.calls]


def make_ctx(
    http: StubHttp,
    *,
    base_url: str = "https://relay.example",
    key: str = KEY,
    options: Mapping[str, str] | None = None,
    now: datetime = NOW,
) -> FetchContext:
    return FetchContext(
        http=http, key=Secret(key), base_url=base_url, options=dict(options or {}), now=now
    )
