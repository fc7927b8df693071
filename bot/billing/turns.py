"""Background requests take turns in the event loop, so a user's answer never waits
behind a whole batch of them (issue 17 item 1).

The alert sweep hands the billing service hundreds of checks at once. Building and
sending a request costs the event loop a few tenths of a millisecond, and reading its
answer about as much again. Started together, a batch's requests ran in one loop
iteration (70–140 ms measured with 500 keys), their answers came back together for
another such iteration, and a /balance arriving meanwhile waited for each of them at
every step of its own (database read, checks, Telegram calls).

`Turns` lets background requests start only while the current loop iteration has
spent less than `budget` seconds since its first one; the others wait for a later
iteration, after the loop has polled for everything else. How many waiting requests
one iteration takes is re-estimated every iteration from what the last ones cost, so
the sweep still uses all the CPU the loop has to spare. Interactive checks are never
paced: only code running under `taking_turns(turns)` (the sweep's lane in
`BillingService._check`) takes turns, in `ProviderHttpClient` before each request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: The turns the checks running in this context take (a task of the sweep's lane), if any.
_TURNS: ContextVar[Turns | None] = ContextVar("balance_bot_turns", default=None)


class Turns:
    """At most about `budget` seconds of paced work per event-loop iteration."""

    def __init__(
        self,
        budget: float,
        *,
        quiet_budget: float,
        quiet: Callable[[], bool] = lambda: False,
        most: int = 64,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget = budget
        # While a user's check is being answered (`quiet()`), a smaller share of each
        # iteration: every step of that answer waits for whole iterations.
        self.quiet_budget = quiet_budget
        self._quiet = quiet
        self.most = most  # never more waiting requests woken for one iteration
        self._timer = timer
        self._started: float | None = None  # first paced step of this iteration
        self._steps = 0
        self._fit = 1  # waiting requests the next iteration takes (estimated)
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._armed = False

    async def turn(self) -> None:
        """Return once this request may run in the current loop iteration."""
        if not self._waiting and self._take():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        self._arm(loop)
        await waiter  # cancelled while waiting: `_next` skips it
        self._count()

    def _take(self) -> bool:
        now = self._timer()
        if self._started is None:
            self._count(now)
            return True
        if now - self._started < self._budget():
            self._steps += 1
            return True
        return False

    def _budget(self) -> float:
        return self.quiet_budget if self._quiet() else self.budget

    def _count(self, now: float | None = None) -> None:
        if self._started is None:
            self._started = self._timer() if now is None else now
            self._arm(asyncio.get_running_loop())
        self._steps += 1

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._armed:
            self._armed = True
            loop.call_soon(self._next)  # runs in the next loop iteration, after its poll

    def _next(self) -> None:
        """Once per loop iteration while there is paced work: learn what a step costs,
        then wake as many waiting requests as should fit the budget."""
        self._armed = False
        if self._started is not None:
            spent = self._timer() - self._started
            per_step = spent / max(1, self._steps)
            budget = self._budget()
            self._fit = max(1, min(self.most, int(budget / per_step) if per_step else self.most))
            self._started = None
            self._steps = 0
        woken = 0
        while self._waiting and woken < self._fit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        if self._waiting:
            self._arm(asyncio.get_running_loop())


@contextmanager
def taking_turns(turns: Turns | None) -> Iterator[None]:
    """Requests made in this block (in this task) take turns through `turns`."""
    token = _TURNS.set(turns)
    try:
        yield
    finally:
        _TURNS.reset(token)


async def take_turn() -> None:
    """Before a request: wait for this context's turn, if it takes turns."""
    turns = _TURNS.get()
    if turns is not None:
        await turns.turn()
