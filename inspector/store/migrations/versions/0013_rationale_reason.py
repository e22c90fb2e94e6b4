"""verdict first: why a verdict's rationale was not produced

A stable code (rationale.worker_lost, rationale.engine_failed) beside rationale_state, so
the review app can tell a worker that stopped from a model that failed. Rationales marked
not produced before carry none.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("rationale_reason", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("rationale_reason")
