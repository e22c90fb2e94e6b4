"""Note/photo disagreement in the review app: a flag that arrives with the rationale update
(the voice note's transcript disagrees) is stored, the queue's "Note disagrees" filter lists
the inspection, and its page and the API say so."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from inspector.protocol import RationaleState
from inspector.store import Batch, RationaleUpdate, Store
from tests.review.helpers import add_user, login, seed

SAYS = "The operator's note disagrees with the photo"


def test_a_transcript_that_disagrees_flags_the_verdict_for_the_queue_filter_page_and_api(
    client: TestClient, store: Store
) -> None:
    flagged, agreeing = seed(
        store, ["PASS", "PASS"], rationale="", rationale_state=RationaleState.PENDING
    )
    updates = [
        RationaleUpdate(
            request_id=rid,
            worker_id="w1",
            model="phi-4-mm",
            adapter="osaka-v1",
            prompt_version="v1",
            state=RationaleState.PRODUCED,
            rationale="clean surface",
            transcript=transcript,
            note_disagrees=rid == flagged,
        )
        for rid, transcript in ((flagged, "deep scratch on the flange"), (agreeing, "fine"))
    ]
    (written, _) = store.answer(Batch(rationales=updates)).rationales
    assert written is not None and written.note_disagrees
    add_user(store, "ana")
    login(client, "ana")

    page = client.get("/queue?tab=all&reviewed=any&note_disagrees=true").text
    assert "Note disagrees" in page
    assert f"/inspections/{flagged}" in page and f"/inspections/{agreeing}" not in page
    everything = client.get("/queue?tab=all&reviewed=any").text
    assert f"/inspections/{agreeing}" in everything
    # Each row of the list says whether its note disagrees, on the page and in the API.
    marked = re.findall(r'data-rid="([^"]+)".*?</tr>', everything, re.S)
    rows = dict(
        zip(marked, re.findall(r'data-rid="[^"]+"(.*?)</tr>', everything, re.S), strict=True)
    )
    assert 'class="note-flag"' in rows[flagged] and 'class="note-flag"' not in rows[agreeing]
    listed = client.get("/api/v1/queue", params={"tab": "all", "reviewed": "any"}).json()
    flags = {i["request_id"]: i["note_disagrees"] for i in listed["items"]}
    assert flags == {flagged: True, agreeing: False}

    assert SAYS in client.get(f"/inspections/{flagged}").text
    assert SAYS not in client.get(f"/inspections/{agreeing}").text
    assert client.get(f"/api/v1/inspections/{flagged}").json()["verdict"]["note_disagrees"]
    assert not client.get(f"/api/v1/inspections/{agreeing}").json()["verdict"]["note_disagrees"]
    # The export selects by the same filter (it joins the verdicts beside the flag's EXISTS).
    exported = client.get(
        "/api/v1/export",
        params={"tab": "all", "reviewed": "any", "note_disagrees": "true", "format": "jsonl"},
    )
    assert exported.status_code == 200, exported.text
    rows = [json.loads(line) for line in exported.text.splitlines() if line]
    assert [row["request_id"] for row in rows] == [flagged]
    assert rows[0]["note_disagrees"] is True
