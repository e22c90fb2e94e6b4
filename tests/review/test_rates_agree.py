"""One definition per rate: the numbers page, `adapters eval` and the promotion gate agree.

One hand-made confusion matrix of 13 reviewed parts (the site threshold is 0.7):

                 decided PASS   decided FAIL   REVIEW (leans PASS)
    good part         6              1               1
    defective         1              3               1

- escapes per defective part: 1 of 5 defective parts decided PASS = 20.0 %
- escapes per shipped part: 1 of the 7 parts decided PASS = 142,857 ppm
- false rejects per good part: 1 of 8 good parts = 12.5 %
- REVIEW share: 2 of 13 = 15.4 %
- verdict accuracy: 9 right of the 11 not sent to REVIEW = 81.8 %
- lean accuracy: 10 of 13 lean to their label (both REVIEWs lean PASS) = 76.9 %
- majority class: 8 good of 13 = 61.5 %
"""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from inspector.cli import app
from inspector.quality import Outcome
from inspector.settings import SiteProfile
from inspector.store import Store
from inspector.store.adapters import record_metrics, register_adapter
from inspector.store.datasets import SnapshotRecord
from inspector.train.cli import eval_tables
from inspector.train.evaluate import compare
from tests.review.helpers import add_user, csrf_of, login, seed

GOOD = ["PASS"] * 6 + ["FAIL", "REVIEW"]
DEFECTIVE = ["PASS", "FAIL", "FAIL", "FAIL", "REVIEW"]
P_PASS = {"PASS": 0.95, "FAIL": 0.1, "REVIEW": 0.55}  # what `seed` stores with each verdict
FIGURES = {
    "escapes / defective part": "20.0 %",
    "escapes / shipped part": "142,857 ppm",
    "false rejects / good part": "12.5 %",
    "REVIEW share": "15.4 %",
    "verdict accuracy": "81.8 %",
    "lean accuracy": "76.9 %",
    "majority class": "61.5 %",
}
PAGE_IDS = {
    "escapes / defective part": "total-escapes_per_defective_part",
    "escapes / shipped part": "total-escapes_per_shipped_part_ppm",
    "false rejects / good part": "total-false_rejects_per_good_part",
    "REVIEW share": "total-review_share",
    "verdict accuracy": "total-verdict_accuracy",
    "lean accuracy": "total-lean_accuracy",
    "majority class": "total-majority_share",
}
SNAPSHOT = SnapshotRecord(1, "osaka", "0" * 64, None, None, 0.25, {}, "qe", None, ())  # type: ignore[arg-type]


def _review_by_hand(client: TestClient, store: Store) -> None:
    rids = seed(store, GOOD + DEFECTIVE)
    add_user(store, "ana")
    login(client, "ana")
    headers = {"X-CSRF-Token": csrf_of(client)}
    labels = ["PASS"] * len(GOOD) + ["FAIL"] * len(DEFECTIVE)
    for rid, label in zip(rids, labels, strict=True):
        body = {"decision": "override", "final_verdict": label}
        if label == "FAIL":
            body["defect_type"] = "dent"
        r = client.post(f"/api/v1/inspections/{rid}/reviews", json=body, headers=headers)
        assert r.status_code == 201, r.text


def _cell(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}">') + len(f'id="{element_id}">')
    return page[start : page.index("<", start)]


def test_every_rate_reads_the_same_on_the_numbers_page_in_adapters_eval_and_the_gate(
    client: TestClient, store: Store, sqlite_url: str, unique: str
) -> None:
    _review_by_hand(client, store)
    page = client.get("/stats", params={"site": "osaka"}).text
    assert {name: _cell(page, PAGE_IDS[name]) for name in FIGURES} == FIGURES

    # The same matrix as a holdout, scored the way `adapters eval` and training store it.
    holdout = [Outcome("PASS", P_PASS[v]) for v in GOOD]
    holdout += [Outcome("FAIL", P_PASS[v]) for v in DEFECTIVE]
    clean = [Outcome("PASS", 0.95)] * 8 + [Outcome("FAIL", 0.1)] * 5
    evaluation = compare(holdout, clean, SiteProfile(threshold=0.7), f"{unique}@1", None, SNAPSHOT)
    shown = io.StringIO()
    out = Console(file=shown, width=200)
    for table in eval_tables(evaluation):
        out.print(table)
    lines = shown.getvalue().splitlines()
    for name, figure in FIGURES.items():
        row = next(line for line in lines if f" {name} " in line)
        assert row.split("│")[2].strip() == figure, row  # the candidate's column

    # The gate reads the stored evaluation and says the candidate's figure the same way.
    gated = Store(sqlite_url, Path(sqlite_url.removeprefix("sqlite:///")).parent / "blobs")
    gated.upgrade()
    try:
        with gated.db.write() as session:
            row = register_adapter(
                session,
                site=unique,
                name=unique,
                path="x",
                sha256="a" * 64,
                base_model="b" * 64,
                actor="qe",
            )
            record_metrics(session, row.ref, {"eval": evaluation.model_dump(mode="json")}, "qe")
    finally:
        gated.close()
    env = {"INSPECTOR_STORE__URL": sqlite_url}
    refused = CliRunner().invoke(app, ["adapters", "promote", f"{unique}@1"], env=env)
    assert refused.exit_code == 1
    flat = " ".join(refused.output.split())
    assert f"{unique}@1 lets 20.0 % of the defective parts pass on its holdout, base 0.0 %" in flat
    listed = CliRunner().invoke(app, ["adapters", "list", "--site", unique], env=env)
    assert "20.0 %" in listed.output and "15.4 %" in listed.output and "81.8 %" in listed.output
