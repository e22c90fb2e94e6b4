"""What every request handler needs: settings, the store, templates; kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from inspector.codes import NOT_PRODUCED_WHY
from inspector.engine.identity import is_tiny_model
from inspector.protocol import RationaleState
from inspector.quality import BASE, served_name
from inspector.review.hosts import Network, networks
from inspector.safetext import visible
from inspector.settings import DefectSpec, Settings
from inspector.store import Store

HERE = Path(__file__).parent
OTHER_DEFECT = DefectSpec(name="other", description="a defect the catalogue does not name")
# What a page shows in place of the rationale of a verdict that has none (yet), by state,
# and for not_produced by the reason stored with it (verdicts stored before reasons were
# kept have none).
RATIONALE_NOTES: dict[str, str] = {
    RationaleState.PENDING: "Rationale pending…",
    RationaleState.SKIPPED: "No rationale: the site's policy skips PASS verdicts",
    RationaleState.NOT_PRODUCED: "Rationale not produced",
}


def rationale_note(verdict: Any) -> str | None:
    """What to show instead of `verdict`'s rationale, or None when it has one to show."""
    state = verdict.rationale_state
    reason = verdict.rationale_reason
    if state == RationaleState.NOT_PRODUCED and reason:
        why = NOT_PRODUCED_WHY.get(reason)
        return f"{RATIONALE_NOTES[state]}: {why}" if why else f"{RATIONALE_NOTES[state]} ({reason})"
    return RATIONALE_NOTES.get(state)


def shown(value: Any) -> Any:
    """Every `{{ }}` value before autoescape: control and bidi characters spelled visibly.

    Autoescape makes HTML in untrusted text inert; this makes a bidi override in a part id
    (``P-\\u202eLIAF\\u202c`` would display as "P-FAIL") or a zero-width character show as
    the escape it is. Newlines stay (notes and rationales have lines); already-escaped
    markup (macro output) passes as it is.
    """
    if value is None or isinstance(value, Markup | bool | int | float):
        return value
    return visible(value, multiline=True)


def template_env() -> Environment:
    """Jinja2 with autoescape on for every template and `shown` on every value."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=shown,
    )
    env.filters["oneline"] = visible  # single-line fields (part ids): a newline shows as \x0a
    return env


@dataclass
class AppContext:
    """The app's settings, store and template environment."""

    settings: Settings
    store: Store
    templates: Environment
    random_model: bool = False
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def build(cls, settings: Settings, store: Store) -> AppContext:
        """The context, noting whether the configured model is the tiny random test model."""
        random_model = is_tiny_model(settings.model.path)
        templates = template_env()
        templates.globals["random_model"] = random_model
        templates.globals["base_adapter"] = BASE  # a verdict without a site adapter
        templates.globals["served_name"] = served_name
        templates.globals["rationale_note"] = rationale_note
        proxies = networks(settings.review.trusted_proxies)
        return cls(settings, store, templates, random_model, proxies)

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
