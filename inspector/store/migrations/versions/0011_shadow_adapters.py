"""shadow adapters: a candidate judging a share of a site's live requests, and its verdicts

`adapters.shadow_share` is the share of the site's requests a shadow adapter judges again;
`shadow_verdicts` keeps those verdicts apart from `verdicts`, so nothing that reads an
inspection's verdict (the queue, the tallies, the numbers, re-published answers) can ever
take one for the inspection's verdict. A shadow verdict names its inspection by request_id,
without a foreign key: it is written after its inspection's verdict commit, by another
transaction, and a request whose commit failed leaves a row that joins nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapters") as batch:
        batch.add_column(sa.Column("shadow_share", sa.Double(), nullable=True))
    op.create_table(
        "shadow_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("adapter", sa.String(length=64), nullable=False),
        sa.Column("adapter_version", sa.Integer(), nullable=False),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("p_pass", sa.Double(), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_verdicts")),
        sa.UniqueConstraint(
            "request_id",
            "model",
            "adapter",
            "adapter_version",
            "prompt_version",
            name=op.f("uq_shadow_verdicts_request_id_model_adapter_adapter_version_prompt_version"),
        ),
    )
    op.create_index(
        op.f("ix_shadow_verdicts_adapter_adapter_version_request_id"),
        "shadow_verdicts",
        ["adapter", "adapter_version", "request_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_shadow_verdicts_adapter_adapter_version_request_id"), table_name="shadow_verdicts"
    )
    op.drop_table("shadow_verdicts")
    with op.batch_alter_table("adapters") as batch:
        batch.drop_column("shadow_share")
