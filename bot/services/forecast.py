"""Burn-rate forecast: when will a balance run out at the pace of the last days?

Only spending counts: a rise between two readings is a top-up and adds nothing to the
burn. Too little history (few points, a short span) gives no forecast at all rather
than a wild one — three quick readings after a big job must not cry "runs out today".
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

WINDOW = timedelta(days=3)
MIN_POINTS = 3
MIN_SPAN = timedelta(hours=6)


def burn_per_day(points: Sequence[tuple[datetime, Decimal]]) -> Decimal | None:
    """Money spent per day over the points (time-ordered), or None if there is too little."""
    if len(points) < MIN_POINTS:
        return None
    span = points[-1][0] - points[0][0]
    if span < MIN_SPAN:
        return None
    spent = sum(
        (max(Decimal(0), a[1] - b[1]) for a, b in itertools.pairwise(points)),
        Decimal(0),
    )
    if spent <= 0:
        return None
    return spent / Decimal(span.total_seconds()) * Decimal(86400)


def runs_out_at(
    points: Sequence[tuple[datetime, Decimal]], remaining: Decimal, now: datetime
) -> datetime | None:
    """When `remaining` reaches zero at the recent burn rate; None when it cannot be told."""
    if remaining <= 0:
        return None
    rate = burn_per_day(points)
    if rate is None:
        return None
    days = remaining / rate
    if days > 3650:
        return None
    return now + timedelta(days=float(days))
