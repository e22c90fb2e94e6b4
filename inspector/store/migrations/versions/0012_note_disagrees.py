"""note/photo disagreement: whether the operator's note contradicts the verdict

Verdicts stored before were never checked against their notes: they read as agreeing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(
            sa.Column("note_disagrees", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("note_disagrees")
