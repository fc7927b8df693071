"""What each user chose about alerts: per key (thresholds, which warnings, mute) and per
user (instant alerts, the daily digest, paused after blocking the bot).

No Telegram here: /alerts (bot/handlers/alerts.py) parses and renders, this reads and
writes `alert_state` and `alert_prefs`. The sweep (bot/alerts/sweep.py) reads the same
rows when it decides what to notify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import windows
from bot.alerts.outbox import OutboxService
from bot.clock import Clock
from bot.storage.db import Database
from bot.storage.models import AlertPrefs, AlertState, ApiKey
from bot.storage.repositories import AlertStateRepo
from bot.storage.upsert import insert_or_ignore

MUTE_FOR = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class KeyAlerts:
    """One key's alert settings and its last reading, as /alerts shows them."""

    key_id: str
    label: str
    hint: str
    provider: str
    thresholds: tuple[str, ...]
    expiry_on: bool
    revoked_on: bool
    forecast_on: bool
    muted_until: datetime | None
    last: dict[str, Any] | None
    window_rungs: tuple[str, ...] = windows.DEFAULT_RUNGS  # in force; () = off

    @property
    def has_windows(self) -> bool:
        """The key's last reading had plan windows (/alerts shows its window settings)."""
        return bool(self.last and self.last.get("windows"))


@dataclass(frozen=True, slots=True)
class Prefs:
    instant: bool = True
    digest: bool = False
    paused: bool = False


class AlertPreferences:
    """Read and change alert settings; every query is scoped by the owner's id."""

    def __init__(self, db: Database, outbox: OutboxService, *, clock: Clock | None = None) -> None:
        self.db = db
        self.outbox = outbox  # resumes a paused user's alerts (`seen`)
        self.clock = clock or outbox.clock

    async def overview(self, owner_id: int) -> tuple[list[KeyAlerts], Prefs]:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(ApiKey, AlertState)
                    .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                    .where(ApiKey.owner_id == owner_id)
                    .order_by(ApiKey.created_at, ApiKey.label)
                )
            ).all()
            prefs = await s.get(AlertPrefs, owner_id)
        views = [self._view(key, st) for key, st in rows]
        return views, self._prefs(prefs)

    async def get(self, owner_id: int, key_id: str) -> KeyAlerts | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(ApiKey, AlertState)
                    .outerjoin(AlertState, AlertState.key_id == ApiKey.id)
                    .where(ApiKey.owner_id == owner_id, ApiKey.id == key_id)
                )
            ).first()
        return None if row is None else self._view(row[0], row[1])

    @staticmethod
    def _view(key: ApiKey, st: AlertState | None) -> KeyAlerts:
        if st is None:
            return KeyAlerts(
                key.id, key.label, key.hint, key.provider, (), True, True, True, None, None
            )
        return KeyAlerts(
            key.id,
            key.label,
            key.hint,
            key.provider,
            tuple(st.thresholds or ()),
            st.expiry_on,
            st.revoked_on,
            st.forecast_on,
            st.muted_until,
            dict(st.last) if st.last else None,
            windows.effective_rungs(st.window_rungs),
        )

    @staticmethod
    def _prefs(prefs: AlertPrefs | None) -> Prefs:
        if prefs is None:
            return Prefs()
        return Prefs(prefs.instant, prefs.digest, prefs.paused_at is not None)

    async def _update_keys(
        self, owner_id: int, key_ids: Sequence[str] | None, **values: Any
    ) -> list[str]:
        """Apply `values` to the owner's keys (all when key_ids is None); labels changed."""
        now = self.clock()
        async with self.db.session() as s:
            stmt = select(ApiKey).where(ApiKey.owner_id == owner_id)
            if key_ids is not None:
                stmt = stmt.where(ApiKey.id.in_(list(key_ids)))
            keys = (await s.scalars(stmt.order_by(ApiKey.created_at, ApiKey.label))).all()
            states = AlertStateRepo(s)
            for key in keys:
                st = await states.get_or_create(key, now)
                for name, value in values.items():
                    setattr(st, name, value)
            return [k.label for k in keys]

    async def set_thresholds(
        self, owner_id: int, key_ids: Sequence[str] | None, specs: Sequence[str]
    ) -> list[str]:
        return await self._update_keys(owner_id, key_ids, thresholds=list(specs), forecast_on=True)

    async def turn_off(self, owner_id: int, key_ids: Sequence[str] | None) -> list[str]:
        """Low-balance and forecast off; expiry and revoked warnings stay (they are defaults)."""
        return await self._update_keys(owner_id, key_ids, thresholds=[], forecast_on=False)

    async def set_window_rungs(
        self, owner_id: int, key_ids: Sequence[str] | None, rungs: Sequence[str]
    ) -> list[str]:
        """Plan-window alerts at these used shares (`parse_rungs`); `[]` turns them off."""
        return await self._update_keys(owner_id, key_ids, window_rungs=list(rungs))

    async def mute(self, owner_id: int, key_id: str, until: datetime | None) -> bool:
        return bool(await self._update_keys(owner_id, [key_id], muted_until=until))

    async def _prefs_row(self, s: AsyncSession, user_id: int) -> AlertPrefs:
        await s.execute(
            insert_or_ignore(s, AlertPrefs, ["user_id"]).values(
                user_id=user_id, instant=True, digest=False, digest_hour=9
            )
        )
        prefs = await s.get(AlertPrefs, user_id, populate_existing=True)
        assert prefs is not None
        return prefs

    async def set_delivery(
        self, user_id: int, *, digest: bool | None = None, instant: bool | None = None
    ) -> Prefs:
        async with self.db.session() as s:
            prefs = await self._prefs_row(s, user_id)
            if digest is not None:
                prefs.digest = digest
            if instant is not None:
                prefs.instant = instant
            return self._prefs(prefs)

    async def seen(self, user_id: int, lang: str) -> bool:
        """The user talked to the bot: remember their language, resume paused alerts.

        One primary-key read per update; a write only when something changed.
        """
        async with self.db.session() as s:
            prefs = await s.get(AlertPrefs, user_id)
            if prefs is not None and prefs.lang == lang and prefs.paused_at is None:
                return False
        async with self.db.write() as s:  # on SQLite: in turn, BEGIN IMMEDIATE
            prefs = await self._prefs_row(s, user_id)
            prefs.lang = lang
            paused = prefs.paused_at is not None
        if paused:
            return await self.outbox.resume_user(user_id)
        return False
