"""Database connections and migrations: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from inspector.errors import StoreConflict, StoreFailed, StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_setup(engine: sa.Engine, begin: str) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and defers BEGIN; take it over.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)


def create_engine(url: str, *, writer: bool = False) -> sa.Engine:
    """An Engine for the URL; SQLite writers take the write lock at BEGIN to avoid upgrade races."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        _sqlite_setup(engine, "BEGIN IMMEDIATE" if writer else "BEGIN")
        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> str | None:
    """Bring the schema to the newest revision (a no-op when it is there); return it."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach the database: {exc.orig}") from None
    finally:
        engine.dispose()


class Database:
    """Session factories for one database: a reader and a writer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.write_engine = (
            create_engine(url, writer=True)
            if make_url(url).get_backend_name() == "sqlite"
            else self.engine
        )
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work; database failures surface as StoreUnavailable/StoreFailed."""
        try:
            with self._reader() as session:
                yield session
        except sa.exc.SQLAlchemyError as exc:
            raise _coded(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with self._writer.begin() as session:
                yield session
        except sa.exc.SQLAlchemyError as exc:
            raise _coded(exc) from exc

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(UNAVAILABLE) from exc

    def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        if self.write_engine.dialect.name == "postgresql":
            # VACUUM as well, as autovacuum would have by the time a real load is read: a bulk
            # load ends with every inspection updated (store.tallies.rebuild), and until the
            # old row versions go, counts read the table instead of their indexes alone.
            # VACUUM runs outside a transaction.
            with self.write_engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
            return
        with self.write_engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


# Fixed messages: a driver's error quotes SQL and bound parameters, which are for the log
# (the exception stays chained as __cause__), never for an answer to a user.
UNAVAILABLE = "the database is not answering; try again shortly"
FAILED = "the database refused the operation (the log has the driver's error)"
CONFLICT = "a write collided with a concurrent one; retrying reconciles it"


def _coded(exc: sa.exc.SQLAlchemyError) -> StoreFailed | StoreUnavailable:
    """The coded error for a SQLAlchemy error, with a message that quotes nothing of it."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and (
        getattr(exc, "connection_invalidated", False) or _is_connection_error(exc)
    ):
        return StoreUnavailable(UNAVAILABLE)
    if isinstance(exc, sa.exc.IntegrityError):
        return StoreConflict(CONFLICT)
    return StoreFailed(FAILED)


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in ("connection", "could not connect", "server closed", "terminating", "locked")
    )


def safe_url(url: str) -> str:
    """The database URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)
