"""Outbox → Telegram: the only code that turns outbox rows into messages.

Below the handlers: it takes the Bot and a `render` function (the texts and buttons
live in bot/handlers/alert_messages.py) and knows nothing of commands. It renders at
send time (the user's current language and time zone), paces itself below Telegram's
limits (a global rate, one message per chat per second; docs/telegram.md), and maps
every failure to the outbox: 429 → retry after `retry_after`, network → back-off,
403 → pause the user until they talk to the bot again, 400 → give up on that row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import metrics
from bot.alerts.outbox import MAX_ATTEMPTS, OutboxItem, OutboxService

log = logging.getLogger(__name__)

#: One outbox row → (HTML text, buttons), at send time `now`.
Render = Callable[[OutboxItem, datetime], tuple[str, InlineKeyboardMarkup | None]]


@dataclass
class Pacer:
    """Evenly spaced sends: at most `rate` per second, no bursts."""

    rate: float
    _next: float = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Sender:
    """Delivers outbox rows through the Bot. One per Application; never runs twice at once."""

    outbox: OutboxService
    bot: Bot
    render: Render
    concurrency: int = 8
    per_chat_gap: float = 1.05
    batch: int = 50
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last: dict[int, float] = field(default_factory=dict)
    _pacer: Pacer | None = None
    delivered: int = 0
    stopping: bool = False  # shutdown: finish the sends under way, start no more

    async def run(self) -> None:
        """Send until the queue is drained (or shutdown begins)."""
        if self._lock.locked():
            return  # the running pass loops until the queue is drained
        async with self._lock:
            if self._pacer is None or self._pacer.rate != self.outbox.send_rate:
                self._pacer = Pacer(self.outbox.send_rate)
            while not self.stopping:
                items = await self.outbox.claim(self.batch)
                if not items:
                    return
                await self._deliver(items)

    async def _deliver(self, items: list[OutboxItem]) -> None:
        assert self._pacer is not None
        slots = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        for item in items:
            if self.stopping:  # hand the rest back: the next process sends them
                await self.outbox.retry_at(item.id, self.outbox.clock(), count=False)
                continue
            now = time.monotonic()
            ready = self._last.get(item.user_id, 0.0) + self.per_chat_gap
            if ready > now:  # one message per chat per second
                when = self.outbox.clock() + timedelta(seconds=ready - now)
                await self.outbox.retry_at(item.id, when, count=False)
                continue
            self._last[item.user_id] = now
            await self._pacer.wait()
            await slots.acquire()
            self._last[item.user_id] = time.monotonic()
            tasks.append(asyncio.create_task(self._send(item, slots)))
        await asyncio.gather(*tasks)
        if len(self._last) > 10_000:
            cutoff = time.monotonic() - 10
            self._last = {k: v for k, v in self._last.items() if v > cutoff}

    async def _send(self, item: OutboxItem, slots: asyncio.Semaphore) -> None:
        try:
            try:
                text, markup = self.render(item, self.outbox.clock())
            except Exception as exc:  # our bug, not a delivery problem: a retry cannot help
                log.error(
                    "alert %s for user %s cannot be rendered (%s): dropped",
                    item.id,
                    item.user_id,
                    type(exc).__name__,
                )
                await self.outbox.fail(item.id)
                metrics.alert("dropped")
                return
            await self.bot.send_message(item.user_id, text, reply_markup=markup)
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            await self.outbox.retry_at(item.id, self.outbox.clock() + timedelta(seconds=seconds))
            metrics.alert("failed")
        except Forbidden:
            log.info("user %s blocked the bot: alerts paused", item.user_id)
            await self.outbox.pause_user(item.user_id, item.id)
            metrics.alert("dropped")
        except BadRequest as exc:  # before NetworkError: BadRequest is a subclass
            log.warning("alert %s for user %s refused: %s", item.id, item.user_id, exc.message)
            await self.outbox.fail(item.id)
            metrics.alert("dropped")
        except (NetworkError, TelegramError, Exception) as exc:
            if item.attempts >= MAX_ATTEMPTS:
                log.error("alert %s for user %s dropped after retries", item.id, item.user_id)
                await self.outbox.fail(item.id)
                metrics.alert("dropped")
            else:
                backoff = min(300.0, 2.0 ** min(item.attempts, 9) / 2)
                log.info("alert %s: %s, retry in %.0f s", item.id, type(exc).__name__, backoff)
                metrics.alert("failed")
                await self.outbox.retry_at(
                    item.id, self.outbox.clock() + timedelta(seconds=backoff)
                )
        else:
            await self.outbox.mark_sent(item.id)
            self.delivered += 1
            metrics.alert("sent")
        finally:
            slots.release()
