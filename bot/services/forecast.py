"""Burn-rate forecast: when will a balance run out at the pace of the last days?

Only spending counts: a rise between two readings is a top-up and adds nothing to the
burn. Too little history (few points, a short span) gives no forecast at all rather
than a wild one — three quick readings after a big job must not cry "runs out today".

The forecast needs only five figures of a key's recent readings (`Burn`): how many, the
first and last time, the last value and the sum of the drops between consecutive ones.
The alert sweep gets them aggregated by the database (`SnapshotRepo.burns`, one row per
key) instead of loading every reading; /history builds them from its points (`burn_of`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

WINDOW = timedelta(days=3)
MIN_POINTS = 3
MIN_SPAN = timedelta(hours=6)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Burn:
    """A run of time-ordered readings, as much of it as the forecast needs."""

    points: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    last_value: Decimal | None = None
    spent: Decimal = _ZERO  # the sum of drops between consecutive readings (rises add 0)

    def then(self, at: datetime, value: Decimal) -> Burn:
        """The run with a newer reading appended (a reading older than `last_at` is taken
        as the newest too: the sweep's own check, whose time is the provider's answer)."""
        if self.last_value is None or self.first_at is None or self.last_at is None:
            return Burn(1, at, at, value, _ZERO)
        return Burn(
            self.points + 1,
            min(self.first_at, at),
            max(self.last_at, at),
            value,
            self.spent + max(_ZERO, self.last_value - value),
        )


def burn_of(points: Sequence[tuple[datetime, Decimal]]) -> Burn:
    """The Burn of time-ordered (time, value) points."""
    if not points:
        return Burn()
    spent = sum((max(_ZERO, a[1] - b[1]) for a, b in itertools.pairwise(points)), _ZERO)
    return Burn(len(points), points[0][0], points[-1][0], points[-1][1], spent)


def burn_per_day(burn: Burn) -> Decimal | None:
    """Money spent per day over the run, or None if there is too little."""
    if burn.points < MIN_POINTS or burn.first_at is None or burn.last_at is None:
        return None
    span = burn.last_at - burn.first_at
    if span < MIN_SPAN:
        return None
    if burn.spent <= 0:
        return None
    return burn.spent / Decimal(span.total_seconds()) * Decimal(86400)


def runs_out_at(burn: Burn, remaining: Decimal, now: datetime) -> datetime | None:
    """When `remaining` reaches zero at the recent burn rate; None when it cannot be told."""
    if remaining <= 0:
        return None
    rate = burn_per_day(burn)
    if rate is None:
        return None
    days = remaining / rate
    if days > 3650:
        return None
    return now + timedelta(days=float(days))
