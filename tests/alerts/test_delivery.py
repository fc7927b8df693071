"""1,000 users whose keys all cross at once: every alert arrives, within Telegram's limits."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from bot.secret import Secret
from bot.storage.models import AlertState
from tests.alerts.conftest import Balances
from tests.e2e.harness import running_bot
from tests.fakes.telegram_api import FakeTelegram

USERS = 1000


@pytest.mark.slow
async def test_thousand_users_within_limits(make_settings) -> None:
    tg = await FakeTelegram(enforce_limits=True).start()
    try:
        async with running_bot(make_settings, tg=tg, alert_interval_seconds=3600) as bot:
            sweep, outbox = bot.services.sweep, bot.services.outbox
            assert sweep is not None and outbox is not None
            # This test runs the sweep itself: the scheduled one (first run after 5 s)
            # would otherwise check some keys while they are still being added.
            assert bot.app.job_queue is not None
            for job in bot.app.job_queue.get_jobs_by_name("alerts-sweep"):
                job.schedule_removal()
            outbox.send_rate = 28.0  # below Telegram's ~30/s, leaving room for replies
            balances = Balances()
            balances.install(bot.providers)
            for i in range(USERS):
                user = tg.user(10_000 + i, started=True)
                secret = f"sk-load{i:020d}"
                await bot.services.keys.add(user.id, Secret(secret), "deepseek", label="k")
                balances.amounts[secret] = "10"
            await sweep.ensure_rows()
            async with bot.services.db.session() as s:
                await s.execute(update(AlertState).values(thresholds=["50"]))
            started = time.monotonic()
            stats = await sweep.run()
            assert stats.checked == USERS and stats.events == USERS

            def all_sent() -> bool | None:
                return len(tg.send_log) >= USERS or None

            await tg.wait_until(all_sent, 90, lambda: f"{len(tg.send_log)} sent")
            elapsed = time.monotonic() - started
            chats = [chat for _, chat in tg.send_log]
            assert len(chats) == len(set(chats)) == USERS  # each user once
            assert tg.count_429 == 0
            assert max(tg.sends_per_second.values()) <= 30
            first, last = tg.send_log[0][0], tg.send_log[-1][0]
            rate = (USERS - 1) / (last - first)
            print(f"\n1000 alerts: sweep+delivery {elapsed:.1f}s, delivery rate {rate:.1f} msg/s")
            # How fast is the benchmark's business (python -m bench: alert delivery); here only
            # that the sender paces rather than trickles: the ceiling above is Telegram's limit.
            assert rate > 5
    finally:
        await tg.stop()
