"""Per-user state of multi-step dialogues, kept in the database (table `flows`).

Why not ConversationHandler or user_data: both live in process memory, so a restart or
a second replica would forget where the user was (docs/telegram.md §7). A flow expires after
`ttl` of inactivity; an expired flow reads as no flow, and the next message is handled
as if the user had never started one.

A key that has to wait for one more answer (e.g. "which provider is this?") is stored
only encrypted, bound to this user and this flow instance: `RecordBinding` with record
id `flow:<user>:<nonce>`, so the ciphertext cannot be replayed into another flow or row.

A flow at step `WORKING` is one the bot itself is acting on (e.g. checking and saving a
key that is already sealed here, before the message that carried it was deleted). If the
process dies meanwhile, that row is the only trace of the key, so it is never dropped by
expiry: `working()` finds it for the feature to tell the user, and only rows older than
`WORKING_KEEP` are cleaned away.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from bot.clock import Clock
from bot.crypto.vault import KeyVault, RecordBinding, VaultError
from bot.secret import Secret
from bot.storage.db import Database
from bot.storage.flows import FlowRow
from bot.storage.repositories import UserRepo

FLOW_TTL = timedelta(minutes=10)
WORKING = "working"
#: A working flow nobody came back to is removed after this long (Telegram lets a bot
#: delete messages for 48 hours; after that the user has long re-sent or forgotten it).
WORKING_KEEP = timedelta(days=2)
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
    updated_at: datetime | None = None  # the last write (expires_at − ttl)


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
        #: Names this process in the flows it works on (a restarted process is another one).
        self.instance = secrets.token_hex(6)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(4)

    def _flow(self, row: FlowRow) -> Flow:
        return Flow(
            row.user_id,
            row.kind,
            row.step,
            row.nonce,
            dict(row.data or {}),
            row.expires_at,
            row.sealed is not None,
            row.expires_at - self.ttl,
        )

    def _expired(self, row: FlowRow, now: datetime) -> bool:
        if row.step == WORKING:
            return row.expires_at - self.ttl + WORKING_KEEP <= now
        return row.expires_at <= now

    async def get(self, user_id: int, kind: str | None = None) -> Flow | None:
        """The user's live flow (of `kind`, if given); an expired one is deleted."""
        async with self.db.session() as s:
            row = await s.get(FlowRow, user_id)
            if row is None:
                return None
            if self._expired(row, self.clock()):
                await s.delete(row)
                return None
            if kind is not None and row.kind != kind:
                return None
            return self._flow(row)

    async def working(self, kind: str) -> list[Flow]:
        """Every flow of `kind` at step WORKING, oldest first (expired or not)."""
        async with self.db.session() as s:
            rows = await s.scalars(
                select(FlowRow)
                .where(FlowRow.kind == kind, FlowRow.step == WORKING)
                .order_by(FlowRow.expires_at)
            )
            return [self._flow(row) for row in rows]

    async def claim(
        self, user_id: int, nonce: str, step: str, new_step: str, data: Mapping[str, Any]
    ) -> bool:
        """Move the flow from `step` to `new_step` if it is still that instance at that step
        (compare-and-set: of two processes, one wins). The expiry starts afresh."""
        now = self.clock()
        async with self.db.session() as s:
            result = await s.execute(
                update(FlowRow)
                .where(FlowRow.user_id == user_id, FlowRow.nonce == nonce, FlowRow.step == step)
                .values(step=new_step, data=dict(data), expires_at=now + self.ttl)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

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
            # Opportunistic clean-up: sealed keys of abandoned flows do not linger (a working
            # flow is kept until its feature told the user, see `working`).
            await s.execute(
                delete(FlowRow).where(
                    or_(
                        and_(FlowRow.step != WORKING, FlowRow.expires_at <= now),
                        FlowRow.expires_at <= now + self.ttl - WORKING_KEEP,
                    )
                )
            )
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
            return self._flow(row)

    async def secret(self, user_id: int, nonce: str) -> Secret | None:
        """The key sealed in the user's live flow with this nonce, if any."""
        async with self.db.session() as s:
            row = await s.get(FlowRow, user_id)
            if row is None or row.sealed is None or row.nonce != nonce:
                return None
            if self._expired(row, self.clock()):
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
