"""Note/photo disagreement through the real broker with the tiny model: the flag is decided
before the verdict is published, "review" sites get REVIEW, the queue filter finds them, and
spoken notes (espeak-ng, English and Japanese) go through as voice notes.

The tiny model's transcripts are noise, so the flag is checked here with typed notes; the
rule itself is measured on the spoken notes' reference texts (tests/quality).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspector.engine.types import InferenceEngine
from inspector.protocol import AudioPart, InspectionRequest, VerdictMessage
from inspector.quality import Decision, leaning
from inspector.quality.notes import disagrees, note_polarity
from inspector.settings import ModelSettings, SiteProfile
from inspector.store import Store
from inspector.store.filters import VerdictFilter
from inspector.store.models import Inspection
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.notes import ENGLISH, JAPANESE, SpokenNote
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 120.0
# One note of each polarity: whichever way the tiny model leans, exactly one disagrees.
DEFECT_NOTE = "deep scratch on the flange"
FINE_NOTE = "looks fine, no defects"
# This module's sites (the engine that knows their profiles is loaded once for the module).
FLAG_SITE = f"flag-{uuid.uuid4().hex[:8]}"
REVIEW_SITE = f"review-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sites_engine(tiny_model_dir: Path) -> InferenceEngine:
    """The tiny engine with a "flag" and a "review" site; threshold 0: PASS/FAIL by leaning."""
    from inspector.engine import load_engine

    sites = {
        FLAG_SITE: SiteProfile(threshold=0.0, note_disagreement="flag"),
        REVIEW_SITE: SiteProfile(threshold=0.0, note_disagreement="review"),
    }
    model = ModelSettings(
        path=tiny_model_dir,
        device="cpu",
        max_rationale_tokens=4,
        transcribe=True,
        max_transcript_tokens=8,
    )
    return load_engine(model, sites)


@pytest.fixture
def observers(broker: tuple[str, int]) -> Iterator[dict[str, Observer]]:
    obs = {site: Observer(broker, site) for site in (FLAG_SITE, REVIEW_SITE)}
    yield obs
    for o in obs.values():
        o.close()


@pytest.fixture
def worker(
    start_worker: Callable[..., Worker],
    sites_engine: InferenceEngine,
    tmp_path: Path,
    sqlite_url: str,
    broker: tuple[str, int],
    unique: str,
    observers: dict[str, Observer],
) -> Worker:
    settings = make_settings(unique, sqlite_url, tmp_path, broker, sites=(FLAG_SITE, REVIEW_SITE))
    return start_worker(settings, sites_engine)


def _answers(observer: Observer, sent: list[InspectionRequest]) -> dict[str, VerdictMessage]:
    got = {str(v.request_id): v for v in observer.collect_verdicts(len(sent), TIMEOUT)}
    assert set(got) == {str(r.request_id) for r in sent}
    return got


def _flagged(store: Store) -> set[str]:
    with store.db.read() as s:
        flt = VerdictFilter(note_disagrees=True)
        return set(s.scalars(sa.select(Inspection.request_id).where(*flt.on_latest())))


def test_a_typed_note_that_contradicts_the_leaning_is_flagged_and_under_review_sent_to_review(
    worker: Worker, observers: dict[str, Observer]
) -> None:
    sent: dict[str, list[InspectionRequest]] = {}
    for site, obs in observers.items():
        sent[site] = [
            make_request(site=site, audio=None, note=note) for note in (DEFECT_NOTE, FINE_NOTE)
        ]
        for request in sent[site]:
            obs.publish(request)
    flagged_ids: set[str] = set()
    for site, obs in observers.items():
        answers = _answers(obs, sent[site])
        for request in sent[site]:
            verdict = answers[str(request.request_id)]
            lean = leaning(verdict.p_pass)
            expected = disagrees(note_polarity(request.note), lean)
            assert verdict.note_disagrees is expected, (site, request.note, verdict)
            if expected:
                flagged_ids.add(str(request.request_id))
            if expected and site == REVIEW_SITE:
                assert verdict.verdict is Decision.REVIEW  # the leaning stays in p_pass
            else:
                assert verdict.verdict is lean
    # The rationale update repeats the flag (a transcript could only add one).
    follow = observers[FLAG_SITE].rationales
    for rationale in (follow.get(timeout=TIMEOUT) for _ in sent[FLAG_SITE]):
        assert rationale.note_disagrees is (str(rationale.request_id) in flagged_ids)
    # One of the two notes disagrees at each site, whichever way the model leans.
    assert len(flagged_ids) == 2
    assert _flagged(worker.store) == flagged_ids


def _speak(note: SpokenNote) -> bytes:
    from inspector.demo.notes import to_note_wav

    voice = "en-us" if note.language == "en" else "ja"
    done = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", "150", note.to_speak],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return to_note_wav(done.stdout)


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (.ci/run installs it): no spoken notes to send",
)
def test_spoken_notes_in_english_and_japanese_are_accepted_and_transcribed_before_the_verdict(
    worker: Worker, observers: dict[str, Observer]
) -> None:
    notes = [ENGLISH[0], ENGLISH[12], JAPANESE[0], JAPANESE[12]]  # defect and fine of each
    obs = observers[REVIEW_SITE]
    sent = [
        make_request(
            site=REVIEW_SITE, note=None, audio=AudioPart.from_bytes("audio/wav", _speak(n))
        )
        for n in notes
    ]
    for request in sent:
        obs.publish(request)
    answers = _answers(obs, sent)
    assert obs.rejections.empty()
    for verdict in answers.values():
        # Under "review" the transcript is part of the verdict, not of the later update.
        assert verdict.transcript is not None
        expected = disagrees(note_polarity(verdict.transcript), leaning(verdict.p_pass))
        assert verdict.note_disagrees is expected
