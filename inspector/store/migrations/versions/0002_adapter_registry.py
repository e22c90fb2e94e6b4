"""adapter registry: names, files and hashes of adapters, their audit trail, dataset snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Rows that predate the registry get these, so the new columns can be NOT NULL.
_FILL = {
    "sha256": "''",
    "base_model": "''",
    "card": "'{}'",
    "created_by": "'unknown'",
}


def upgrade() -> None:
    op.create_table(
        "dataset_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holdout_share", sa.Double(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_snapshots")),
    )
    op.create_index(
        op.f("ix_dataset_snapshots_site_created_at"),
        "dataset_snapshots",
        ["site", "created_at"],
        unique=False,
    )
    op.create_table(
        "dataset_items",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["dataset_snapshots.id"],
            name=op.f("fk_dataset_items_snapshot_id_dataset_snapshots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_dataset_items_inspection_id_inspections"),
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name=op.f("fk_dataset_items_review_id_reviews")
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "position", name=op.f("pk_dataset_items")),
    )
    op.create_index(
        op.f("ix_dataset_items_inspection_id"), "dataset_items", ["inspection_id"], unique=False
    )

    with op.batch_alter_table("adapters") as batch:
        batch.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        for column, default in _FILL.items():
            kind = sa.JSON() if column == "card" else sa.String(length=64)
            batch.add_column(
                sa.Column(column, kind, nullable=False, server_default=sa.text(default))
            )
        batch.add_column(sa.Column("snapshot_id", sa.Integer(), nullable=True))
    op.execute("UPDATE adapters SET name = site")
    with op.batch_alter_table("adapters") as batch:
        batch.alter_column("name", existing_type=sa.String(length=64), nullable=False)
        for column in _FILL:
            kind = sa.JSON() if column == "card" else sa.String(length=64)
            batch.alter_column(column, existing_type=kind, server_default=None)
        batch.drop_constraint("uq_adapters_site_version", type_="unique")
        batch.create_unique_constraint(op.f("uq_adapters_name_version"), ["name", "version"])
        batch.create_index(op.f("ix_adapters_site_status"), ["site", "status"], unique=False)
        batch.create_foreign_key(
            op.f("fk_adapters_snapshot_id_dataset_snapshots"),
            "dataset_snapshots",
            ["snapshot_id"],
            ["id"],
        )

    op.create_table(
        "adapter_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_adapter_audit_adapter_id_adapters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_audit")),
    )
    op.create_index(
        op.f("ix_adapter_audit_adapter_id"), "adapter_audit", ["adapter_id"], unique=False
    )
    op.create_index(op.f("ix_adapter_audit_site_at"), "adapter_audit", ["site", "at"], unique=False)

    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("adapter_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("adapter_version")
    op.drop_table("adapter_audit")
    with op.batch_alter_table("adapters") as batch:
        batch.drop_constraint("fk_adapters_snapshot_id_dataset_snapshots", type_="foreignkey")
        batch.drop_index("ix_adapters_site_status")
        batch.drop_constraint("uq_adapters_name_version", type_="unique")
        batch.create_unique_constraint("uq_adapters_site_version", ["site", "version"])
        for column in ("snapshot_id", "name", *_FILL):
            batch.drop_column(column)
    op.drop_table("dataset_items")
    op.drop_table("dataset_snapshots")
