"""The review web app: queue, detail, numbers and export over the store, behind a login."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from inspector.settings import Settings
    from inspector.store import Store


def create_app(settings: Settings, store: Store) -> FastAPI:
    """The FastAPI application for these settings and this store."""
    from inspector.review.app import build_app

    return build_app(settings, store)


__all__ = ["create_app"]
