"""verdict first: each verdict's rationale state (pending until its rationale is written)

Verdicts stored before have their rationale: they read as produced.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PENDING = "ix_verdicts_rationale_state_decided_at"


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(
            sa.Column(
                "rationale_state", sa.String(length=16), nullable=False, server_default="produced"
            )
        )
    # Live workers look for rationales pending too long: few rows, found by this index.
    op.create_index(_PENDING, "verdicts", ["rationale_state", "decided_at"], unique=False)


def downgrade() -> None:
    op.drop_index(_PENDING, table_name="verdicts")
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("rationale_state")
