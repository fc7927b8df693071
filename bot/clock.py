"""The one clock: business time for the whole program.

Everything that stamps, compares or prints a point in time (fetched_at, leases,
expiry countdowns, "2 h ago", confirmation stamps, outbox schedules) takes a `Clock`
made once in `app.build_services` and passed down. Tests inject a fake clock and
are then independent of the calendar; `tests/test_one_clock.py` fails if a module
under bot/ reads the wall clock anywhere else. Durations and timeouts use
`time.monotonic()`, which is not a point in time and stays where it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A callable returning the current time as an aware UTC datetime."""


def system_clock() -> datetime:
    """The real wall clock (the only direct read of it in bot/)."""
    return datetime.now(UTC)
