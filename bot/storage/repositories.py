"""Queries, grouped by table. Every key query is scoped by owner: there is no way to
load another user's key by id alone (callback data is forgeable, docs/security.md §T8)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import AlertState, ApiKey, Meta, User
from bot.storage.upsert import insert_or_ignore


class UserRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, user_id: int) -> User | None:
        return await self.s.get(User, user_id)

    async def get_or_create(self, user_id: int) -> User:
        user = await self.s.get(User, user_id)
        if user is None:
            user = User(id=user_id, timezone="UTC")
            self.s.add(user)
            await self.s.flush()
        return user

    async def count(self) -> int:
        return int(await self.s.scalar(select(func.count()).select_from(User)) or 0)

    async def delete(self, user_id: int) -> None:
        await self.s.execute(delete(ApiKey).where(ApiKey.owner_id == user_id))
        await self.s.execute(delete(User).where(User.id == user_id))


class KeyRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def list_for(self, owner_id: int) -> Sequence[ApiKey]:
        stmt = (
            select(ApiKey)
            .where(ApiKey.owner_id == owner_id)
            .order_by(ApiKey.created_at, ApiKey.label)
        )
        return (await self.s.scalars(stmt)).all()

    async def get(self, owner_id: int, key_id: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
        return await self.s.scalar(stmt)

    async def by_label(self, owner_id: int, label: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.owner_id == owner_id, ApiKey.label == label)
        return await self.s.scalar(stmt)

    async def by_fingerprint(self, owner_id: int, fingerprints: Sequence[str]) -> ApiKey | None:
        stmt = select(ApiKey).where(
            ApiKey.owner_id == owner_id, ApiKey.fingerprint.in_(list(fingerprints))
        )
        return await self.s.scalar(stmt)

    async def labels(self, owner_id: int) -> set[str]:
        stmt = select(ApiKey.label).where(ApiKey.owner_id == owner_id)
        return set((await self.s.scalars(stmt)).all())

    async def count_for(self, owner_id: int) -> int:
        stmt = select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == owner_id)
        return int(await self.s.scalar(stmt) or 0)

    async def count(self) -> int:
        return int(await self.s.scalar(select(func.count()).select_from(ApiKey)) or 0)

    async def kid_counts(self) -> dict[str, int]:
        stmt = select(ApiKey.kid, func.count()).group_by(ApiKey.kid)
        return {kid: int(n) for kid, n in (await self.s.execute(stmt)).all()}

    async def batch_not_kid(self, kid: str, limit: int) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.kid != kid).order_by(ApiKey.id).limit(limit)
        return (await self.s.scalars(stmt)).all()

    async def all_batches(self, after: str, limit: int) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.id > after).order_by(ApiKey.id).limit(limit)
        return (await self.s.scalars(stmt)).all()

    async def rewrap(
        self, key_id: str, old_kid: str, ciphertext: bytes, kid: str, fingerprint: str
    ) -> bool:
        """Optimistic update: only if the row still carries the kid we decrypted."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.kid == old_kid)
            .values(ciphertext=ciphertext, kid=kid, fingerprint=fingerprint)
        )
        result = await self.s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, owner_id: int, key_id: str) -> bool:
        stmt = delete(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id)
        result = await self.s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]


class MetaRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, key: str) -> bytes | None:
        row = await self.s.get(Meta, key)
        return None if row is None else bytes(row.value)

    async def set(self, key: str, value: bytes) -> None:
        row = await self.s.get(Meta, key)
        if row is None:
            self.s.add(Meta(key=key, value=value))
        else:
            row.value = value


class AlertStateRepo:
    """`alert_state`: one row per key (what to watch, the rules' memory, the sweep's lease)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    @staticmethod
    def defaults(key_id: str, owner_id: int, now: datetime) -> dict[str, Any]:
        """A new key's row: expiry and revoked warnings on, no thresholds, due now."""
        return {
            "key_id": key_id,
            "owner_id": owner_id,
            "thresholds": [],
            "expiry_on": True,
            "revoked_on": True,
            "forecast_on": True,
            "memory": {},
            "next_check_at": now,
        }

    async def get_or_create(self, key: ApiKey, now: datetime) -> AlertState:
        state = await self.s.get(AlertState, key.id)
        if state is None:
            await self.s.execute(
                insert_or_ignore(self.s, AlertState, ["key_id"]).values(
                    **self.defaults(key.id, key.owner_id, now)
                )
            )
            state = await self.s.get(AlertState, key.id)
            assert state is not None
        return state

    async def missing(self, after: str, limit: int) -> Sequence[tuple[str, int]]:
        """(key id, owner) of keys without a row, in key id order after `after`."""
        stmt = (
            select(ApiKey.id, ApiKey.owner_id)
            .where(
                ApiKey.id > after,
                ~select(AlertState.key_id).where(AlertState.key_id == ApiKey.id).exists(),
            )
            .order_by(ApiKey.id)
            .limit(limit)
        )
        return [(k, o) for k, o in (await self.s.execute(stmt)).all()]

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `defaults` rows; rows that exist already are left alone."""
        if rows:
            await self.s.execute(insert_or_ignore(self.s, AlertState, ["key_id"]), list(rows))
