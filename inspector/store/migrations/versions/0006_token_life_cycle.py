"""token life cycle: API token expiry and last use, hashed CSRF tokens, known login addresses

Tokens from before this revision get the default life (90 days) from the upgrade on. Browser
sessions end: their CSRF tokens were kept in clear, and a session's CSRF token is now
derived from its cookie and kept only as a hash, so everyone logs in once more.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table("api_tokens", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(tokens.update().values(expires_at=datetime.now(UTC) + timedelta(days=90)))
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.execute(sa.table("web_sessions").delete())
    with op.batch_alter_table("web_sessions") as batch:
        batch.alter_column(
            "csrf_token", new_column_name="csrf_hash", existing_type=sa.String(length=64)
        )
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))
    op.create_table(
        "login_addresses",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_addresses_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "address", name=op.f("pk_login_addresses")),
    )


def downgrade() -> None:
    op.drop_table("login_addresses")
    op.execute(sa.table("web_sessions").delete())
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("address")
        batch.alter_column(
            "csrf_hash", new_column_name="csrf_token", existing_type=sa.String(length=64)
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
