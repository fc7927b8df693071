"""One user never slows another (issue 11, item 2): the real Application, fake Telegram.

Before: the update processor took one of PTB's 64 slots before waiting for the user's
lock, so one user's queued updates held all of them — A with a hanging relay plus 70
/start made B and C wait ~30 s, and 1,000 /balance from A made B wait 29 s while A got
1,000 replies at ~38/s in one chat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.secret import Secret
from bot.updates import MAX_PENDING_PER_USER
from tests.e2e.harness import running_bot
from tests.e2e.test_balance import DEEPSEEK, RELAY_STATUS
from tests.fakes.telegram_api import FakeTelegram

SLOW_DOWN = "You sent many messages at once"


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - plain counters, no event to wait on
            await asyncio.sleep(0.05)
    assert condition(), what


async def test_a_hanging_relay_and_a_backlog_never_delay_other_users(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        a, b, c = bot.tg.user(3001, "A"), bot.tg.user(3002, "B"), bot.tg.user(3003, "C")
        bot.providers.reply("/api/status", json=RELAY_STATUS)
        bot.providers.hold("/api/usage/token")  # A's relay never answers
        # /add waits for the key's first check: A's queue is stuck behind it.
        await bot.tg.send(a, f"/add sk-relay0123456789abcdef url={bot.providers.url}")
        for _ in range(70):
            await bot.tg.send(a, "/start")
        await bot.tg.wait_for_reply(a, predicate=lambda m: SLOW_DOWN in (m.text or ""))
        latencies = []
        for user in (b, c, b):
            started = time.monotonic()
            await bot.tg.send(user, "/help")
            reply = await bot.tg.wait_for_reply(user, timeout=5)
            latencies.append(time.monotonic() - started)
            assert "/balance" in reply.text
        print(f"B/C latency while A hangs with a backlog: {max(latencies) * 1000:.0f} ms max")
        assert bot.providers.count("/api/usage/token") >= 1  # still hanging: A is not done
        processor = bot.app.update_processor
        assert processor.queued(a.id) == 1 + MAX_PENDING_PER_USER  # type: ignore[attr-defined]
        bot.providers.release()
        await eventually(lambda: processor.queued(a.id) == 0, 60, "A's queue drained")  # type: ignore[attr-defined]
        sent = [m.text or "" for m in bot.tg.messages(a.id)]
        assert sum("encrypted" in t for t in sent) == MAX_PENDING_PER_USER  # the queued ones
        assert sum(SLOW_DOWN in t for t in sent) == 1  # one "slow down", not 62 replies


async def test_a_flood_gets_a_bounded_paced_answer_and_others_are_served(make_settings) -> None:
    tg = await FakeTelegram(enforce_limits=True).start()  # 429 past ~1 msg/s per chat
    try:
        async with running_bot(make_settings, tg=tg) as bot:
            a, b = bot.tg.user(3101, "A"), bot.tg.user(3102, "B")
            await bot.services.keys.add(a.id, Secret("sk-deepseek0123456789abcdef"), "deepseek")
            bot.providers.reply("/user/balance", json=DEEPSEEK)
            for _ in range(1000):
                await tg.send(a, "/balance")
            started = time.monotonic()
            await tg.send(b, "/help")
            await tg.wait_for_reply(b, timeout=5)
            print(
                f"B latency during A's flood of 1,000: {(time.monotonic() - started) * 1000:.0f} ms"
            )
            processor = bot.app.update_processor
            await eventually(lambda: processor.queued(a.id) == 0, 60, "A's queue drained")  # type: ignore[attr-defined]
            sent = tg.messages(a.id)
            assert sum(SLOW_DOWN in (m.text or "") for m in sent) == 1
            balances = [m for m in sent if "left" in (m.text or "")]
            assert 1 <= len(balances) <= 1 + MAX_PENDING_PER_USER
            assert len(sent) <= 2 + MAX_PENDING_PER_USER  # not 1,000 replies
            assert tg.count_429 == 0  # paced to the per-chat limit, never throttled
            assert bot.providers.count("/user/balance") <= 1 + MAX_PENDING_PER_USER
    finally:
        await tg.stop()


async def test_a_key_in_a_dropped_message_is_still_deleted(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        a = bot.tg.user(3201, "A")
        await bot.services.keys.add(
            a.id, Secret("sk-relay0123456789abcdef"), "relay", base_url=bot.providers.url
        )
        bot.providers.reply("/api/status", json=RELAY_STATUS)
        bot.providers.hold("/api/usage/token")
        await bot.tg.send(a, "/balance")
        for _ in range(MAX_PENDING_PER_USER):
            await bot.tg.send(a, "/start")
        canary = "sk-CANARY-dropped-0123456789abcdef"
        mid = await bot.tg.send(a, canary)  # past the queue bound: dropped, never handled
        await eventually(lambda: (a.id, mid) in bot.tg.deleted, 5, "the key message deleted")
        assert canary not in bot.tg.transcript()
        bot.providers.release()


async def test_a_429_in_one_chat_never_halts_another(make_settings) -> None:
    """PTB's AIORateLimiter halted every request of the process on any 429 (PTB #3765)."""
    async with running_bot(make_settings) as bot:
        a, b = bot.tg.user(3301, "A"), bot.tg.user(3302, "B")
        bot.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 4", 4)
        await bot.tg.send(a, "/help")  # A's reply: 429, A's chat waits 4 s
        await bot.tg.wait_until(
            lambda: True if bot.tg.errors else None, timeout=5, describe=lambda: "the 429"
        )
        await bot.tg.send(b, "/help")
        await bot.tg.wait_for_reply(b, timeout=3)  # before A's 4 s are over
        assert "/balance" in (await bot.tg.wait_for_reply(a, timeout=10)).text  # A's, later
