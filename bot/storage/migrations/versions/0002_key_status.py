"""key_status, balance_snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_status",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("last_ok_at", UTCDateTime(), nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=True),
        sa.Column("last_error_kind", sa.String(32), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name="fk_key_status_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_status"),
    )
    op.create_index("ix_key_status_owner_id", "key_status", ["owner_id"])
    op.create_table(
        "balance_snapshots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("remaining", sa.String(48), nullable=True),
        sa.Column("total", sa.String(48), nullable=True),
        sa.Column("used", sa.String(48), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name="fk_balance_snapshots_key_id_api_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_balance_snapshots"),
    )
    op.create_index("ix_balance_snapshots_key_taken", "balance_snapshots", ["key_id", "taken_at"])


def downgrade() -> None:
    op.drop_index("ix_balance_snapshots_key_taken", table_name="balance_snapshots")
    op.drop_table("balance_snapshots")
    op.drop_index("ix_key_status_owner_id", table_name="key_status")
    op.drop_table("key_status")
