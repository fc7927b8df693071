"""A circuit breaker per provider host, so a provider that is down is not hammered.

After `threshold` checks in a row fail because the host did not answer properly
(timeouts, connection errors, 5xx), the host is "open": checks are not sent for a
cool-off and end at once in PROVIDER_DOWN, with the time the failures began. When the
cool-off is over one check goes through as a probe (half-open): an answer closes the
breaker, another failure opens it again for twice as long (up to `max_cooloff`). Any
answer from the host (a balance, a rejected key, a malformed body) counts as "up".

Only built-in and operator hosts get a breaker (BillingService): a user's relay has its
own per-host cap, and one user's relay must not be able to pause another user's checks.
Times, `since` and the cool-offs alike, come from the program's clock (bot/clock.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.billing.errors import BillingError, ErrorKind
from bot.clock import Clock

FAILURES = 5  # in a row, to open
COOLOFF = 30.0  # seconds, the first time
MAX_COOLOFF = 900.0  # seconds: doubling stops here
_MAX_HOSTS = 10_000


@dataclass(slots=True)
class _Host:
    failures: int = 0
    since: datetime | None = None  # first failure of the streak
    open_until: datetime | None = None  # None: closed
    cooloff: float = COOLOFF
    probing: bool = False


def host_down(exc: BaseException) -> bool:
    """Whether a failure says the host itself is not answering properly."""
    if isinstance(exc, TimeoutError):
        return True
    if not isinstance(exc, BillingError):
        return False
    if exc.kind is ErrorKind.NETWORK:
        return True
    return exc.kind is ErrorKind.PROVIDER_ERROR and (exc.status or 0) >= 500


class CircuitBreaker:
    def __init__(
        self,
        clock: Clock,
        *,
        threshold: int = FAILURES,
        cooloff: float = COOLOFF,
        max_cooloff: float = MAX_COOLOFF,
    ) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooloff = cooloff
        self.max_cooloff = max_cooloff
        self._hosts: dict[str, _Host] = {}

    def admit(self, host: str) -> None:
        """Let a check through, or raise PROVIDER_DOWN while the host is open (a probe is
        let through once the cool-off is over, one at a time)."""
        st = self._hosts.get(host)
        if st is None or st.open_until is None:
            return
        if st.probing or self._clock() < st.open_until:
            raise BillingError(ErrorKind.PROVIDER_DOWN, "provider down", since=st.since)
        st.probing = True

    def answered(self, host: str) -> None:
        """The host answered (whatever it said): closed, the streak forgotten."""
        self._hosts.pop(host, None)

    def failed(self, host: str, exc: BaseException, now: datetime) -> None:
        """Record how a check through this host ended with `exc`."""
        if isinstance(exc, asyncio.CancelledError):
            st = self._hosts.get(host)
            if st is not None:
                st.probing = False  # the probe never finished: the next one may go
            return
        if not host_down(exc):
            self.answered(host)
            return
        st = self._hosts.get(host)
        if st is None:
            if len(self._hosts) >= _MAX_HOSTS:
                self._hosts.clear()
            st = self._hosts[host] = _Host(since=now, cooloff=self.cooloff)
        st.failures += 1
        if st.probing:  # the probe failed: open again, for longer
            st.probing = False
            st.cooloff = min(self.max_cooloff, st.cooloff * 2)
            st.open_until = now + timedelta(seconds=st.cooloff)
        elif st.open_until is None and st.failures >= self.threshold:
            st.open_until = now + timedelta(seconds=st.cooloff)

    def down_since(self, host: str) -> datetime | None:
        """When the host's failures began, while it is open; else None."""
        st = self._hosts.get(host)
        return None if st is None or st.open_until is None else st.since
