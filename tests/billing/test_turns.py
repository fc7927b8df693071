"""The sweep's requests take turns in the event loop (issue 17 item 1, bot/billing/turns.py).

A batch of background checks used to build and send all of its requests in one event-loop
iteration (and read all the answers in another), so a user's /balance waited behind
hundreds of them at each of its own steps. Asserted on how many requests go out per loop
iteration and in what order, never on seconds.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from bot.billing.models import KeyRequest
from bot.billing.service import START_SLICE
from bot.billing.turns import Turns, take_turn, taking_turns
from bot.secret import Secret
from tests.billing.conftest import make_service, settings


def req(name: str) -> KeyRequest:
    return KeyRequest(key_id=name, provider="test-echo", secret=Secret(f"echo-key-{name}"))


class Ticks:
    """Counts event-loop iterations: one step of its own task per iteration."""

    def __init__(self) -> None:
        self.n = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.n += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


def record_sends(service, ticks: Ticks, log: list[tuple[int, str]]) -> None:
    """Log (iteration, key) for each request the trusted client sends."""
    client = service._http.trusted._client
    send = client.send

    async def logged(request, **kw):
        log.append((ticks.n, request.headers["Authorization"].removeprefix("Bearer echo-key-")))
        return await send(request, **kw)

    client.send = logged


def paced_service(server):
    """A service whose turns have no time to spare, its sends logged per iteration."""
    server.reply("/balance", json={"remaining": 1})
    service = make_service(settings(test_echo=server.url), trusted_host_limit=200, pace_budget=0)
    ticks, sent = Ticks(), []
    record_sends(service, ticks, sent)
    return service, ticks, sent


async def test_background_requests_go_out_a_few_per_loop_iteration(server) -> None:
    service, ticks, sent = paced_service(server)
    try:
        done = await service.fetch_many([req(f"bg{i}") for i in range(60)], background=True)
    finally:
        ticks.stop()
        await service.aclose()
    assert all(o.ok for o in done) and len(sent) == 60
    per_iteration = Counter(tick for tick, _ in sent)
    # With no time to spare, one fresh request and one woken one per iteration at most;
    # before, all 60 went out in the iteration after the batch was handed over.
    assert max(per_iteration.values()) <= 2


async def test_a_users_request_does_not_take_turns(server) -> None:
    service, ticks, sent = paced_service(server)
    try:
        sweep = asyncio.ensure_future(
            service.fetch_many([req(f"bg{i}") for i in range(60)], background=True)
        )
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the sweep's checks are under way
        user = await service.fetch(req("user"), fresh=True)
        done = await sweep
    finally:
        ticks.stop()
        await service.aclose()
    assert user.ok and all(o.ok for o in done)
    order = [key for _, key in sent]
    # The user's request went out as soon as it was made, ahead of most of the batch
    # (before: behind all 60 background requests, sent in one iteration).
    assert order.index("user") < 10


async def test_a_batch_is_started_a_slice_per_iteration(server) -> None:
    started: list[int] = []
    ticks = Ticks()
    server.reply("/balance", json={"remaining": 1})
    service = make_service(settings(test_echo=server.url), trusted_host_limit=500)
    fetch = service.fetch

    async def counted(r, **kw):
        started.append(ticks.n)
        return await fetch(r, **kw)

    service.fetch = counted
    try:
        done = await service.fetch_many(
            [req(f"bg{i}") for i in range(4 * START_SLICE)], background=True
        )
    finally:
        ticks.stop()
        await service.aclose()
    assert all(o.ok for o in done)
    assert max(Counter(started).values()) <= START_SLICE


async def test_cancelled_while_starting_cancels_what_was_started(server) -> None:
    server.hold("/balance")
    service = make_service(settings(test_echo=server.url), trusted_host_limit=500)
    try:
        batch = asyncio.ensure_future(
            service.fetch_many([req(f"bg{i}") for i in range(4 * START_SLICE)], background=True)
        )
        for _ in range(3):
            await asyncio.sleep(0)
        batch.cancel()
        await asyncio.gather(batch, return_exceptions=True)
        left = [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "BillingService.fetch"
        ]
    finally:
        server.release()
        await service.aclose()
    assert batch.cancelled()
    assert left == []


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _interleaving(turns: Turns, timer: FakeTimer, steps: int) -> list[str]:
    """Run `steps` paced steps of 1 ms each beside a task that logs every iteration."""
    log: list[str] = []

    async def step() -> None:
        with taking_turns(turns):
            await take_turn()
        timer.now += 0.001
        log.append("w")

    async def other() -> None:
        while log.count("w") < steps:
            log.append("-")
            await asyncio.sleep(0)

    await asyncio.gather(other(), *(step() for _ in range(steps)))
    return log


def _longest_run(log: list[str]) -> int:
    return max(len(run) for run in "".join(log).split("-"))


async def test_turns_leave_the_loop_to_others_after_the_budget() -> None:
    timer = FakeTimer()
    log = await _interleaving(Turns(0.004, quiet_budget=0.004, timer=timer), timer, 100)
    assert log.count("w") == 100
    assert _longest_run(log) <= 5  # 4 ms of 1 ms steps (+ the one that crossed it)


async def test_turns_are_shorter_while_a_user_waits() -> None:
    timer = FakeTimer()
    turns = Turns(0.004, quiet_budget=0.001, quiet=lambda: True, timer=timer)
    log = await _interleaving(turns, timer, 50)
    assert log.count("w") == 50
    assert _longest_run(log) <= 2


async def test_without_turns_nothing_waits() -> None:
    assert await asyncio.wait_for(take_turn(), 1) is None


async def test_a_request_cancelled_while_waiting_gives_its_turn_to_the_next() -> None:
    """A check that times out while waiting for its turn must not use up a later
    iteration's share, nor leave the requests behind it waiting for ever."""
    timer = FakeTimer()
    turns = Turns(0.004, quiet_budget=0.004, timer=timer)
    ran: list[str] = []

    async def step(name: str) -> None:
        with taking_turns(turns):
            await take_turn()
        timer.now += 0.01  # each step alone is over the budget: one per iteration
        ran.append(name)

    tasks = [asyncio.ensure_future(step(n)) for n in ("first", "gone", "next", "last")]
    await asyncio.sleep(0)  # "first" takes this iteration's turn, the others wait
    assert ran == ["first"]
    tasks[1].cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
    assert tasks[1].cancelled()
    assert ran == ["first", "next", "last"]
