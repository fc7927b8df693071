"""users.currency (/currency) and fx_rates (the latest ECB reference rates)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("currency", sa.String(3), nullable=True))
    op.create_table(
        "fx_rates",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("published", sa.String(10), nullable=True),
        sa.Column("rates", sa.JSON(), nullable=True),
        sa.Column("fetched_at", UTCDateTime(), nullable=True),
        sa.Column("attempted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("source", name="pk_fx_rates"),
    )


def downgrade() -> None:
    op.drop_table("fx_rates")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("currency")
