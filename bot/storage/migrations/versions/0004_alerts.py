"""alerts: alert_prefs, alert_state (settings + state machine + lease), alert_outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_prefs",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("instant", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("digest_hour", sa.Integer(), nullable=False),
        sa.Column("digest_last", sa.String(10), nullable=True),
        sa.Column("lang", sa.String(8), nullable=True),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_alert_prefs_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_alert_prefs"),
    )
    op.create_table(
        "alert_state",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("expiry_on", sa.Boolean(), nullable=False),
        sa.Column("revoked_on", sa.Boolean(), nullable=False),
        sa.Column("forecast_on", sa.Boolean(), nullable=False),
        sa.Column("muted_until", UTCDateTime(), nullable=True),
        sa.Column("memory", sa.JSON(), nullable=False),
        sa.Column("last", sa.JSON(), nullable=True),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("next_check_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(40), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name="fk_alert_state_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_alert_state_owner_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_alert_state"),
    )
    op.create_index("ix_alert_state_owner_id", "alert_state", ["owner_id"])
    op.create_index("ix_alert_state_due", "alert_state", ["next_check_at"])
    op.create_table(
        "alert_outbox",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("idem_key", sa.String(160), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(40), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_alert_outbox_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name="fk_alert_outbox_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_outbox"),
        sa.UniqueConstraint("idem_key", name="uq_alert_outbox_idem_key"),
    )
    op.create_index("ix_alert_outbox_user_id", "alert_outbox", ["user_id"])
    op.create_index("ix_alert_outbox_key_id", "alert_outbox", ["key_id"])
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_due", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_key_id", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_user_id", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_index("ix_alert_state_due", table_name="alert_state")
    op.drop_index("ix_alert_state_owner_id", table_name="alert_state")
    op.drop_table("alert_state")
    op.drop_table("alert_prefs")
