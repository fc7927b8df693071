"""Relay software told from its public pages, without the key: one site per family, through
the real BillingService and its guarded client, against the fake provider server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.billing.detect import RelayFamily
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.service import BillingService
from tests.billing.conftest import FAST
from tests.fakes.provider_server import FakeProviderServer

NEW_API_STATUS = {"success": True, "message": "", "data": {
    "version": "v0.9.0", "system_name": "New API", "quota_per_unit": 500000,
    "display_in_currency": True, "quota_display_type": "USD", "usd_exchange_rate": 7.3,
    "mj_notify_enabled": False, "setup": True, "checkin_enabled": False}}  # fmt: skip
OLD_NEW_API_STATUS = {"success": True, "data": {"system_name": "New API",
                      "quota_per_unit": 500000, "display_in_currency": True}}  # fmt: skip
ONE_API_STATUS = {"success": True, "message": "", "data": {
    "version": "v0.6.10", "system_name": "One API", "quota_per_unit": 500000,
    "display_in_currency": True, "github_oauth": False, "top_up_link": ""}}  # fmt: skip
DONE_HUB_STATUS = {"success": True, "message": "", "data": {
    "version": "v1.9.0", "system_name": "Done Hub", "quota_per_unit": 500000,
    "display_in_currency": True, "telegram_bot": "", "mj_notify_enabled": False,
    "chat_links": "[]", "PaymentUSDRate": 7.3}}  # fmt: skip
VELOERA_STATUS = {"success": True, "message": "", "data": {
    "version": "v1.2.0", "system_name": "Veloera", "quota_per_unit": 500000,
    "display_in_currency": True, "mj_notify_enabled": False, "setup": True,
    "check_in_enabled": True}}  # fmt: skip
NOT_FOUND_JSON = {"error": "Not Found", "message": "Route not found"}


def new_api(s: FakeProviderServer) -> None:
    s.reply("/api/status", json=NEW_API_STATUS)
    s.reply("/api/usage/token", 401, json={"success": False, "message": "No Authorization header"})


def old_new_api(s: FakeProviderServer) -> None:
    s.reply("/api/status", json=OLD_NEW_API_STATUS)
    s.reply("/api/usage/token", 401, json={"success": False, "message": "未提供令牌"})


def one_api(s: FakeProviderServer) -> None:
    s.reply("/api/status", json=ONE_API_STATUS)  # no /api/usage/token: the SPA's 404


def done_hub(s: FakeProviderServer) -> None:
    s.reply("/api/status", json=DONE_HUB_STATUS)


def veloera(s: FakeProviderServer) -> None:
    s.reply("/api/status", json=VELOERA_STATUS)


def sub2api(s: FakeProviderServer) -> None:
    s.reply("/health", json={"status": "ok"})
    s.reply("/v1/usage", 401, json={"code": "API_KEY_REQUIRED", "message": "API key is required"})


def crs(s: FakeProviderServer) -> None:
    for path in ("/api/status", "/v1/usage"):
        s.reply(path, 404, json=NOT_FOUND_JSON)
    s.reply("/health", json={"status": "healthy", "service": "claude-relay-service",
                             "version": "1.1.200"})  # fmt: skip


def litellm(s: FakeProviderServer) -> None:
    s.reply("/api/status", 404, json={"detail": "Not Found"})
    s.reply("/v1/usage", 404, json={"detail": "Not Found"})
    s.reply(
        "/health", 401, json={"error": {"message": "Authentication Error", "type": "auth_error"}}
    )
    s.reply("/health/liveliness", json="I'm alive!")


def litellm_liveliness_hidden(s: FakeProviderServer) -> None:
    refusal = {"message": "Authentication Error, No api key passed in.", "type": "auth_error",
               "param": "None", "code": "401"}  # fmt: skip
    s.reply("/key/info", 401, json={"error": refusal})


def nothing(s: FakeProviderServer) -> None:
    s.reply("/api/status", json={"ok": True})  # some other app's JSON
    s.reply("/health", json={"status": "ok"})
    s.reply("/health/liveliness", json={"status": "ok"})
    s.reply("/v1/usage", 401, json={"error": "unauthorized"})


CASES: list[tuple[str, Callable[[FakeProviderServer], None], RelayFamily | None, str | None]] = [
    ("new-api", new_api, RelayFamily.NEW_API, "relay"),
    ("older new-api", old_new_api, RelayFamily.NEW_API, "relay"),
    ("one-api", one_api, RelayFamily.ONE_API, "relay"),
    ("done-hub", done_hub, RelayFamily.DONE_HUB, "relay"),
    ("veloera", veloera, RelayFamily.VELOERA, "relay"),
    ("sub2api", sub2api, RelayFamily.SUB2API, "sub2api"),
    ("crs", crs, RelayFamily.CRS, "crs"),
    ("litellm", litellm, RelayFamily.LITELLM, "litellm"),
    ("litellm without liveliness", litellm_liveliness_hidden, RelayFamily.LITELLM, "litellm"),
    ("matches none", nothing, None, None),
    ("empty site (404 everywhere)", lambda s: None, None, None),
]


@pytest.mark.parametrize(("name", "script", "family", "provider"), CASES, ids=[c[0] for c in CASES])
async def test_family_from_public_pages_without_the_key(
    make_settings: Any, name: str, script: Any, family: RelayFamily | None, provider: str | None
) -> None:
    server = await FakeProviderServer().start()
    script(server)
    billing = BillingService(make_settings(allow_private_base_urls=True), http_options=FAST)
    try:
        found = await billing.detect_family(server.url + "/v1")
    finally:
        await billing.aclose()
        await server.stop()
    assert found is family
    assert (found.provider if found else None) == provider
    assert server.requests, "nothing was asked"
    assert len(server.requests) <= 6
    for seen in server.requests:
        assert seen.method == "GET" and not seen.body
        lowered = {k.lower() for k in seen.headers}
        assert not lowered & {"authorization", "x-api-key", "x-goog-api-key", "cookie"}


async def test_refused_url_is_refused_not_probed(make_settings: Any) -> None:
    billing = BillingService(make_settings(allow_private_base_urls=False), http_options=FAST)
    try:
        with pytest.raises(BillingError) as info:
            await billing.detect_family("http://127.0.0.1:9/")
    finally:
        await billing.aclose()
    assert info.value.kind is ErrorKind.URL_REFUSED


async def test_unreachable_site_matches_nothing(make_settings: Any) -> None:
    server = await FakeProviderServer().start()
    url = server.url
    await server.stop()  # nothing listens there now
    billing = BillingService(make_settings(allow_private_base_urls=True), http_options=FAST)
    try:
        assert await billing.detect_family(url) is None
    finally:
        await billing.aclose()
