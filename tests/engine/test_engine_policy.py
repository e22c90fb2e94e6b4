"""The torch-free policy: adapter routing, the decision from P(PASS), defects, results."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inspector.engine import PROMPT_VERSION, EngineRequest, shape_bucket
from inspector.engine.policy import (
    Measured,
    Route,
    Served,
    build_result,
    find_defects,
    route,
    site_profile,
)
from inspector.quality import BASE, AdapterRef, Decision, decide
from inspector.settings import DefectSpec, SiteProfile
from tests.engine.media import photo

PROFILE = SiteProfile(
    part="brake caliper",
    defects=(
        DefectSpec(name="scratch", description="a line in the coating"),
        DefectSpec(name="porosity", description="pin holes in the casting"),
    ),
    threshold=0.8,
)


def ask(adapter: str | None = None) -> EngineRequest:
    return EngineRequest("p1", "line-a", [photo(8, 8, 1)], None, None, adapter)


def test_defects_are_read_from_the_rationale_with_where() -> None:
    found = find_defects(
        "scratch (left edge) and some POROSITY; no scratches elsewhere", PROFILE.defects
    )
    assert [(d.type, d.where) for d in found] == [("scratch", "left edge"), ("porosity", None)]


def test_defect_names_only_match_whole_words() -> None:
    assert find_defects("scratches and microporosity-like marks", PROFILE.defects) == []


@pytest.mark.parametrize(
    ("p_pass", "decision", "leaning"),
    [
        (0.95, Decision.PASS, Decision.PASS),
        (0.05, Decision.FAIL, Decision.FAIL),
        (0.7, Decision.REVIEW, Decision.PASS),
        (0.3, Decision.REVIEW, Decision.FAIL),
        (0.8, Decision.PASS, Decision.PASS),  # at the threshold counts as sure enough
    ],
)
def test_decision_follows_the_larger_probability_and_the_site_threshold(
    p_pass: float, decision: Decision, leaning: Decision
) -> None:
    scored = decide(p_pass, PROFILE.threshold)
    assert (scored.decision, scored.leaning) == (decision, leaning)
    assert scored.confidence == pytest.approx(max(p_pass, 1 - p_pass))


def test_requests_route_to_the_sites_served_version_and_say_when_they_fall_back() -> None:
    served = Served(AdapterRef("plant-a", 3, "a" * 64), "plant-a_v3")
    plant_a = Route("plant-a", fallback=False, version=3, key="plant-a_v3")
    # A site with no active adapter runs on the base; one with an adapter runs its version.
    base = Route(BASE, fallback=False, key="vision")
    assert route(ask(), set(), None) == base
    # The base has one name; requests naming its older one, "vision", get it too.
    assert route(ask(BASE), set(), served) == base == route(ask("vision"), set(), served)
    assert route(ask(), set(), served) == plant_a and plant_a.handle == "plant-a_v3"
    assert route(ask("plant-a"), set(), served) == plant_a
    # An adapter attached by name serves the requests naming it.
    assert route(ask("plant-b"), {"plant-b"}, served) == Route("plant-b", fallback=False)
    assert Route("plant-b", fallback=False).handle == "plant-b"
    # A name not attached falls back to what the site serves, and says so.
    assert route(ask("plant-c"), {"plant-b"}, served) == Route(
        "plant-a", fallback=True, version=3, key="plant-a_v3"
    )
    assert route(ask("plant-c"), set(), None) == Route(BASE, fallback=True, key="vision")


def test_unknown_site_uses_the_default_profile() -> None:
    sites = {"default": PROFILE}
    assert site_profile(sites, "elsewhere") is PROFILE
    assert site_profile({}, "elsewhere") == SiteProfile()


def test_result_lists_defects_only_when_leaning_fail() -> None:
    rationale = " scratch (left edge), otherwise clean "
    measured = Measured(prompt_tokens=10, rationale_tokens=4, timings_ms={"prefill": 1.0})
    chosen = Route(BASE, fallback=False, key="vision")
    failed = build_result(
        ask(), PROFILE, chosen, decide(0.1, 0.8), rationale, None, "phi", measured
    )
    passed = build_result(
        ask(), PROFILE, chosen, decide(0.9, 0.8), rationale, None, "phi", measured
    )
    assert [(d.type, d.where) for d in failed.defects] == [("scratch", "left edge")]
    assert passed.defects == []
    assert failed.rationale == "scratch (left edge), otherwise clean"
    assert (failed.model, failed.adapter, failed.prompt_version) == (
        "phi",
        BASE,
        PROMPT_VERSION,
    )
    assert failed.timings_ms == {"prefill": 1.0}


def test_shape_buckets_count_448_pixel_crops() -> None:
    assert shape_bucket([(640, 480), (448, 448), (449, 10)]) == ((2, 2), (1, 1), (2, 1))


def test_policy_and_front_door_import_without_torch() -> None:
    code = (
        "import sys; import inspector.engine, inspector.engine.policy, inspector.engine.shapes; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
