"""balance_snapshots: unit and plan windows of each reading (history charts, /export)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("balance_snapshots") as batch:
        batch.add_column(sa.Column("unit", sa.String(16), nullable=True))
        batch.add_column(sa.Column("windows", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("balance_snapshots") as batch:
        batch.drop_column("windows")
        batch.drop_column("unit")
