"""The review app in a real headless Chromium: keyboard review, marks, numbers, export, safety."""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

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

    def make(width: int = 1280, height: int = 900) -> Any:
        context = chromium.new_context(viewport={"width": width, "height": height})
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
    live: tuple[Store, str], new_page: Any, unique: str
) -> None:
    store, base = live
    # P(PASS) spread around the middle: the most uncertain (nearest 0.5) come first.
    p_pass = [0.3 + 0.018 * n for n in range(22)]
    seed(store, ["REVIEW"] * 22, line=unique, p_pass=p_pass)
    add_user(store, "ana")
    add_user(store, "bo")
    page = new_page(1280, 720)
    keyboard_login(page, base, "ana", f"/queue?line={unique}")
    assert review_count(page) == 22
    first_row = page.locator("#queue tbody tr").first.inner_text()
    assert "P-0011" in first_row and "REVIEW → FAIL 0.50" in first_row  # P(PASS) 0.498
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.locator("#photos img").first.wait_for()
    assert page.locator("#progress").inner_text().startswith("1 of 22")

    started = time.monotonic()
    seen = []
    for n in range(20):
        seen.append(page.locator("#detail").get_attribute("data-request-id"))
        if n % 4 == 3:  # every fourth a FAIL with the first defect type of the catalogue
            page.keyboard.press("f")
            page.keyboard.press("1")
            with page.expect_navigation():
                page.keyboard.press("Enter")
        else:
            with page.expect_navigation():
                page.keyboard.press("p")
        toast = page.locator("#toast")
        expect(toast).to_contain_text("PASS" if n % 4 != 3 else "FAIL · scratch")
        assert inside_viewport(page, "#photos img")
    took = time.monotonic() - started
    print(f"\n20 inspections answered with the keyboard in {took:.1f} s, {took / 20:.2f} s each")
    assert len(set(seen)) == 20
    page.goto(f"{base}/queue?line={unique}")
    assert review_count(page) == 2

    # u on the queue of items reviewed by me withdraws the first answer: back in the queue,
    # and its row no longer shows an answer.
    page.goto(f"{base}/queue?line={unique}&reviewed=yes")
    withdrawn = page.locator("#queue tbody tr").first.get_attribute("data-rid")
    assert page.locator(f'tr[data-rid="{withdrawn}"] .answer').inner_text().startswith("PASS")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert review_count(page) == 3
    page.goto(f"{base}/queue?line={unique}&reviewed=any&tab=all")
    assert page.locator(f'tr[data-rid="{withdrawn}"] .answer').inner_text().strip() == ""
    page.goto(f"{base}/inspections/{withdrawn}?reviewed=any")
    assert "withdrew" in page.locator("#history tbody tr").first.inner_text()

    other = new_page()
    keyboard_login(other, base, "bo", f"/queue?line={unique}")
    assert review_count(other) == 22


def inside_viewport(page: Any, selector: str) -> bool:
    """Whether the element's box lies wholly inside the viewport (no scrolling needed)."""
    box = page.locator(selector).first.bounding_box()
    view = page.viewport_size
    assert box is not None, f"{selector} is not displayed"
    return bool(
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= view["width"]
        and box["y"] + box["height"] <= view["height"]
    )


DECISION_PARTS = (
    "#photos img",
    "#model-verdict",
    "#leaning",
    "#p-pass",
    "#rationale",
    "#note",
    "#transcript",
    "#decision-keys",
    "#progress",
)
SCREENSHOTS = Path("var/screenshots")


def test_the_decision_fits_1280_by_720_and_the_screenshots_show_it(
    live: tuple[Store, str], new_page: Any, tmp_path: Path
) -> None:
    store, base = live
    long = "The weld seam at the left edge shows a thin bright line. " * 12
    rids = seed(
        store,
        ["REVIEW", "REVIEW", "PASS", "FAIL"],
        p_pass=[0.42, 0.6, 0.97, 0.05],
        rationale=long,
        note="operator: small mark near the hole, looks like a scratch, please check",
        transcript="small mark near the hole looks like a scratch please check",
    )
    add_user(store, "ana")
    page = new_page(1280, 720)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    keyboard_login(page, base, "ana", "/queue")
    row = page.locator(f'tr[data-rid="{rids[0]}"] .model').inner_text()
    assert row.split() == ["REVIEW", "→", "FAIL", "0.42"]
    queue_shot = tmp_path / "queue-1280x720.png"
    page.keyboard.press("x")
    page.screenshot(path=str(queue_shot))

    page.goto(f"{base}/inspections/{rids[0]}")
    page.locator("#photos img").first.wait_for()
    expect(page.locator("#photos img").first).to_have_js_property("complete", True)
    assert page.locator("#model-verdict").inner_text().split()[:5] == [
        "REVIEW",
        "→",
        "FAIL",
        "P(PASS)",
        "0.42",
    ]
    # A REVIEW verdict offers no "confirm": only an explicit PASS or FAIL.
    assert page.locator("#form-confirm").count() == 0
    outside = [s for s in DECISION_PARTS if not inside_viewport(page, s)]
    assert outside == []
    detail_shot = tmp_path / "detail-1280x720.png"
    page.screenshot(path=str(detail_shot))

    page.keyboard.press("f")
    expect(page.locator("#form-fail")).to_be_visible()
    assert page.evaluate("window.scrollY") == 0
    assert inside_viewport(page, "#photos img") and inside_viewport(page, "#form-fail")
    fail_shot = tmp_path / "detail-fail-1280x720.png"
    page.screenshot(path=str(fail_shot))

    # The model's own FAIL can be confirmed, and the button says what it records.
    page.goto(f"{base}/inspections/{rids[3]}")
    expect(page.locator("#form-confirm button")).to_contain_text("Confirm FAIL · dent")
    assert missing == []  # no favicon.ico 404, nor any other
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in (queue_shot, detail_shot, fail_shot):
        shutil.copy(shot, SCREENSHOTS / shot.name)
        print(f"\nscreenshot: {SCREENSHOTS / shot.name}")


def test_bulk_answers_name_what_they_record_ask_once_and_show_in_the_history(
    live: tuple[Store, str], new_page: Any, unique: str
) -> None:
    store, base = live
    rids = seed(store, ["REVIEW"] * 4, line=unique, p_pass=[0.45, 0.46, 0.47, 0.48])
    add_user(store, "ana")
    page = new_page()
    keyboard_login(page, base, "ana", f"/queue?line={unique}")
    expect(page.locator("#bulk-pass")).to_be_disabled()
    for key in ("x", "j", "x", "j", "x"):
        page.keyboard.press(key)
    expect(page.locator("#bulk-pass")).to_contain_text("Mark 3 selected PASS")
    page.keyboard.press("P")
    expect(page.locator("#bulk-question")).to_have_text("Record PASS for 3 selected inspections?")
    page.keyboard.press("Escape")  # asked, and declined: nothing recorded
    expect(page.locator("#bulk-ask")).to_be_hidden()
    assert review_count(page) == 4
    page.keyboard.press("F")
    expect(page.locator("#bulk-question")).to_have_text(
        "Record FAIL · scratch for 3 selected inspections?"
    )
    page.locator("#bulk-defect-type").select_option("dent")
    expect(page.locator("#bulk-question")).to_contain_text("FAIL · dent for 3")
    with page.expect_navigation():
        page.click("#bulk-record")
    expect(page.locator("#toast")).to_have_text("Recorded FAIL for 3 inspections")
    assert review_count(page) == 1
    # Most uncertain first: the three selected are the last three seeded (P(PASS) nearest ½).
    page.goto(f"{base}/inspections/{rids[3]}?reviewed=any")
    entry = page.locator("#history tbody tr").first.inner_text().split()
    assert entry[2:] == ["ana", "answer", "FAIL", "dent", "bulk"]


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
