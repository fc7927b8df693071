"""The bot as real processes (`python -m bot run`): SIGKILL mid-sweep, and two replicas.

Both replicas poll the same fake Telegram: the fake answers the older long poll with
409 Conflict, as Telegram does, and PTB keeps retrying. Only the sweep and the outbox
matter here, and those run in every replica, coordinated by leases in the database.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.alerts.outbox import OutboxService
from bot.alerts.preferences import AlertPreferences
from bot.crypto.masterkey import open_vault
from bot.secret import Secret
from bot.services.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from tests.alerts.conftest import Balances, poll_until
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram
from tests.foundation.conftest import clean_env

LOW = "running low"
MASTER = base64.urlsafe_b64encode(os.urandom(32)).decode()


def bot_env(tg: FakeTelegram, providers: FakeProviderServer, url: str, tmp: Path) -> dict[str, str]:
    return clean_env(
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_URL=tg.api_root,
        DATABASE_URL=url,
        DATA_DIR=str(tmp / "data"),
        ENCRYPTION_KEY=MASTER,
        PROVIDER_DEEPSEEK_BASE_URL=providers.url,
        ALERT_INTERVAL_SECONDS="1",
        ALLOW_PRIVATE_BASE_URLS="true",
        LOG_LEVEL="INFO",
    )


def spawn(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run"], cwd=cwd, env=env, stdout=out, stderr=out
    )


async def seed(
    make_settings: Callable[..., Settings], url: str, users: list[int], per_user: int
) -> list[str]:
    """Keys with a threshold of 50, stored before any bot process starts."""
    settings = make_settings(database_url=url, encryption_key=MASTER)
    db = Database(url)
    secrets: list[str] = []
    try:
        keys = KeyService(db, await open_vault(settings, db))
        alerts = AlertPreferences(db, OutboxService(db))
        for uid in users:
            for j in range(per_user):
                secret = f"sk-proc{uid:010d}{j:04d}"
                added = await keys.add(uid, Secret(secret), "deepseek", label=f"k{j}")
                await alerts.set_thresholds(uid, [added.key.id], ["50"])
                secrets.append(secret)
    finally:
        await db.dispose()
    return secrets


def low_alerts(tg: FakeTelegram) -> Counter[tuple[int, str]]:
    """(chat, key label) → how many low-balance messages arrived."""
    found: Counter[tuple[int, str]] = Counter()
    for call in tg.calls_to("sendMessage"):
        text = str(call.params.get("text", ""))
        if LOW in text and (call.method, call.params) not in [(m, p) for m, p, _ in tg.errors]:
            label = text.split("<b>", 1)[1].split("</b>", 1)[0]
            found[(int(call.params["chat_id"]), label)] += 1
    return found


async def ready(tg: FakeTelegram, n: int) -> None:
    async def check() -> bool:
        return len(tg.calls_to("setMyCommands")) >= 2 * n

    await poll_until(check, 30)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class HangingSweep:
    tg: FakeTelegram
    providers: FakeProviderServer
    users: list[int]
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@asynccontextmanager
async def hanging_sweep(
    make_settings: Callable[..., Settings], tmp_path: Path, users: list[int], latency: float
) -> AsyncIterator[HangingSweep]:
    """One bot process, one key per user with a threshold of 50 at a balance of 100; after a
    quiet sweep the balances drop to 10 and the provider hangs `latency` s: a sweep is then
    under way, its checks in flight, when the context is entered."""
    tg = await FakeTelegram().start()
    providers = await FakeProviderServer().start()
    balances = Balances()
    balances.install(providers)
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    secrets = await seed(make_settings, url, users, 1)
    for uid in users:
        tg.user(uid, started=True)
    balances.amounts.update(dict.fromkeys(secrets, "100"))
    scene = HangingSweep(tg, providers, users, bot_env(tg, providers, url, tmp_path))
    scene.procs.append(spawn(scene.env, tmp_path, tmp_path / "first.log"))
    try:
        await ready(tg, 1)

        async def swept() -> bool:
            return providers.count("/user/balance") >= 2 * len(secrets)

        await poll_until(swept, 20)  # two quiet sweeps at 100
        providers.latency = latency  # the next sweep hangs at the provider...
        balances.amounts.update(dict.fromkeys(secrets, "10"))
        seen = providers.count("/user/balance")

        async def in_flight() -> bool:
            return providers.count("/user/balance") >= seen + len(secrets)

        await poll_until(in_flight, 20)
        yield scene
    finally:
        for proc in scene.procs:
            stop(proc)
        await tg.stop()
        await providers.stop()


async def each_alert_once_after_restart(scene: HangingSweep, tmp_path: Path) -> None:
    """Restart with a fast provider: every user gets exactly one low-balance alert."""
    scene.providers.latency = 0.0
    scene.procs.append(spawn(scene.env, tmp_path, tmp_path / "second.log"))

    def all_arrived() -> bool | None:
        return len(low_alerts(scene.tg)) == len(scene.users) or None

    await scene.tg.wait_until(all_arrived, 40, lambda: f"{low_alerts(scene.tg)}")
    await asyncio.sleep(3)  # more sweeps: still nothing new
    assert set(low_alerts(scene.tg).values()) == {1}


@pytest.mark.slow
async def test_sigkill_mid_sweep_neither_drops_nor_doubles(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    users = list(range(3001, 3011))
    async with hanging_sweep(make_settings, tmp_path, users, latency=3.0) as scene:
        first = scene.procs[0]
        first.send_signal(signal.SIGKILL)  # ...and the process dies in the middle of it
        first.wait(10)
        assert low_alerts(scene.tg) == Counter()
        await each_alert_once_after_restart(scene, tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_replicas_on_postgres_send_each_alert_once(
    make_settings: Callable[..., Settings], postgres_url: str, tmp_path: Path
) -> None:
    tg = await FakeTelegram().start()
    providers = await FakeProviderServer().start()
    providers.latency = 0.05  # sweeps take a moment, so both replicas get batches
    balances = Balances()
    balances.install(providers)
    users = list(range(4001, 4101))
    secrets = await seed(make_settings, postgres_url, users, 2)  # 200 keys
    for uid in users:
        tg.user(uid, started=True)
    balances.amounts.update(dict.fromkeys(secrets, "100"))
    env = bot_env(tg, providers, postgres_url, tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn(env, tmp_path, tmp_path / "a.log"))
        await ready(tg, 1)  # migrations done by the first one
        procs.append(spawn(env, tmp_path, tmp_path / "b.log"))
        await ready(tg, 2)
        await asyncio.sleep(2)
        balances.amounts.update(dict.fromkeys(secrets, "10"))

        def all_arrived() -> bool | None:
            return len(low_alerts(tg)) == len(secrets) or None

        await tg.wait_until(all_arrived, 60, lambda: f"{len(low_alerts(tg))} of {len(secrets)}")
        await asyncio.sleep(3)
        counts = low_alerts(tg)
        assert len(counts) == 200 and set(counts.values()) == {1}
        assert all(p.poll() is None for p in procs)  # both replicas alive throughout
    finally:
        for proc in procs:
            stop(proc)
        await tg.stop()
        await providers.stop()
    logs: dict[str, Any] = {
        name: (tmp_path / name).read_text(errors="replace") for name in ("a.log", "b.log")
    }
    events = {
        name: sum(int(line.split(", ")[1].split()[0]) for line in text.splitlines()
                  if "alerts sweep:" in line)
        for name, text in logs.items()
    }  # fmt: skip
    print(f"\nevents detected per replica: {events}")
    assert sum(events.values()) == 200
