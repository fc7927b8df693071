"""The daily digest: one message a day with every key's last reading, for users who asked.

Queued through the same outbox as the alerts (kind `digest`), once per user and local
day: the `digest_last` compare-and-set keeps replicas from queueing it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select, update

from bot.alerts.outbox import enqueue
from bot.alerts.rules import DIGEST
from bot.clock import Clock
from bot.storage.db import Database
from bot.storage.models import AlertPrefs, AlertState, ApiKey, User

#: What the digest keeps of a stored plan window: its name, used share and state.
_WINDOW_FIELDS = ("window", "pct", "state")


def _compact(last: dict[str, Any]) -> dict[str, Any]:
    """The stored reading, with plan windows cut down to what the digest shows."""
    windows = last.get("windows")
    if not isinstance(windows, list):
        return last
    kept = [{k: w.get(k) for k in _WINDOW_FIELDS} for w in windows if isinstance(w, dict)]
    return {**last, "windows": kept}


class DailyDigest:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or db.clock

    async def enqueue_due(self, now: datetime | None = None) -> int:
        """Once per local day (from `digest_hour`), one digest row per user who wants it."""
        now = now or self.clock()
        queued = 0
        async with self.db.session() as s:
            users = (
                await s.execute(
                    select(AlertPrefs, User.timezone)
                    .join(User, User.id == AlertPrefs.user_id)
                    .where(AlertPrefs.digest.is_(True))
                )
            ).all()
        for prefs, tz_name in users:
            try:
                tz = ZoneInfo(tz_name or "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                tz = ZoneInfo("UTC")
            local = now.astimezone(tz)
            day = local.date().isoformat()
            if local.hour < prefs.digest_hour or prefs.digest_last == day:
                continue
            async with self.db.session() as s:
                t = AlertPrefs.__table__
                claimed = await s.execute(
                    update(t)
                    .where(
                        t.c.user_id == prefs.user_id,
                        or_(t.c.digest_last.is_(None), t.c.digest_last != day),
                    )
                    .values(digest_last=day)
                )
                if not claimed.rowcount:  # type: ignore[attr-defined]
                    continue  # another replica did it
                rows = (
                    await s.execute(
                        select(ApiKey.id, ApiKey.label, ApiKey.hint, AlertState.last)
                        .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                        .where(ApiKey.owner_id == prefs.user_id)
                        .order_by(ApiKey.created_at, ApiKey.label)
                    )
                ).all()
                if not rows:
                    continue
                items = [
                    {"label": label, "hint": hint, **_compact(last or {})}
                    for _, label, hint, last in rows
                ]
                await enqueue(
                    s,
                    idem_key=f"digest:{prefs.user_id}:{day}",
                    user_id=prefs.user_id,
                    key_id=None,
                    kind=DIGEST,
                    payload={"day": day, "keys": items},
                    now=now,
                )
                queued += 1
        return queued
