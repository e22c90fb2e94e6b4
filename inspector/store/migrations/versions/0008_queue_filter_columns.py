"""queue filters on one table: the latest verdict's confidence, P(PASS) and adapter on each
inspection, indexes for the REVIEW tab's order, confidence ranges, adapters, stations and lines,
and part-id prefixes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PART_ID = "ix_inspections_part_id_site_verdict"
_WALKED = "ix_inspections_verdict_captured_at_id"  # 0005's, replaced by a wider one
_INDEXES = {
    "ix_inspections_verdict_captured_at_id_confidence_adapter": [
        "verdict",
        "captured_at",
        "id",
        "confidence",
        "adapter",
    ],
    "ix_inspections_verdict_confidence_captured_at_id": [
        "verdict",
        "confidence",
        "captured_at",
        "id",
    ],
    "ix_inspections_verdict_adapter_confidence_captured_at_id": [
        "verdict",
        "adapter",
        "confidence",
        "captured_at",
        "id",
    ],
    "ix_inspections_verdict_station_line_id": ["verdict", "station", "line", "id"],
}


def upgrade() -> None:
    op.add_column("inspections", sa.Column("confidence", sa.Double(), nullable=True))
    op.add_column("inspections", sa.Column("p_pass", sa.Double(), nullable=True))
    op.add_column("inspections", sa.Column("adapter", sa.String(length=64), nullable=True))
    # The copies of each inspection's latest verdict (0005 keeps which one that is).
    op.execute(
        "UPDATE inspections SET confidence = v.confidence, p_pass = v.p_pass, "
        "adapter = v.adapter FROM verdicts v WHERE v.id = inspections.verdict_id"
    )
    op.drop_index(_WALKED, table_name="inspections")
    for name, columns in _INDEXES.items():
        op.create_index(name, "inspections", columns, unique=False)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's LIKE ignores ASCII case, and uses an index for a prefix only when the
        # index does too.
        op.execute(
            f"CREATE INDEX {_PART_ID} ON inspections (part_id COLLATE NOCASE, site, verdict)"
        )
    else:
        # LIKE 'P12%' uses a btree under a non-C collation only with the pattern operators.
        op.create_index(
            _PART_ID,
            "inspections",
            ["part_id", "site", "verdict"],
            unique=False,
            postgresql_ops={"part_id": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    op.drop_index(_PART_ID, table_name="inspections")
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="inspections")
    op.create_index(_WALKED, "inspections", ["verdict", "captured_at", "id"], unique=False)
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("adapter")
        batch.drop_column("p_pass")
        batch.drop_column("confidence")
