"""The `flows` table: one unfinished multi-step dialogue per user (e.g. a guided /add).

It lives in the database, not in PTB memory, so a step survives a restart and works
whichever replica receives the next update (docs/telegram.md §7). `data` holds only non-secret
values; a key that must wait for another answer is kept in `sealed`, encrypted by the
vault under a binding unique to this flow instance (`nonce`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models import Base, UTCDateTime


class FlowRow(Base):
    __tablename__ = "flows"

    user_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    kind: Mapped[str] = mapped_column(String(16))  # which feature owns it, e.g. "add"
    step: Mapped[str] = mapped_column(String(16))  # what the next message answers
    nonce: Mapped[str] = mapped_column(String(16))  # per flow instance: buttons, sealing
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # non-secret only
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # vault ciphertext or None
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
