"""SIGTERM in the middle of a sweep: a bounded, clean exit, and no alert lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.alerts.conftest import Balances, poll_until
from tests.alerts.test_processes import bot_env, low_alerts, ready, seed, spawn, stop
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram

EXIT_BOUND = 25.0  # seconds: the sweep's 10 s grace plus PTB's own shutdown


@pytest.mark.slow
async def test_sigterm_mid_sweep_exits_in_time_and_hands_back_leases(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    tg = await FakeTelegram().start()
    providers = await FakeProviderServer().start()
    balances = Balances()
    balances.install(providers)
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    users = list(range(5001, 5009))
    secrets = await seed(make_settings, url, users, 1)
    for uid in users:
        tg.user(uid, started=True)
    balances.amounts.update(dict.fromkeys(secrets, "100"))
    env = bot_env(tg, providers, url, tmp_path)
    first = spawn(env, tmp_path, tmp_path / "first.log")
    procs = [first]
    try:
        await ready(tg, 1)

        async def swept() -> bool:
            return providers.count("/user/balance") >= len(secrets)

        await poll_until(swept, 20)  # one quiet sweep at 100
        providers.latency = 12.0  # the next sweep hangs at the provider, past the grace
        balances.amounts.update(dict.fromkeys(secrets, "10"))
        seen = providers.count("/user/balance")

        async def in_flight() -> bool:
            return providers.count("/user/balance") >= seen + len(secrets)

        await poll_until(in_flight, 20)
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(first.wait, EXIT_BOUND + 5)
        took = time.monotonic() - started
        assert rc == 0, (tmp_path / "first.log").read_text()
        assert took < EXIT_BOUND, f"took {took:.1f}s"
        log = (tmp_path / "first.log").read_text()
        assert "leases handed back" in log
        assert low_alerts(tg) == Counter()  # nothing was decided from abandoned checks

        providers.latency = 0.0
        second = spawn(env, tmp_path, tmp_path / "second.log")
        procs.append(second)

        def all_arrived() -> bool | None:
            return len(low_alerts(tg)) == len(users) or None

        # Leases were handed back, so the restart checks at once (no lease wait).
        await tg.wait_until(all_arrived, 20, lambda: f"{low_alerts(tg)}")
        await asyncio.sleep(2.5)  # more sweeps: still nothing new
        assert set(low_alerts(tg).values()) == {1}
    finally:
        for proc in procs:
            stop(proc)
        await tg.stop()
        await providers.stop()
