"""Golden parts in the store: marked only when reviewed, the reviewed answer frozen, one
reference P(PASS) per adapter version, every mark and unmark audited (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from inspector.cli import app
from inspector.errors import NotFound, NotReviewed
from inspector.protocol import InspectionRequest
from inspector.quality.decision import Decision
from inspector.quality.golden import GoldenOutcome, judge_golden
from inspector.store import ReviewInput, Store, record_inspection, record_review, record_verdict
from inspector.store.golden import (
    golden_cases,
    golden_of,
    list_golden,
    mark_golden,
    reference_p_pass,
    unmark_golden,
)
from inspector.store.models import GoldenAudit
from tests.core.helpers import make_request, verdict_for


def _reviewed(store: Store, final: str = "PASS") -> InspectionRequest:
    req = make_request(note="weld looks fine")
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(s, verdict_for(req, p_pass=0.2, adapter="osaka", adapter_version=3))
        record_review(
            s,
            ReviewInput(uuid.uuid4(), req.request_id, "override", final, "suzuki"),  # type: ignore[arg-type]
        )
    return req


def test_only_a_reviewed_inspection_can_be_marked_golden(store: Store) -> None:
    req = make_request()
    with store.db.write() as s:
        record_inspection(s, store.blobs, req)
        record_verdict(s, verdict_for(req))
    with pytest.raises(NotReviewed, match="review it first"), store.db.write() as s:
        mark_golden(s, req.request_id, "qe")
    with pytest.raises(NotFound), store.db.write() as s:
        mark_golden(s, uuid.uuid4(), "qe")


def test_marking_freezes_the_reviewed_answer_and_the_reviewed_verdicts_reference(
    store: Store,
) -> None:
    req = _reviewed(store, "PASS")
    with store.db.write() as s:
        view, created = mark_golden(s, req.request_id, "qe")
        assert created and view.expected is Decision.PASS and view.marked_by == "qe"
        _, again = mark_golden(s, req.request_id, "someone-else")
        assert not again
    with store.db.write() as s:
        # The reviewed verdict's own version has its reference; another version gets the
        # first answer it gives, and keeps it.
        (case,) = golden_cases(s, store.blobs)
        assert reference_p_pass(s, case.golden_id, "osaka", 3, 0.9, "canary:w1") == 0.2
        assert reference_p_pass(s, case.golden_id, "osaka", 4, 0.7, "canary:w1") == 0.7
        assert reference_p_pass(s, case.golden_id, "osaka", 4, 0.1, "canary:w2") == 0.7
    assert case.expected is Decision.PASS and case.request_id == str(req.request_id)
    sent = case.request
    assert (sent.site, sent.line, sent.station, sent.part_id, sent.note) == (
        req.site,
        req.line,
        req.station,
        req.part_id,
        req.note,
    )
    assert [i.sha256 for i in sent.images] == [i.sha256 for i in req.images]
    assert sent.audio is not None and req.audio is not None
    assert sent.audio.sha256 == req.audio.sha256


def test_unmarking_removes_the_part_and_both_are_audited(store: Store) -> None:
    req = _reviewed(store, "FAIL")
    with store.db.write() as s:
        mark_golden(s, req.request_id, "qe")
    with store.db.write() as s:
        assert unmark_golden(s, req.request_id, "lead")
        assert not unmark_golden(s, req.request_id, "lead")
    with store.db.read() as s:
        assert golden_of(s, req.request_id) is None and list_golden(s) == []
        audit = s.execute(
            sa.select(GoldenAudit.action, GoldenAudit.actor, GoldenAudit.expected).order_by(
                GoldenAudit.id
            )
        ).all()
    assert [tuple(row) for row in audit] == [("mark", "qe", "FAIL"), ("unmark", "lead", "FAIL")]


def test_an_answer_agrees_only_with_the_reviewed_leaning_and_the_reference_p_pass() -> None:
    assert judge_golden(Decision.PASS, 0.81, 0.80, 0.05).outcome is GoldenOutcome.AGREES
    assert judge_golden(Decision.PASS, 0.49, 0.50, 0.05).outcome is GoldenOutcome.LEANING
    assert judge_golden(Decision.PASS, 0.95, 0.80, 0.05).outcome is GoldenOutcome.DRIFT


def test_inspector_golden_marks_lists_and_unmarks(store: Store, tmp_path: Path) -> None:
    req = _reviewed(store, "PASS")
    env = {
        "INSPECTOR_STORE__URL": store.db.url,
        "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs"),
    }
    runner = CliRunner()
    marked = runner.invoke(
        app, ["golden", "mark", str(req.request_id), "--by", "qe", "--json"], env=env
    )
    assert marked.exit_code == 0, marked.output
    assert json.loads(marked.stdout)["golden"]["expected"] == "PASS"
    listed = runner.invoke(app, ["golden", "list", "--json"], env=env)
    assert [g["request_id"] for g in json.loads(listed.stdout)] == [str(req.request_id)]
    unmarked = runner.invoke(app, ["golden", "unmark", str(req.request_id), "--json"], env=env)
    assert json.loads(unmarked.stdout)["unmarked"] is True
