"""Alert tests: a migrated database, the real billing service against a fake provider
whose balances the test changes between sweeps, and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.alerts.digest import DailyDigest
from bot.alerts.outbox import OutboxService
from bot.alerts.preferences import AlertPreferences
from bot.alerts.sweep import AlertSweep
from bot.billing.http import HttpOptions
from bot.billing.service import BillingService
from bot.crypto.masterkey import open_vault
from bot.secret import Secret
from bot.services.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import AlertOutbox
from tests.e2e.harness import provider_overrides
from tests.fakes.provider_server import FakeProviderServer, Reply

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Balances:
    """Per-key answers of the fake DeepSeek (/user/balance) and relay (legacy pair)."""

    amounts: dict[str, Any] = field(default_factory=dict)  # secret -> Decimal-ish or int status
    expiry: dict[str, int] = field(default_factory=dict)  # secret -> unix access_until (relay)

    def _secret(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def deepseek(self, request: web.Request) -> Reply:
        value = self.amounts.get(self._secret(request), 0)
        if isinstance(value, int) and value >= 400:
            return Reply(value, json={"error": {"message": "nope"}})
        info = {"currency": "USD", "total_balance": str(value), "granted_balance": "0",
                "topped_up_balance": str(value)}  # fmt: skip
        return Reply(200, json={"is_available": True, "balance_infos": [info]})

    def subscription(self, request: web.Request) -> Reply:
        secret = self._secret(request)
        value = self.amounts.get(secret, 0)
        if isinstance(value, int) and value >= 400:
            return Reply(value, json={"error": {"message": "nope"}})
        return Reply(200, json={"object": "billing_subscription", "hard_limit_usd": 100,
                                "access_until": self.expiry.get(secret, 0)})  # fmt: skip

    def usage(self, request: web.Request) -> Reply:
        value = self.amounts.get(self._secret(request), 0)
        used_cents = (100 - float(value)) * 100 if not isinstance(value, int) or value < 400 else 0
        return Reply(200, json={"object": "list", "total_usage": used_cents})

    def install(self, server: FakeProviderServer) -> None:
        server.handle("/user/balance", self.deepseek)
        server.handle("/v1/dashboard/billing/subscription", self.subscription)
        server.handle("/v1/dashboard/billing/usage", self.usage)


@dataclass
class Rig:
    settings: Settings
    db: Database
    keys: KeyService
    billing: BillingService
    outbox: OutboxService
    alerts: AlertPreferences
    sweeper: AlertSweep
    digest: DailyDigest
    providers: FakeProviderServer
    balances: Balances
    clock: Clock

    async def add_key(self, owner: int, secret: str, provider: str = "deepseek",
                      label: str | None = None) -> str:  # fmt: skip
        added = await self.keys.add(owner, Secret(secret), provider, label=label)
        return added.key.id

    async def sweep(self, **advance: float) -> None:
        self.clock.advance(**(advance or {"seconds": 61}))
        await self.sweeper.run()

    async def events(self, user_id: int | None = None) -> list[AlertOutbox]:
        return list(await self.outbox.rows(user_id))

    async def kinds(self, user_id: int | None = None) -> list[str]:
        return [r.kind for r in await self.events(user_id)]


@pytest.fixture
async def rig(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[Rig]:
    providers = await FakeProviderServer().start()
    balances = Balances()
    balances.install(providers)
    settings = make_settings(
        database_url=database_url, provider_base_urls=provider_overrides(providers.url)
    )
    clock = Clock()  # every reader of time in the rig gets this one
    db = Database(settings.database_url, clock=clock)
    billing = BillingService(
        settings, clock=clock, http_options=HttpOptions(attempts=1, backoff_base=0.01)
    )
    try:
        vault = await open_vault(settings, db)
        keys = KeyService(db, vault)
        outbox = OutboxService(db, clock=clock)
        alerts = AlertPreferences(db, outbox, clock=clock)
        sweeper = AlertSweep(db, keys, billing, outbox, interval=60, clock=clock, record=True)
        digest = DailyDigest(db, clock)
        yield Rig(
            settings, db, keys, billing, outbox, alerts, sweeper, digest, providers, balances, clock
        )
    finally:
        await billing.aclose()
        await db.dispose()
        await providers.stop()


async def poll_until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Poll a database condition (the fake Telegram's own waits cover its side)."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds}s")
