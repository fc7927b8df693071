"""alert_state.window_rungs: the plan-window alert ladder per key (NULL = default, [] = off)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_state") as batch:
        batch.add_column(sa.Column("window_rungs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_state") as batch:
        batch.drop_column("window_rungs")
