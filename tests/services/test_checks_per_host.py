"""CHECKS_PER_HOST: the per-host politeness limit is an operator setting (issue 17 item 5).

The services built for the bot check at most that many keys at once against one provider
host, measured at the fake provider (how many requests it was answering at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app import build_services, close_services
from bot.billing.models import KeyRequest
from bot.secret import Secret
from bot.settings import Settings
from tests.fakes.canned import canned_routes
from tests.fakes.provider_server import FakeProviderServer


async def _peak(make_settings: Callable[..., Settings], **overrides: Any) -> int:
    server = FakeProviderServer()
    server.install(canned_routes("deepseek"))
    server.latency = 0.05
    await server.start()
    settings = make_settings(provider_base_urls={"DEEPSEEK": server.url}, **overrides)
    services = await build_services(settings)
    try:
        reqs = [
            KeyRequest(key_id=f"k{i}", provider="deepseek", secret=Secret(f"sk-{i:032d}"))
            for i in range(24)
        ]
        outcomes = await services.billing.fetch_many(reqs, use_cache=False)
        assert all(o.ok for o in outcomes)
    finally:
        await close_services(services)
        await server.stop()
    return server.peak_in_flight


async def test_checks_per_host_caps_concurrent_checks_on_one_host(make_settings) -> None:
    assert await _peak(make_settings, checks_per_host=3) == 3


async def test_default_allows_more_than_a_tight_setting(make_settings) -> None:
    assert Settings.model_fields["checks_per_host"].default == 50
    assert await _peak(make_settings) > 3  # 24 checks, up to 50 at once


@pytest.mark.parametrize("value", ["0", "-1", "many", "1001"])
def test_bad_checks_per_host_is_refused(make_settings, value: str) -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="CHECKS_PER_HOST"):
        make_settings(checks_per_host=value)
