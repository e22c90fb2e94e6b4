"""The product policy around the model, torch-free: adapter choice, decision, defects, result.

The model core turns a prompt into P(PASS); everything the product decides from there is
here, so serving, training and evaluation apply one rule set:

- a request runs with the adapter it names when that one is attached, else with the
  adapter version its site serves (the registry's active one), else on the base; a named
  adapter that is not attached falls back to the site's, and the result says so;
- PASS or FAIL by the larger probability, REVIEW when that is below the site's threshold
  (`inspector.quality.decide`, the one rule);
- the rationale continues from the leaning verdict word, and the catalogue defects it
  names (FAIL leanings only) become the verdict's findings;
- which verdicts get a rationale is the site's rationale policy (`wants_rationale`);
- an operator's note that contradicts the verdict flags it, and under the site's
  note_disagreement = "review" makes it REVIEW (`check_note`, `inspector.quality.notes`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from inspector.engine.prompt import PROMPT_VERSION
from inspector.engine.types import VISION_ADAPTER, EngineRequest, EngineResult
from inspector.protocol import DefectFinding, RationaleState
from inspector.quality import BASE, AdapterRef, Decided, Decision, is_base
from inspector.quality.notes import NoteCheck, weigh_note
from inspector.settings import DefectSpec, SiteProfile


def site_profile(sites: Mapping[str, SiteProfile], site: str) -> SiteProfile:
    """The site's profile, else the `default` one, else the built-in defaults."""
    # The same lookup as Settings.site: the engine holds only the sites mapping.
    return sites.get(site) or sites.get("default") or SiteProfile()


@dataclass(frozen=True)
class Served:
    """The adapter version a site serves, as the runtime attached it."""

    adapter: AdapterRef
    key: str  # the runtime's handle of that version


@dataclass(frozen=True)
class Route:
    """The adapter one request runs with, which version, and whether it is a fallback."""

    adapter: str
    fallback: bool
    version: int | None = None
    key: str | None = None  # the runtime's handle, when it is not the adapter's name

    @property
    def handle(self) -> str:
        """What the runtime runs the row with."""
        return self.key or self.adapter


# The base runs no site LoRA; the runtime knows it by the checkpoint's merged vision LoRA.
BASE_ROUTE = Route(BASE, fallback=False, key=VISION_ADAPTER)


def route(request: EngineRequest, named: Collection[str], served: Served | None) -> Route:
    """The adapter a request names if attached, else the one its site serves, else the base."""
    default = (
        Route(served.adapter.name, False, served.adapter.version, served.key)
        if served is not None
        else BASE_ROUTE
    )
    requested = request.adapter
    if requested is None or (served is not None and requested == served.adapter.name):
        return default
    if is_base(requested):
        return BASE_ROUTE
    if requested in named:
        return Route(requested, fallback=False)
    return replace(default, fallback=True)


def shadow_route(shadow: Served | None) -> Route:
    """A shadow row's route: its site's shadow adapter, else the base marked as a fallback."""
    # Without one (dropped while the batch waited), the fallback mark tells the worker to
    # store nothing for the row.
    if shadow is None:
        return replace(BASE_ROUTE, fallback=True)
    return Route(shadow.adapter.name, False, shadow.adapter.version, shadow.key)


def _defect_pattern(spec: DefectSpec) -> re.Pattern[str]:
    # A name only counts as a whole word; "(where)" right after it says where.
    return re.compile(
        rf"(?<![a-z0-9-]){re.escape(spec.name)}(?![a-z0-9-])(?:\s*\(([^()\n]{{1,200}})\))?",
        re.IGNORECASE,
    )


def find_defects(rationale: str, catalogue: Sequence[DefectSpec]) -> list[DefectFinding]:
    """Catalogue defects named in a rationale, in catalogue order, each with its `where`."""
    found = []
    for spec in catalogue:
        match = _defect_pattern(spec).search(rationale)
        if match:
            where = match.group(1).strip() if match.group(1) else None
            found.append(DefectFinding(type=spec.name, where=where or None))
    return found


def wants_rationale(profile: SiteProfile, scored: Decided) -> bool:
    """Whether the site's rationale policy asks a rationale for this verdict."""
    return profile.rationale == "all" or scored.decision is not Decision.PASS


def check_note(
    request: EngineRequest, profile: SiteProfile, scored: Decided, transcript: str | None
) -> NoteCheck:
    """The verdict after the operator's typed note and the voice note's transcript, if any."""
    return weigh_note(
        scored,
        (request.note, transcript),
        (spec.name for spec in profile.defects),
        profile.note_disagreement,
    )


@dataclass(frozen=True)
class Measured:
    """What the runtime measured about one request's run."""

    prompt_tokens: int
    rationale_tokens: int
    timings_ms: Mapping[str, float]


def build_result(
    request: EngineRequest,
    profile: SiteProfile,
    chosen: Route,
    scored: Decided,
    rationale: str,
    transcript: str | None,
    model_name: str,
    measured: Measured,
    rationale_state: RationaleState = RationaleState.PRODUCED,
    note_disagrees: bool = False,
) -> EngineResult:
    """The verdict on `request`, with its defects read from the rationale."""
    rationale = rationale.strip()
    defects = find_defects(rationale, profile.defects) if scored.leaning is Decision.FAIL else []
    return EngineResult(
        request_id=request.request_id,
        verdict=scored.decision,
        confidence=scored.confidence,
        p_pass=scored.p_pass,
        rationale=rationale,
        rationale_state=rationale_state,
        transcript=transcript,
        note_disagrees=note_disagrees,
        defects=defects,
        model=model_name,
        adapter=chosen.adapter,
        adapter_version=chosen.version,
        adapter_fallback=chosen.fallback,
        prompt_version=PROMPT_VERSION,
        prompt_tokens=measured.prompt_tokens,
        rationale_tokens=measured.rationale_tokens,
        timings_ms=dict(measured.timings_ms),
    )
