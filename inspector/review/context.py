"""What every request handler needs: settings, the store, templates; kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape

from inspector.settings import DefectSpec, Settings
from inspector.store import Store

HERE = Path(__file__).parent
OTHER_DEFECT = DefectSpec(name="other", description="a defect the catalogue does not name")


def template_env() -> Environment:
    """Jinja2 with autoescape on for every template: untrusted text renders as text."""
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass
class AppContext:
    """The app's settings, store and template environment."""

    settings: Settings
    store: Store
    templates: Environment

    def defect_catalogue(self, site: str) -> tuple[DefectSpec, ...]:
        """The site's defect types (its profile's, else the default profile's), plus "other"."""
        own = self.settings.site(site).defects
        return (*own, OTHER_DEFECT) if all(d.name != "other" for d in own) else own

    def threshold(self, site: str) -> float:
        """The site's REVIEW threshold."""
        return self.settings.site(site).threshold


def app_context(request: Request) -> AppContext:
    """The AppContext of the running app."""
    ctx: AppContext = request.app.state.ctx
    return ctx
