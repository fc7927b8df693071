"""Per-user state of multi-step dialogues, kept in the database (table `flows`).

Why not ConversationHandler or user_data: both live in process memory, so a restart or
a second replica would forget where the user was (docs/telegram.md §7). A flow expires after
`ttl` of inactivity; an expired flow reads as no flow, and the next message is handled
as if the user had never started one.

A key that has to wait for one more answer (e.g. "which provider is this?") is stored
only encrypted, bound to this user and this flow instance: `RecordBinding` with record
id `flow:<user>:<nonce>`, so the ciphertext cannot be replayed into another flow or row.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete

from bot.clock import Clock
from bot.crypto.vault import KeyVault, RecordBinding, VaultError
from bot.secret import Secret
from bot.storage.db import Database
from bot.storage.flows import FlowRow
from bot.storage.repositories import UserRepo

FLOW_TTL = timedelta(minutes=10)
_KEEP: Any = object()


@dataclass(frozen=True, slots=True)
class Flow:
    user_id: int
    kind: str
    step: str
    nonce: str
    data: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    has_secret: bool = False


def _binding(user_id: int, nonce: str) -> RecordBinding:
    return RecordBinding(f"flow:{user_id}:{nonce}", user_id, "flow", None)


class FlowStore:
    def __init__(
        self,
        db: Database,
        vault: KeyVault,
        *,
        ttl: timedelta = FLOW_TTL,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.ttl = ttl
        self.clock = clock or db.clock

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(4)

    async def get(self, user_id: int, kind: str | None = None) -> Flow | None:
        """The user's live flow (of `kind`, if given); an expired one is deleted."""
        async with self.db.session() as s:
            row = await s.get(FlowRow, user_id)
            if row is None:
                return None
            if row.expires_at <= self.clock():
                await s.delete(row)
                return None
            if kind is not None and row.kind != kind:
                return None
            return Flow(
                row.user_id,
                row.kind,
                row.step,
                row.nonce,
                dict(row.data or {}),
                row.expires_at,
                row.sealed is not None,
            )

    async def set(
        self,
        user_id: int,
        kind: str,
        step: str,
        data: Mapping[str, Any],
        *,
        nonce: str,
        secret: Secret | None = _KEEP,
    ) -> Flow:
        """Create or replace the flow. `secret`: seal this key; None drops it; default keeps."""
        now = self.clock()
        async with self.db.session() as s:
            # Opportunistic clean-up: sealed keys of abandoned flows do not linger.
            await s.execute(delete(FlowRow).where(FlowRow.expires_at <= now))
            await UserRepo(s).get_or_create(user_id)
            row = await s.get(FlowRow, user_id)
            if row is None:
                row = FlowRow(user_id=user_id)
                s.add(row)
            elif row.nonce != nonce:
                row.sealed = None  # sealed under another instance: unreadable now anyway
            row.kind, row.step, row.nonce = kind, step, nonce
            row.data = dict(data)
            row.expires_at = now + self.ttl
            if secret is None:
                row.sealed = None
            elif secret is not _KEEP:
                row.sealed, _kid = self.vault.encrypt(secret, _binding(user_id, nonce))
            await s.flush()
            return Flow(
                user_id, kind, step, nonce, dict(data), row.expires_at, row.sealed is not None
            )

    async def secret(self, user_id: int, nonce: str) -> Secret | None:
        """The key sealed in the user's live flow with this nonce, if any."""
        async with self.db.session() as s:
            row = await s.get(FlowRow, user_id)
            if row is None or row.sealed is None or row.nonce != nonce:
                return None
            if row.expires_at <= self.clock():
                return None
            try:
                return self.vault.decrypt(row.sealed, _binding(user_id, nonce))
            except VaultError:
                return None

    async def clear(self, user_id: int) -> bool:
        """Forget the user's flow (and any sealed key). True if there was one."""
        async with self.db.session() as s:
            result = await s.execute(delete(FlowRow).where(FlowRow.user_id == user_id))
            return bool(result.rowcount)  # type: ignore[attr-defined]
