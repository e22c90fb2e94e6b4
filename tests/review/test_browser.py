"""The review app in a real headless Chromium: keyboard review, marks, numbers, export, safety."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from inspector.review import create_app
from inspector.settings import Settings
from inspector.store import Store
from tests.fixtures.browser import LiveServer
from tests.fixtures.services import free_port
from tests.review.helpers import PASSWORD, SETTINGS, T0, add_user, seed

pytestmark = pytest.mark.browser


@pytest.fixture
def live(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Store, str]]:
    """The app on a fresh SQLite store, served on a spare port."""
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    server = LiveServer(create_app(Settings(**SETTINGS), store), free_port())
    server.start()
    yield store, server.url
    server.stop()
    store.close()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Any]:
    """Pages in fresh browser contexts (separate cookie jars), closed after the test."""
    contexts: list[Any] = []

    def make() -> Any:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
        return page

    yield make
    for context in contexts:
        context.close()


def keyboard_login(page: Any, base: str, name: str, path: str = "/queue") -> None:
    """Open a page, land on the login form, log in with the keyboard alone."""
    page.goto(base + path)
    assert "/login?next=" in page.url
    # The user name field has autofocus; Chromium applies it after the load event.
    page.wait_for_function("document.activeElement?.id === 'username'")
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/login" not in page.url


def review_count(page: Any) -> int:
    return int(page.locator("#tab-review .count").inner_text())


def test_twenty_inspections_reviewed_with_the_keyboard_alone(
    live: tuple[Store, str], new_page: Any, artifacts: Path, unique: str
) -> None:
    store, base = live
    seed(store, ["REVIEW"] * 22, line=unique)
    add_user(store, "ana")
    add_user(store, "bo")
    page = new_page()
    keyboard_login(page, base, "ana", f"/queue?line={unique}")
    assert review_count(page) == 22
    queue_shot = artifacts / "queue.png"
    page.screenshot(path=str(queue_shot), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.locator("#photos img").first.wait_for()
    detail_shot = artifacts / "detail.png"
    page.screenshot(path=str(detail_shot), full_page=True)
    print(f"\nscreenshots: {queue_shot} {detail_shot}")

    started = time.monotonic()
    seen = []
    for _ in range(20):
        seen.append(page.locator("#detail").get_attribute("data-request-id"))
        with page.expect_navigation():
            page.keyboard.press("y")
    took = time.monotonic() - started
    print(f"20 inspections confirmed with the keyboard in {took:.1f} s")
    assert len(set(seen)) == 20
    page.goto(f"{base}/queue?line={unique}")
    assert review_count(page) == 2

    # u on the queue of items reviewed by me puts the first back
    page.goto(f"{base}/queue?line={unique}&reviewed=yes")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert review_count(page) == 3

    other = new_page()
    keyboard_login(other, base, "bo", f"/queue?line={unique}")
    assert review_count(other) == 22


def test_override_fail_by_digit_then_numbers_change_and_export_downloads(
    live: tuple[Store, str], new_page: Any, unique: str
) -> None:
    store, base = live
    rids = seed(store, ["PASS", "PASS", "REVIEW"], site="osaka", line=unique)
    add_user(store, "ana")
    page = new_page()
    keyboard_login(page, base, "ana", "/stats?site=osaka")
    assert page.locator("#total-reviewed").inner_text() == "0"
    page.goto(f"{base}/inspections/{rids[0]}?tab=audit")
    page.keyboard.press("f")
    page.keyboard.press("1")  # the first defect type of the catalogue: scratch
    page.keyboard.type("fine line by the hole")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/inspections/{rids[0]}?reviewed=any")
    history = page.locator("#history tbody tr").first.inner_text()
    assert "FAIL" in history and "scratch" in history and "fine line by the hole" in history

    page.goto(f"{base}/stats?site=osaka")
    assert page.locator("#total-reviewed").inner_text() == "1"
    assert page.locator("#total-escapes_per_defective_part").inner_text() == "100.0 %"
    assert page.locator("#confusion tbody tr").first.inner_text().split() == ["PASS", "0", "1"]

    page.goto(f"{base}/queue?tab=all&reviewed=any&line={unique}")
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert {r["review_verdict"] for r in rows} == {"FAIL", ""}


def test_script_rationale_and_formula_part_id_stay_inert(
    live: tuple[Store, str], new_page: Any
) -> None:
    store, base = live
    rationale = "<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>"
    part = "=cmd|' /C calc'!A0"
    (rid,) = seed(store, ["REVIEW"], part_id=part, rationale=rationale, note="<b>loud</b>")
    add_user(store, "ana")
    page = new_page()
    keyboard_login(page, base, "ana", f"/inspections/{rid}")
    assert page.locator("#rationale").inner_text() == rationale
    assert page.locator("#part-id").inner_text() == part
    assert page.locator("#note").inner_text() == "<b>loud</b>"
    assert page.evaluate("window.pwned") is None
    assert page.locator("#rationale img, #note b").count() == 0
    page.goto(f"{base}/queue")
    assert page.evaluate("window.pwned") is None
    exported = page.request.get(f"{base}/api/v1/export?format=csv&tab=all&reviewed=any").text()
    (row,) = list(csv.DictReader(io.StringIO(exported)))
    assert row["part_id"] == "'" + part
    later = T0 + timedelta(hours=1)
    (bidi,) = seed(store, ["REVIEW"], start=later, unchecked={"part_id": "P-\u202eLIAF\u202c"})
    page.goto(f"{base}/inspections/{bidi}")
    # Shown raw, the override would make the part id read "P-FAIL".
    assert page.locator("#part-id").inner_text() == "P-\\u202eLIAF\\u202c"
    page.goto(f"{base}/queue")
    assert "P-\\u202eLIAF\\u202c" in page.locator(f'tr[data-rid="{bidi}"] .part').inner_text()


def test_strangers_viewers_and_forged_forms_are_refused(
    live: tuple[Store, str], new_page: Any
) -> None:
    store, base = live
    (rid,) = seed(store, ["REVIEW"])
    add_user(store, "vi", role="viewer")
    add_user(store, "ana")
    stranger = new_page()
    stranger.goto(f"{base}/inspections/{rid}")
    assert "/login?next=" in stranger.url
    assert stranger.request.get(f"{base}/api/v1/queue").status == 401

    viewer = new_page()
    keyboard_login(viewer, base, "vi", f"/inspections/{rid}")
    assert viewer.locator("#form-confirm").count() == 0
    viewer.keyboard.press("y")  # nothing to submit: the page stays
    assert viewer.locator("#detail").get_attribute("data-request-id") == rid
    refused = viewer.request.post(
        f"{base}/api/v1/inspections/{rid}/reviews", data={"decision": "confirm"}
    )
    assert refused.status == 403

    reviewer = new_page()
    keyboard_login(reviewer, base, "ana", f"/inspections/{rid}")
    forged = reviewer.request.post(
        f"{base}/inspections/{rid}/review", form={"decision": "confirm"}, max_redirects=0
    )
    assert forged.status == 403
    assert "security token" in forged.text()
    reviewer.goto(f"{base}/inspections/{rid}?reviewed=any")
    assert "Not reviewed yet" in reviewer.locator("#history").inner_text()
