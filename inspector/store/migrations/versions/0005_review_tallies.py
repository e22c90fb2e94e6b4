"""review speed: each inspection's latest verdict and review; verdict and review tallies per day

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_KEY = ("day", "site", "line", "adapter")


def upgrade() -> None:
    op.add_column("inspections", sa.Column("verdict_id", sa.Integer(), nullable=True))
    op.add_column("inspections", sa.Column("verdict", sa.String(length=8), nullable=True))
    op.add_column("inspections", sa.Column("review_id", sa.Integer(), nullable=True))
    for last, table in (
        (sa.Column("verdict", sa.String(length=8), nullable=False), "verdict_days"),
        (sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False), "verdict_hours"),
    ):
        op.create_table(
            table,
            sa.Column("day", sa.String(length=10), nullable=False),
            sa.Column("site", sa.String(length=64), nullable=False),
            sa.Column("line", sa.String(length=64), nullable=False),
            sa.Column("adapter", sa.String(length=64), nullable=False),
            last,
            sa.Column("n", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(*_KEY, last.name, name=op.f(f"pk_{table}")),
        )
    op.create_table(
        "reviewed_days",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("adapter", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("final_verdict", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "site",
            "adapter",
            "verdict",
            "final_verdict",
            "bucket",
            name=op.f("pk_reviewed_days"),
        ),
    )
    _backfill()
    op.create_index(
        op.f("ix_inspections_verdict_captured_at_id"),
        "inspections",
        ["verdict", "captured_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_inspections_site_verdict_captured_at_id"),
        "inspections",
        ["site", "verdict", "captured_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_inspections_site_captured_at_id"),
        "inspections",
        ["site", "captured_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_inspections_verdict_id"), "inspections", ["verdict", "id"], unique=False
    )


def _backfill() -> None:
    """The same as store.tallies.rebuild, in SQL of this revision's schema."""
    # UPDATE ... FROM grouped rows (SQLite 3.33+): one pass, not a subquery per inspection.
    op.execute(
        "UPDATE inspections SET verdict_id = latest.vid, verdict = latest.verdict FROM ("
        "SELECT n.inspection_id, n.vid, v.verdict FROM (SELECT inspection_id, max(id) AS vid "
        "FROM verdicts GROUP BY inspection_id) n JOIN verdicts v ON v.id = n.vid) latest "
        "WHERE inspections.id = latest.inspection_id"
    )
    op.execute(
        "UPDATE inspections SET review_id = latest.rid FROM (SELECT inspection_id, "
        "max(id) AS rid FROM reviews GROUP BY inspection_id) latest "
        "WHERE inspections.id = latest.inspection_id"
    )
    if op.get_bind().dialect.name == "sqlite":
        day, hour = "substr(i.captured_at, 1, 10)", "CAST(substr(i.captured_at, 12, 2) AS INTEGER)"
        bucket = "CAST(v.p_pass * 1000 AS INTEGER)"
    else:
        utc = "timezone('UTC', i.captured_at)"
        day, hour = f"to_char({utc}, 'YYYY-MM-DD')", f"CAST(extract(hour FROM {utc}) AS INTEGER)"
        bucket = "CAST(floor(v.p_pass * 1000) AS INTEGER)"
    joined = "FROM inspections i JOIN verdicts v ON v.id = i.verdict_id"
    for table, cols, exprs, joins in (
        ("verdict_days", "line, adapter, verdict", "i.line, v.adapter, v.verdict", ""),
        ("verdict_hours", "line, adapter, hour", f"i.line, v.adapter, {hour}", ""),
        (
            "reviewed_days",
            "adapter, verdict, final_verdict, bucket",
            f"v.adapter, v.verdict, r.final_verdict, {bucket}",
            " JOIN reviews r ON r.id = i.review_id",
        ),
    ):
        op.execute(
            f"INSERT INTO {table} (day, site, {cols}, n) "
            f"SELECT {day}, i.site, {exprs}, count(*) {joined}{joins} "
            f"GROUP BY {day}, i.site, {exprs}"
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_inspections_verdict_id"), table_name="inspections")
    op.drop_index(op.f("ix_inspections_site_captured_at_id"), table_name="inspections")
    op.drop_index(op.f("ix_inspections_site_verdict_captured_at_id"), table_name="inspections")
    op.drop_index(op.f("ix_inspections_verdict_captured_at_id"), table_name="inspections")
    op.drop_table("reviewed_days")
    op.drop_table("verdict_hours")
    op.drop_table("verdict_days")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("review_id")
        batch.drop_column("verdict")
        batch.drop_column("verdict_id")
