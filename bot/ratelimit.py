"""Every outgoing Bot API request: paced to Telegram's limits, retried within limits.

PTB's `AIORateLimiter` paces 30/s overall and 20/min per group, but has no per-chat limit
for private chats, halts *every* request of the process on any 429 (one flooded chat
slows every user; python-telegram-bot#3765, #5338) and never retries a 5xx or a dropped
connection: one 502 on a reply meant no reply at all (issue 11). This limiter
(docs/telegram.md §1, §2):

- paces messages to one private chat to about one per second after a burst of 3
  (Telegram: "avoid sending more than one message per second" per chat), to one group
  to 20 per minute, and everything with a chat to `overall` (29/s by default; a
  `Pacer` shared through the database on PostgreSQL, so replicas share the budget);
- on `RetryAfter` waits that long — only for the chat that got it — and tries again,
  at most `MAX_RETRY_AFTER` times and `RETRY_AFTER_BUDGET` seconds in all;
- on a 5xx, a dropped connection or a pool timeout (the request was not sent) tries
  again after a short back-off, at most `NETWORK_RETRIES` times. A connection dropped
  after Telegram acted could, rarely, show a reply twice; a reply that never comes is
  worse. A read timeout is not retried: Telegram was slow, not absent, and has most
  likely delivered the message.

What still fails after that reaches the caller as PTB's exception; the error handler
reports it as "not delivered", never as a failure of what the user asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, Protocol

from aiolimiter import AsyncLimiter
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)

JSON = bool | dict[str, Any] | list[dict[str, Any]]

OVERALL_PER_SECOND = 29  # with OVERALL_BURST: never more than 30 in any one second
OVERALL_BURST = 1
GROUP_PER_MINUTE = 20
CHAT_BURST = 3
CHAT_GAP = 1.05  # seconds per message to one private chat after the burst
MAX_RETRY_AFTER = 8
RETRY_AFTER_BUDGET = 60.0  # seconds of 429 waits for one request, in all
NETWORK_RETRIES = 3
NETWORK_BACKOFF = 0.5  # seconds, doubled per retry
_SWEEP_ABOVE = 1024  # idle per-chat limiters are forgotten past this many


class Pacer(Protocol):
    """Overall pacing: `acquire` returns when one more message may go out."""

    async def acquire(self) -> None: ...


class LocalPacer:
    """The process's own pace (SQLite deployments are single-instance): `rate` a second
    after a burst of `burst`, so no one-second window holds more than rate + burst.

    PTB's bucket (30 a second, bursts of 30) let 31 and more through in a calendar second
    after a stall; Telegram counts "about 30 a second".
    """

    def __init__(self, rate: float = OVERALL_PER_SECOND, burst: int = OVERALL_BURST) -> None:
        self._limiter = AsyncLimiter(burst, burst / rate)

    async def acquire(self) -> None:
        await self._limiter.acquire()


def _is_message(endpoint: str) -> bool:
    """Requests that put a new message into a chat (what Telegram's per-chat limit counts)."""
    if endpoint == "sendChatAction":
        return False
    return endpoint.startswith(("send", "copyMessage", "forwardMessage"))


def _retry_after_seconds(exc: RetryAfter) -> float:
    wait: Any = exc.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


def _retryable_network_error(exc: NetworkError) -> bool:
    if isinstance(exc, BadRequest):
        return False
    if isinstance(exc, TimedOut):
        return "not* sent" in str(exc) or "not sent" in str(exc)  # pool timeout only
    return True  # 5xx, connection refused or dropped before any answer


class BotRateLimiter(BaseRateLimiter[int]):
    def __init__(
        self,
        overall: Pacer | None = None,
        *,
        chat_burst: int = CHAT_BURST,
        chat_gap: float = CHAT_GAP,
        group_per_minute: float = GROUP_PER_MINUTE,
        network_backoff: float = NETWORK_BACKOFF,
    ) -> None:
        self.overall: Pacer = overall or LocalPacer()
        self._chat_burst = chat_burst
        self._chat_gap = chat_gap
        self._group_per_minute = group_per_minute
        self._network_backoff = network_backoff
        self._chats: dict[int | str, AsyncLimiter] = {}
        self._halted: dict[int | str | None, float] = {}  # chat → monotonic time of release
        self._swept = 0.0
        self.retried = 0  # requests sent again after a 429 or a network error

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def _chat_limiter(self, chat: int | str) -> AsyncLimiter:
        limiter = self._chats.get(chat)
        if limiter is None:
            now = time.monotonic()
            if len(self._chats) > _SWEEP_ABOVE and now - self._swept > 10:
                self._swept = now
                for key, old in list(self._chats.items()):
                    if old.has_capacity(old.max_rate):  # fully drained: forget it
                        del self._chats[key]
            if isinstance(chat, int) and chat > 0:
                limiter = AsyncLimiter(self._chat_burst, self._chat_burst * self._chat_gap)
            else:
                limiter = AsyncLimiter(self._group_per_minute, 60)
            self._chats[chat] = limiter
        return limiter

    async def _wait_halt(self, chat: int | str | None) -> None:
        while True:
            until = max(self._halted.get(chat, 0.0), self._halted.get(None, 0.0))
            wait = until - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _halt(self, chat: int | str | None, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self._halted.get(chat, 0.0):
            self._halted[chat] = until
        if len(self._halted) > _SWEEP_ABOVE:
            now = time.monotonic()
            self._halted = {k: v for k, v in self._halted.items() if v > now}

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, JSON]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> JSON:
        chat: int | str | None = data.get("chat_id")
        if isinstance(chat, str):
            with contextlib.suppress(ValueError):  # else "@channelusername"
                chat = int(chat)
        # Private chats are paced for new messages only; groups for everything (as PTB).
        private = isinstance(chat, int) and chat > 0
        paced = chat is not None and (_is_message(endpoint) or not private)
        max_retry_after = MAX_RETRY_AFTER if rate_limit_args is None else rate_limit_args
        waited = 0.0
        retry_afters = network_retries = 0
        while True:
            await self._wait_halt(chat)
            try:
                async with AsyncExitStack() as stack:
                    if paced:
                        assert chat is not None
                        await stack.enter_async_context(self._chat_limiter(chat))
                    if chat is not None:
                        await self.overall.acquire()
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = _retry_after_seconds(exc) + 0.1
                if retry_afters >= max_retry_after or waited + seconds > RETRY_AFTER_BUDGET:
                    log.warning(
                        "Bot API %s: still rate limited after %d retries (%.0f s); giving up",
                        endpoint,
                        retry_afters,
                        waited,
                    )
                    raise
                retry_afters += 1
                waited += seconds
                self._halt(chat, seconds)
                log.info("Bot API %s: 429, retrying in %.1f s", endpoint, seconds)
            except NetworkError as exc:
                if not _retryable_network_error(exc) or network_retries >= NETWORK_RETRIES:
                    raise
                delay = self._network_backoff * 2**network_retries
                network_retries += 1
                log.info(
                    "Bot API %s: %s, retry %d of %d in %.1f s",
                    endpoint,
                    type(exc).__name__,
                    network_retries,
                    NETWORK_RETRIES,
                    delay,
                )
                await asyncio.sleep(delay)
            self.retried += 1
