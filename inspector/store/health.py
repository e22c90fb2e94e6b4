"""What `inspector doctor` asks the store: is the schema current, do station clocks agree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url

from inspector.errors import StoreUnavailable
from inspector.store.database import Database, alembic_config, create_engine
from inspector.store.models import Inspection


@dataclass(frozen=True)
class SchemaStatus:
    """The database's migration revision against the newest one this code ships."""

    current: str | None
    head: str
    pending: tuple[str, ...]
    known: bool

    @property
    def is_current(self) -> bool:
        """True when nothing is pending and the database's revision is one this code knows."""
        return self.known and not self.pending


def database_exists(url: str) -> bool:
    """False for a SQLite file not created yet (opening one would create it); else True."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).is_file()


def schema_status(url: str) -> SchemaStatus:
    """Read the database's Alembic revision and list the migrations it has not had."""
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("the packaged migrations have no head revision")
    current = _current_revision(url) if database_exists(url) else None
    try:
        # Newest first, down to (not including) the database's revision.
        pending = tuple(r.revision for r in script.iterate_revisions(head, current or "base"))
    except CommandError:
        return SchemaStatus(current, head, (), known=False)
    if current is not None:
        pending = tuple(r for r in pending if r != current)
    return SchemaStatus(current, head, tuple(reversed(pending)), known=True)


def _current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise StoreUnavailable(f"cannot reach the database: {exc.orig}") from None
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StationClock:
    """How far one station's capture stamps sit from the worker's receipt stamps."""

    site: str
    line: str
    station: str
    # min(received_at - captured_at): the capture that reached a worker fastest shows the
    # clock offset plus the shortest transit (milliseconds on a plant network). Negative:
    # the station's clock is ahead of the worker's.
    offset_s: float
    samples: int


def station_clocks(db: Database, since: datetime, per_station: int = 200) -> list[StationClock]:
    """Per station, the smallest receipt-minus-capture gap over its latest inspections."""
    ins = Inspection.__table__
    ranked = (
        sa.select(
            ins.c.site,
            ins.c.line,
            ins.c.station,
            ins.c.captured_at,
            ins.c.received_at,
            sa.func.row_number()
            .over(
                partition_by=(ins.c.site, ins.c.line, ins.c.station),
                order_by=ins.c.received_at.desc(),
            )
            .label("n"),
        )
        .where(ins.c.received_at >= since)
        .subquery()
    )
    query = sa.select(
        ranked.c.site, ranked.c.line, ranked.c.station, ranked.c.captured_at, ranked.c.received_at
    ).where(ranked.c.n <= per_station)
    gaps: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    try:
        with db.read() as session:
            rows = session.execute(query).all()
    except sa.exc.DBAPIError as exc:
        raise StoreUnavailable(f"cannot read inspections: {exc.orig}") from None
    for site, line, station, captured, received in rows:
        gaps[(site, line, station)].append(_seconds(received, captured))
    return [
        StationClock(site, line, station, min(values), len(values))
        for (site, line, station), values in sorted(gaps.items())
    ]


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()
