"""golden parts and canary results

Golden parts (a reviewed inspection and its frozen expected answer), the reference P(PASS)
of each adapter version for each of them, and the audit of marks and unmarks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "golden_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("expected", sa.String(length=8), nullable=False),
        sa.Column("marked_by", sa.String(length=64), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name="fk_golden_parts_inspection_id_inspections",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name="fk_golden_parts_review_id_reviews",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_golden_parts"),
        sa.UniqueConstraint("inspection_id", name="uq_golden_parts_inspection_id"),
    )
    op.create_table(
        "golden_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("golden_id", sa.Integer(), nullable=False),
        sa.Column("adapter", sa.String(length=64), nullable=False),
        sa.Column("adapter_version", sa.Integer(), nullable=False),
        sa.Column("p_pass", sa.Double(), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["golden_id"],
            ["golden_parts.id"],
            name="fk_golden_references_golden_id_golden_parts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_golden_references"),
        sa.UniqueConstraint(
            "golden_id",
            "adapter",
            "adapter_version",
            name="uq_golden_references_golden_id_adapter_adapter_version",
        ),
    )
    op.create_table(
        "golden_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("expected", sa.String(length=8), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name="fk_golden_audit_inspection_id_inspections",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_golden_audit"),
    )
    op.create_index(
        "ix_golden_audit_inspection_id_at", "golden_audit", ["inspection_id", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_golden_audit_inspection_id_at", table_name="golden_audit")
    op.drop_table("golden_audit")
    op.drop_table("golden_references")
    op.drop_table("golden_parts")
