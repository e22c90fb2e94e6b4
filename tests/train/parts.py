"""Synthetic reviewed inspections for the training tests: drawn plates, reviews in the store.

A PASS plate is a clean brushed rectangle; a FAIL plate carries a plain visual defect, a
dark 8-pixel scratch across it. Captures are one minute apart, so the time split is exact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
from numpy.typing import NDArray

from inspector.media import encode_jpeg
from inspector.protocol import Decision, ImagePart, InspectionRequest, VerdictMessage
from inspector.store import ReviewInput, Store, record_inspection, record_review, record_verdict

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SIDE = 224


def draw_plate(seed: int, defect: bool) -> NDArray[np.uint8]:
    """A 224×224 photo of a grey plate on a dark belt, scratched when `defect`."""
    rng = np.random.default_rng(seed)
    img = np.full((SIDE, SIDE, 3), 55, np.float32) + rng.normal(0, 4, (SIDE, SIDE, 3))
    dx, dy = (int(v) for v in rng.integers(-10, 11, size=2))
    cv2.rectangle(img, (40 + dx, 40 + dy), (184 + dx, 184 + dy), (180, 180, 185), -1)
    if defect:
        x0, y0 = 60 + dx + int(rng.integers(0, 30)), 60 + dy + int(rng.integers(0, 60))
        x1, y1 = x0 + 80 + int(rng.integers(0, 20)), y0 + int(rng.integers(-30, 31))
        cv2.line(img, (x0, y0), (x1, y1), (20, 20, 22), 8, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def label_for(index: int) -> str:
    """PASS and FAIL alternate, so every stretch of time holds both."""
    return "FAIL" if index % 2 else "PASS"


def add_reviewed(
    store: Store,
    site: str,
    count: int,
    *,
    labels: list[str] | None = None,
    start: datetime = START,
    seed: int = 0,
    model_verdict: str = "PASS",
) -> list[str]:
    """Record `count` inspections of drawn plates, a verdict and a review each; request ids."""
    ids = []
    with store.db.write() as session:
        for i in range(count):
            label = labels[i] if labels is not None else label_for(i)
            request = InspectionRequest(
                request_id=uuid.uuid4(),
                site=site,
                line="l1",
                station="s1",
                part_id=f"P-{i:04d}",
                captured_at=start + timedelta(minutes=i),
                images=[
                    ImagePart.from_bytes(
                        "image/jpeg", encode_jpeg(draw_plate(seed * 1000 + i, label == "FAIL"))
                    )
                ],
            )
            record_inspection(session, store.blobs, request)
            record_verdict(
                session,
                VerdictMessage(
                    request_id=request.request_id,
                    site=site,
                    line="l1",
                    station="s1",
                    part_id=request.part_id,
                    verdict=Decision(model_verdict),
                    confidence=0.6,
                    p_pass=0.6 if model_verdict == "PASS" else 0.4,
                    rationale="the plate looks even",
                    model="tiny",
                    adapter="none",
                    prompt_version="inspect-v1",
                    worker_id="w",
                    latency_ms=1.0,
                    decided_at=request.captured_at,
                ),
            )
            decision = "confirm" if label == model_verdict else "override"
            record_review(
                session,
                ReviewInput(
                    review_id=uuid.uuid4(),
                    request_id=request.request_id,
                    decision=decision,  # type: ignore[arg-type]
                    final_verdict=label,  # type: ignore[arg-type]
                    reviewer="qe-1",
                    comment="Defects: scratch (across the plate)." if label == "FAIL" else None,
                ),
            )
            ids.append(str(request.request_id))
    return ids
