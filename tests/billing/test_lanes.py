"""Interactive checks have their own lane in the global and per-host limits (issue 17 item 1).

The alert sweep's checks go through the background lane: it may hold at most the cap minus
a reserve of every limit, and whenever a slot frees an interactive check waiting for it goes
first. The total per host never exceeds the cap (politeness is unchanged). Asserted on the
order and concurrency the fake provider sees, never on seconds.
"""

from __future__ import annotations

import asyncio

from bot.billing.models import KeyRequest
from bot.billing.service import _reserve, _Slots
from bot.secret import Secret
from tests.billing.conftest import make_service, settings
from tests.fakes.provider_server import Reply


def req(name: str) -> KeyRequest:
    return KeyRequest(key_id=name, provider="test-echo", secret=Secret(f"echo-key-{name}"))


async def test_a_users_check_does_not_queue_behind_the_sweep(server) -> None:
    order: list[str] = []
    busy = asyncio.Event()

    def answer(request) -> Reply:
        order.append(request.headers["Authorization"].removeprefix("Bearer echo-key-"))
        if len(order) >= 4:
            busy.set()
        return Reply(200, json={"remaining": 1}, delay=0.05)

    server.handle("/balance", answer)
    service = make_service(settings(test_echo=server.url), trusted_host_limit=5)
    try:
        sweep = asyncio.ensure_future(
            service.fetch_many([req(f"bg{i}") for i in range(40)], background=True)
        )
        await busy.wait()  # the sweep holds its share of the host: 5 - 1 reserved
        user = await service.fetch(req("user"), fresh=True)
        done = await sweep
    finally:
        await service.aclose()
    assert user.ok and all(o.ok for o in done)
    # The user's request went out while the sweep's first round was still running,
    # not after the 40 background checks queued before it.
    assert order.index("user") <= 5
    assert server.peak_in_flight <= 5


async def test_background_alone_leaves_the_reserve_free_and_interactive_may_use_all(
    server,
) -> None:
    server.handle("/balance", lambda request: Reply(200, json={"remaining": 1}, delay=0.05))
    service = make_service(settings(test_echo=server.url), trusted_host_limit=10)
    try:
        await service.fetch_many([req(f"bg{i}") for i in range(30)], background=True)
        background_peak = server.peak_in_flight
        server.peak_in_flight = 0
        await service.fetch_many([req(f"fg{i}") for i in range(30)], use_cache=False)
    finally:
        await service.aclose()
    assert background_peak == 10 - _reserve(10) == 8
    assert server.peak_in_flight == 10


async def test_slots_serve_interactive_waiters_first_and_never_exceed_the_cap() -> None:
    slots = _Slots(3)
    assert slots.background_cap == 2
    await slots.acquire(background=True)
    await slots.acquire(background=True)
    background = asyncio.ensure_future(slots.acquire(background=True))  # over its share
    await slots.acquire()  # the reserved slot
    interactive = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    assert not background.done() and not interactive.done()
    slots.release(background=True)
    await asyncio.sleep(0)
    assert interactive.done() and not background.done()  # interactive first
    assert slots.used == 3
    slots.release()  # an interactive slot frees: the background waiter is within its share
    await asyncio.sleep(0)
    assert background.done() and slots.used == 3 and slots.background_used == 2
    more = asyncio.ensure_future(slots.acquire(background=True))
    slots.release()  # a slot is free, but it is the reserve: background stays at its share
    await asyncio.sleep(0)
    assert not more.done() and slots.used == 2
    slots.release(background=True)
    await asyncio.sleep(0)
    assert more.done() and slots.background_used == 2


async def test_a_cancelled_waiter_hands_its_slot_on() -> None:
    slots = _Slots(1)
    await slots.acquire()
    first = asyncio.ensure_future(slots.acquire())
    second = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    first.cancel()
    slots.release()
    await asyncio.sleep(0)
    assert second.done() and slots.used == 1
    slots.release()
    assert slots.idle


async def test_after_an_interactive_check_the_background_lane_shrinks_for_a_while() -> None:
    now = [100.0]
    slots = _Slots(100, timer=lambda: now[0])
    assert slots.background_cap == 80
    slots.quiet(1.0)
    for _ in range(8):  # a tenth of its share while quiet
        await slots.acquire(background=True)
    ninth = asyncio.ensure_future(slots.acquire(background=True))
    await asyncio.sleep(0)
    assert not ninth.done()
    await slots.acquire()  # interactive checks are not limited by the quiet period
    now[0] += 1.5  # the quiet period is over: the waiting background check goes on
    slots._end_quiet()
    await asyncio.sleep(0)
    assert ninth.done() and slots.background_used == 9


async def test_a_waiter_cancelled_before_it_runs_again_leaves_no_trace() -> None:
    slots = _Slots(1)
    await slots.acquire()
    waiter = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release()  # `_wake` meets the cancelled waiter before its task runs again
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled() and slots.idle
