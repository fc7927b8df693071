"""Run the real bot (the PTB Application from `bot.app`) against fake servers.

    async with running_bot(settings) as bot:
        user = bot.tg.user(1001, language_code="en")
        await bot.tg.send(user, "/start")
        reply = await bot.tg.wait_for_reply(user)

`bot.tg` is the fake Telegram Bot API (tests/fakes/telegram_api.py), `bot.providers` a
fake provider server (tests/fakes/provider_server.py) that every built-in provider's
base URL points at (PROVIDER_<ID>_BASE_URL), `bot.app` the running Application and
`bot.services` its services. The bot polls the fake with getUpdates over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from telegram import Update

from bot.app import BotApp, build_application
from bot.billing.registry import default_registry
from bot.context import Services
from bot.settings import Settings
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram


@dataclass
class RunningBot:
    app: BotApp
    tg: FakeTelegram
    providers: FakeProviderServer
    settings: Settings

    @property
    def services(self) -> Services:
        services = self.app.bot_data.services
        assert services is not None
        return services


def without_scheduled_sweep(bot: RunningBot) -> None:
    """Remove the sweep job (its first run is 5 s after start).

    For conversations of many commands: replies to one chat are paced to about one a second
    (bot/ratelimit.py), so such a test outlasts the sweep's first run, which would check
    the user's keys in between.
    """
    assert bot.app.job_queue is not None
    for job in bot.app.job_queue.get_jobs_by_name("alerts-sweep"):
        job.schedule_removal()


def provider_overrides(url: str) -> dict[str, str]:
    """PROVIDER_<ID>_BASE_URL for every registered provider → the fake server."""
    return {p.upper().replace("-", "_"): url for p in default_registry()}


@asynccontextmanager
async def start_app(settings: Settings) -> AsyncIterator[BotApp]:
    """Start an Application the way run_polling would, but inside the test's loop."""
    app = build_application(settings)
    await app.initialize()
    try:
        if app.post_init:
            await app.post_init(app)
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=1, poll_interval=0, allowed_updates=Update.ALL_TYPES
        )
        await app.start()
        try:
            yield app
        finally:
            if app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
    finally:
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


@asynccontextmanager
async def running_bot(
    make_settings: Any,
    *,
    tg: FakeTelegram | None = None,
    providers: FakeProviderServer | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningBot]:
    own_tg = tg is None
    own_providers = providers is None
    tg = tg or await FakeTelegram(token=overrides.pop("token", None) or _token()).start()
    providers = providers or await FakeProviderServer().start()
    try:
        overrides.setdefault("provider_base_urls", provider_overrides(providers.url))
        settings = make_settings(
            telegram_bot_token=tg.token, telegram_api_url=tg.api_root, **overrides
        )
        async with start_app(settings) as app:
            yield RunningBot(app, tg, providers, settings)
    finally:
        if own_tg:
            await tg.stop()
        if own_providers:
            await providers.stop()


def _token() -> str:
    from tests.conftest import TEST_TOKEN

    return TEST_TOKEN
