"""Review-app fixtures: a migrated store on SQLite and PostgreSQL, the app, clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store

SETTINGS = {
    "review": {"audit_pass_percent": 100, "max_login_failures": 3},
    "sites": {
        "osaka": {
            "threshold": 0.7,
            "defects": [
                {"name": "scratch", "description": "a line in the finish"},
                {"name": "dent", "description": "a local deformation"},
            ],
        }
    },
}


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated store (SQLite and PostgreSQL) with blobs in a temp dir."""
    s = Store(db_url, tmp_path / "blobs")
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def app(store: Store) -> FastAPI:
    """The review app over the store."""
    return create_app(Settings(**SETTINGS), store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A browser-like client without a session."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c
