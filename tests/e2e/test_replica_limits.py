"""Limits hold for the deployment, not per replica: two real webhook processes, one PostgreSQL.

Before, each process kept its own counters: 2 replicas allowed 2 × 10 manual checks a
minute per user, 2 × 30 Telegram messages a second and 2 × the per-host politeness cap.
Updates are posted straight to each replica (as a load balancer would), and each
update id is handled once by whichever replica gets it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram.ext import ExtBot

from bot.crypto.masterkey import open_vault
from bot.ratelimit import BotRateLimiter
from bot.secret import Secret
from bot.services.keys import KeyService
from bot.services.shared_limits import HEARTBEAT_SECONDS, SharedPacer
from bot.settings import load_settings
from bot.storage import migrate
from bot.storage.db import Database
from tests.e2e.procs import BotProcess, clean_env, free_port, start_bot
from tests.e2e.test_balance import DEEPSEEK, RELAY_STATUS, relay_usage
from tests.e2e.test_webhook import SECRET
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.postgres
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


class Replicas(list[BotProcess]):
    key_b64 = ""


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, postgres_url: str, tg: FakeTelegram, providers: FakeProviderServer
) -> AsyncIterator[Replicas]:
    key_b64 = base64.b64encode(os.urandom(32)).decode()
    procs = Replicas()
    procs.key_b64 = key_b64
    try:
        for i in range(2):
            port = free_port()
            env = clean_env(
                TELEGRAM_BOT_TOKEN=tg.token,
                TELEGRAM_API_URL=tg.api_root,
                DATABASE_URL=postgres_url,
                ENCRYPTION_KEY=key_b64,
                WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
                WEBHOOK_SECRET=SECRET,
                WEBHOOK_LISTEN="127.0.0.1",
                WEBHOOK_PORT=str(port),
                ALLOW_PRIVATE_BASE_URLS="true",
                ALERT_INTERVAL_SECONDS="3600",
                PROVIDER_DEEPSEEK_BASE_URL=providers.url,
            )
            workdir = tmp_path / f"replica{i}"
            workdir.mkdir()
            proc = await start_bot(["run", "--webhook"], env, workdir, f"replica{i}", port)
            procs.append(proc)
            await proc.wait_healthy(timeout=60)  # one at a time: the first one migrates
        yield procs
    finally:
        for proc in procs:
            await proc.kill()


class Poster:
    """Posts updates straight to a replica, with fresh update ids."""

    def __init__(self) -> None:
        self.client = httpx.AsyncClient(timeout=60)
        self.next_id = 10_000

    async def command(self, replica: BotProcess, user_id: int, text: str) -> None:
        self.next_id += 1
        update: dict[str, Any] = {
            "update_id": self.next_id,
            "message": {
                "message_id": self.next_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": "U"},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
            },
        }
        response = await self.client.post(f"{replica.base}/telegram", json=update, headers=HEADERS)
        assert response.status_code == 200


async def test_manual_check_limit_is_per_user_not_per_replica(
    tmp_path: Path, postgres_url: str
) -> None:
    providers = await FakeProviderServer().start()
    providers.reply("/user/balance", json=DEEPSEEK)
    poster = Poster()
    try:
        async with FakeTelegram() as tg, two_replicas(tmp_path, postgres_url, tg, providers) as r:
            ann = tg.user(1001, "Ann", started=True)
            await poster.command(r[0], ann.id, "/add sk-deepseek0123456789abcdef provider=deepseek")
            assert "Saved" in (await tg.wait_for_reply(ann, timeout=15)).text
            final = ("as of", "stored results")  # an answer's last form (edits before it)
            answers = []
            for i in range(16):  # alternating replicas, as a round-robin balancer would
                await poster.command(r[i % 2], ann.id, "/balance")
                answer = await tg.wait_for_reply(
                    ann, timeout=15, predicate=lambda m: any(f in (m.text or "") for f in final)
                )
                answers.append(answer.text or "")
            throttled = [a for a in answers if "stored results" in a]
            assert len(throttled) == 6  # 10 real checks a minute in all, not 10 per replica
    finally:
        await poster.client.aclose()
        await providers.stop()


async def burst_from_two_replicas(tg: FakeTelegram, limiters: list[BotRateLimiter]) -> int:
    """Two Bots (one per replica) each send 100 messages to 100 users at once; 429s seen."""
    users = [tg.user(20_000 + i, f"U{i}", started=True) for i in range(200)]
    before = tg.count_429
    bots = [ExtBot(tg.token, base_url=f"{tg.api_root}/bot", rate_limiter=lim) for lim in limiters]
    for bot in bots:
        await bot.initialize()
    try:
        await asyncio.gather(
            *(bots[i % 2].send_message(u.id, "hello") for i, u in enumerate(users))
        )
    finally:
        for bot in bots:
            await bot.shutdown()
    return tg.count_429 - before


async def test_telegram_pacing_is_shared(postgres_url: str) -> None:
    """Replicas pace against one budget in the database, under Telegram's ~30/s."""
    db = Database(postgres_url)
    await migrate.upgrade(db)
    try:
        async with FakeTelegram(enforce_limits=True) as tg:  # 429 past 30 a second overall
            each_alone = await burst_from_two_replicas(tg, [BotRateLimiter(), BotRateLimiter()])
            assert each_alone > 0  # what per-process pacing did: 2 × 30/s against one 30/s
            await asyncio.sleep(1.5)
            shared = [BotRateLimiter(overall=SharedPacer(db)) for _ in range(2)]
            assert await burst_from_two_replicas(tg, shared) == 0
            print(f"200 messages from two replicas: {each_alone} × 429 alone, 0 shared")
    finally:
        await db.dispose()


async def test_per_host_politeness_is_shared(tmp_path: Path, postgres_url: str) -> None:
    """A user-supplied relay host gets at most 4 concurrent checks from the deployment."""
    providers = await FakeProviderServer().start()
    relay = await FakeProviderServer().start()
    expires = datetime.now(UTC) + timedelta(days=30)
    relay.reply("/api/usage/token", json=relay_usage(expires))
    relay.reply("/api/status", json=RELAY_STATUS)
    poster = Poster()
    try:
        async with FakeTelegram() as tg, two_replicas(tmp_path, postgres_url, tg, providers) as r:
            users = [tg.user(3001, "A", started=True), tg.user(3002, "B", started=True)]
            # Past both replicas' first sweep (5 s) and their first heartbeats after it: each
            # knows the other, and no check of these keys is cached anywhere.
            await asyncio.sleep(HEARTBEAT_SECONDS + 1)
            settings = load_settings(
                env_file=None,
                telegram_bot_token=tg.token,
                database_url=postgres_url,
                encryption_key=r.key_b64,
                data_dir=tmp_path / "test-data",
            )
            db = Database(postgres_url)
            try:
                keys = KeyService(db, await open_vault(settings, db))
                for user in users:
                    for n in range(6):
                        secret = Secret(f"sk-relay{user.id}{n}0123456789abcdef")
                        await keys.add(user.id, secret, "relay", base_url=relay.url)
            finally:
                await db.dispose()
            relay.latency = 0.5
            relay.max_in_flight = 0
            await asyncio.gather(
                *(poster.command(replica, u.id, "/balance") for u, replica in zip(users, r))
            )
            for user in users:  # /balance answers at once and edits in the checks' results
                await tg.wait_for_reply(
                    user, timeout=60, predicate=lambda m: "as of" in (m.text or "")
                )
            print(f"most concurrent requests at the relay host: {relay.max_in_flight}")
            assert relay.served >= 12  # every key was really checked, on both replicas
            assert relay.max_in_flight <= 4  # the cap for a user host, for both replicas together
    finally:
        await poster.client.aclose()
        await providers.stop()
        await relay.stop()
