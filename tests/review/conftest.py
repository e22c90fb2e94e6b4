"""Review-app fixtures: the app over the migrated store (SQLite and PostgreSQL), clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store
from tests.review.helpers import SETTINGS


@pytest.fixture
def app(store: Store) -> FastAPI:
    """The review app over the store."""
    return create_app(Settings(**SETTINGS), store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A browser-like client without a session."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c
