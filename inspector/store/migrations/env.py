"""Alembic environment: runs on a connection handed in by inspector.store.database.upgrade."""

from __future__ import annotations

from alembic import context

from inspector.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    from inspector.store.database import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
