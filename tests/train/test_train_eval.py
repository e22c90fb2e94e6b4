"""`inspector adapters eval`: a candidate beside what its site serves, on one holdout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from inspector.cli import app
from inspector.settings import TrainSettings
from inspector.store import Store
from inspector.store.adapters import AdapterStatus, find_adapter, register_adapter, set_status
from inspector.train.dataset import build_snapshot
from tests.fixtures.model import adapter_sha256
from tests.train.parts import add_reviewed

MakeAdapter = Callable[[str, int], Path]


def _register(store: Store, site: str, adapter: Path, snapshot_id: int) -> str:
    sha = adapter_sha256(adapter)
    with store.db.write() as session:
        row = register_adapter(
            session,
            site=site,
            name=site,
            path=str(adapter),
            sha256=sha,
            base_model="b" * 64,
            actor="trainer",
            snapshot_id=snapshot_id,
            metrics={"train": {"steps": 3}},
        )
    return row.ref


def test_eval_compares_the_candidate_with_the_active_adapter_on_the_holdout(
    sqlite_url: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    unique: str,
    make_site_adapter: MakeAdapter,
) -> None:
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    add_reviewed(store, unique, 16)
    snapshot = build_snapshot(
        store, unique, TrainSettings(min_reviews=12, min_per_class=4, holdout_share=0.25), "qe"
    )
    active = _register(store, unique, make_site_adapter("eval", 31), snapshot.id)
    with store.db.write() as session:
        set_status(session, active, AdapterStatus.ACTIVE, action="promote", actor="qe")
    candidate = _register(store, unique, make_site_adapter("eval", 32), snapshot.id)
    store.close()
    env = {
        "INSPECTOR_STORE__URL": sqlite_url,
        "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs"),
        "INSPECTOR_MODEL__PATH": str(tiny_model_dir),
        "INSPECTOR_MODEL__DEVICE": "cpu",
        "INSPECTOR_MODEL__MAX_RATIONALE_TOKENS": "2",
        f"INSPECTOR_SITES__{unique.upper()}__ESCAPE_TARGET": "0.0",
    }
    runner = CliRunner()
    result = runner.invoke(
        app, ["adapters", "eval", unique, "--version", "2", "--json", "--by", "qe"], env=env
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)  # progress bars of the model load go to stderr
    assert (evaluation["adapter"], evaluation["baseline"]["adapter"]) == (candidate, active)
    assert evaluation["snapshot_id"] == snapshot.id and evaluation["holdout"] == 4
    for figures in (evaluation["candidate"], evaluation["baseline"]["metrics"]):
        assert (figures["good_parts"], figures["defective_parts"]) == (2, 2)
        assert sum(sum(row.values()) for row in figures["confusion"]["cells"].values()) == 4
        for rate in (
            "lean_accuracy",
            "escapes_per_defective_part",
            "false_rejects_per_good_part",
            "review_share",
        ):
            assert 0.0 <= figures[rate] <= 1.0
        assert 0.0 <= figures["calibration_error"] <= 1.0
    # Two different random adapters score the same plates differently.
    assert evaluation["candidate"] != evaluation["baseline"]["metrics"]
    # With a zero escape target, the chosen threshold lets no FAIL plate pass.
    for target in (evaluation["candidate_for_target"], evaluation["baseline"]["for_target"]):
        assert target["target"] == 0.0 and target["escapes_per_defective_part"] == 0.0
        assert 0.5 <= target["threshold"] <= 1.0

    store = Store(sqlite_url, tmp_path / "blobs")
    try:
        with store.db.read() as session:
            stored = find_adapter(session, candidate)
    finally:
        store.close()
    # Stored with the adapter, beside its training figures: what a promotion is judged on.
    assert stored.metrics["eval"] == evaluation
    assert stored.metrics["train"] == {"steps": 3}

    table = runner.invoke(app, ["adapters", "eval", candidate], env=env)
    assert table.exit_code == 0, table.output
    for heading in (
        "lean accuracy",
        "escapes / defective part",
        "false rejects / good part",
        "REVIEW share",
        "calibration",
        "confusion",
    ):
        assert heading in table.output
    assert candidate in table.output and active in table.output
