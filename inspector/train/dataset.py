"""Frozen dataset snapshots from a site's reviewed inspections.

The label of an inspection is its latest review's final verdict. The target text is the
verdict word, then the reviewer's comment, or the rationale the reviewer confirmed, so the
adapter learns to answer the way the prompt asks. The split is by time: the most recent
share of the snapshot is the holdout, so evaluation looks like the parts still to come.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inspector.errors import Code, DatasetRefused
from inspector.settings import TrainSettings
from inspector.store import Store
from inspector.store.datasets import (
    ItemInput,
    Reviewed,
    SnapshotRecord,
    load_snapshot,
    reviewed_inspections,
    save_snapshot,
)

LABELS = ("PASS", "FAIL")
SPLITS = ("train", "holdout")


def target_text(review: Reviewed) -> str:
    """What the model should write after the verdict primer for this review."""
    word = f" {review.final_verdict}"
    if review.comment and review.comment.strip():
        return f"{word}\n{review.comment.strip()}"
    if review.decision == "confirm" and review.verdict_rationale:
        return f"{word}\n{review.verdict_rationale.strip()}"
    if review.defect_type:
        return f"{word}\nDefects: {review.defect_type}."
    return word


@dataclass(frozen=True)
class Plan:
    """A snapshot before it is saved: its items, counts and content hash."""

    items: list[ItemInput]
    reviewed: list[Reviewed]
    counts: dict[str, Any]
    content_hash: str


def _counts(items: list[ItemInput]) -> dict[str, Any]:
    by_split: dict[str, dict[str, int]] = {
        split: {label: 0 for label in LABELS} for split in SPLITS
    }
    for item in items:
        by_split[item.split][item.label] += 1
    total = Counter(item.label for item in items)
    return {
        "total": len(items),
        "by_label": {label: total.get(label, 0) for label in LABELS},
        **by_split,
    }


def _hash(reviewed: list[Reviewed], items: list[ItemInput]) -> str:
    # What the model will see and be taught, in order: the request, its media, the label,
    # the target and the split. Equal hashes mean equal training data.
    body = [
        {
            "request_id": r.request_id,
            "media": [[m.role, m.sha256] for m in r.media],
            "note": r.note,
            "label": item.label,
            "target": item.target,
            "split": item.split,
        }
        for r, item in zip(reviewed, items, strict=True)
    ]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_snapshot(reviewed: list[Reviewed], settings: TrainSettings) -> Plan:
    """Split reviewed inspections (oldest first) by time; refuse too few or a missing class."""
    labels = Counter(r.final_verdict for r in reviewed)
    if len(reviewed) < settings.min_reviews:
        raise DatasetRefused(
            Code.TRAIN_TOO_FEW_REVIEWS,
            f"{len(reviewed)} reviewed inspection(s) ({_label_text(labels)}); training needs "
            f"at least {settings.min_reviews} (train.min_reviews): review more verdicts or "
            "widen --since/--until",
        )
    short = [label for label in LABELS if labels.get(label, 0) < settings.min_per_class]
    if short:
        raise DatasetRefused(
            Code.TRAIN_CLASS_MISSING,
            f"reviews hold {_label_text(labels)}; training needs at least "
            f"{settings.min_per_class} of each verdict (train.min_per_class), short of "
            f"{', '.join(short)}",
        )
    n_holdout = max(1, round(len(reviewed) * settings.holdout_share))
    cut = len(reviewed) - n_holdout
    items = [
        ItemInput(
            inspection_id=r.inspection_id,
            review_id=r.review_id,
            split="train" if i < cut else "holdout",
            label=r.final_verdict,
            target=target_text(r),
        )
        for i, r in enumerate(reviewed)
    ]
    counts = _counts(items)
    for split in SPLITS:
        missing = [label for label in LABELS if counts[split][label] == 0]
        if missing:
            raise DatasetRefused(
                Code.TRAIN_CLASS_MISSING,
                f"the {split} split (by capture time) has no {', '.join(missing)} review: "
                f"{_label_text(Counter({k: v for k, v in counts[split].items()}))}; review "
                "more recent and older inspections of both verdicts, or change "
                "train.holdout_share",
            )
    return Plan(items, reviewed, counts, _hash(reviewed, items))


def _label_text(labels: Counter[str]) -> str:
    return ", ".join(f"{labels.get(label, 0)} {label}" for label in LABELS)


def build_snapshot(
    store: Store,
    site: str,
    settings: TrainSettings,
    actor: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SnapshotRecord:
    """Freeze the site's reviewed inspections into a stored snapshot and return it."""
    with store.db.read() as session:
        reviewed = reviewed_inspections(session, site, since, until)
    plan = plan_snapshot(reviewed, settings)
    with store.db.write() as session:
        snapshot_id = save_snapshot(
            session,
            site=site,
            content_hash=plan.content_hash,
            since=since,
            until=until,
            holdout_share=settings.holdout_share,
            counts=plan.counts,
            items=plan.items,
            actor=actor,
        )
    return read_snapshot(store, snapshot_id)


def read_snapshot(store: Store, snapshot_id: int) -> SnapshotRecord:
    """A stored snapshot by id."""
    with store.db.read() as session:
        return load_snapshot(session, snapshot_id)


def balance_report(snapshot: SnapshotRecord) -> list[tuple[str, int, int, int, str]]:
    """Rows of (split, PASS, FAIL, total, FAIL share) for the class-balance table."""
    rows = []
    for split in (*SPLITS, "total"):
        counts = snapshot.counts["by_label"] if split == "total" else snapshot.counts[split]
        n_pass, n_fail = counts["PASS"], counts["FAIL"]
        total = n_pass + n_fail
        share = f"{n_fail / total:.0%}" if total else "-"
        rows.append((split, n_pass, n_fail, total, share))
    return rows
