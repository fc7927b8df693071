"""webhook_updates: Telegram update ids claimed by a webhook replica (de-duplication)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(40), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("update_id", name="pk_webhook_updates"),
    )
    op.create_index("ix_webhook_updates_claimed_at", "webhook_updates", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_updates_claimed_at", table_name="webhook_updates")
    op.drop_table("webhook_updates")
