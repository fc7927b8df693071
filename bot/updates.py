"""How incoming updates are scheduled: users concurrently, each user's in order, bounded.

PTB's `BaseUpdateProcessor.process_update` takes one of its slots *before* calling
`do_process_update`. When the per-user wait happened inside that slot, one user's
backlog held every slot: a hanging relay plus 70 queued /start, or 1,000 /balance, and
every other user waited up to 30 s (issue 11). So PTB's own semaphore is made
effectively unbounded here, and this processor keeps, itself:

- a queue per user (a lock and a count): a user's updates wait their turn there,
  holding nothing shared. At most `max_pending` wait behind the running one; the excess
  is dropped and the user hears once per burst that they should slow down
  (`on_overflow`), instead of getting 1,000 replies;
- `max_concurrent_updates` running slots shared by everyone, taken only by an update
  that is actually running — so one user occupies at most one.

Order per user holds within this process; across replicas per-user state lives in the
database (docs/telegram.md §7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger(__name__)

MAX_RUNNING = 64
MAX_PENDING_PER_USER = 8
_PTB_SLOTS = 2**31 - 1  # PTB's own semaphore: never the one that makes anybody wait

#: Told about each dropped update; `first` is True once per burst (say "slow down" then).
OverflowHandler = Callable[[Update, bool], Awaitable[None]]


@dataclass
class _UserQueue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    size: int = 0  # updates of this user waiting or running
    told: bool = False  # the user heard "slow down" during this burst


def _user_id(update: object) -> int | None:
    if isinstance(update, Update) and update.effective_user is not None:
        return update.effective_user.id
    return None


class PerUserUpdateProcessor(BaseUpdateProcessor):
    """Different users concurrently, each user's updates in order, each user's queue bounded.

    A slow /balance must not hold up everyone else, yet one user's two messages (a key,
    then its label) must be handled in the order they were sent.
    """

    def __init__(
        self,
        max_concurrent_updates: int = MAX_RUNNING,
        *,
        max_pending: int = MAX_PENDING_PER_USER,
        on_overflow: OverflowHandler | None = None,
    ) -> None:
        if max_concurrent_updates < 1 or max_pending < 0:
            raise ValueError("need at least one running slot and a non-negative queue")
        self._running_limit = max_concurrent_updates
        super().__init__(_PTB_SLOTS)
        self._slots = asyncio.Semaphore(max_concurrent_updates)
        self._queues: dict[int, _UserQueue] = {}
        self.max_pending = max_pending
        self.on_overflow = on_overflow
        self.dropped = 0

    @property
    def max_concurrent_updates(self) -> int:
        return self._running_limit

    @property
    def current_concurrent_updates(self) -> int:
        return self._running_limit - self._slots._value

    def queued(self, user_id: int) -> int:
        """Updates of this user waiting or running (0 when idle)."""
        queue = self._queues.get(user_id)
        return 0 if queue is None else queue.size

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        uid = _user_id(update)
        if uid is None:
            async with self._slots:
                await coroutine
            return
        queue = self._queues.get(uid)
        if queue is None:
            queue = self._queues[uid] = _UserQueue()
        if queue.size > self.max_pending:  # one running + max_pending waiting
            await self._drop(update, coroutine, queue)
            return
        queue.size += 1
        try:
            async with queue.lock, self._slots:
                await coroutine
        finally:
            queue.size -= 1
            if queue.size == 0 and self._queues.get(uid) is queue:
                del self._queues[uid]  # idle: forget the user (and re-arm "slow down")

    async def _drop(self, update: object, coroutine: Awaitable[Any], queue: _UserQueue) -> None:
        close = getattr(coroutine, "close", None)
        if close is not None:
            close()  # never started: nothing ran, no "never awaited" warning
        self.dropped += 1
        first = not queue.told
        queue.told = True
        if first:
            log.warning(
                "user %s has %d updates queued: dropping more until they are handled",
                _user_id(update),
                queue.size,
            )
        if self.on_overflow is not None and isinstance(update, Update):
            try:
                await self.on_overflow(update, first)
            except Exception as exc:  # telling the user is best effort
                log.info("could not tell user %s to slow down: %s", _user_id(update), exc)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
