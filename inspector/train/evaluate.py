"""Evaluate an adapter on its snapshot's holdout beside what the site serves now.

Both run through the serving engine (same prompt, media embedding and verdict scoring as
the workers), so the figures are the ones the line would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.engine.types import EngineRequest, InferenceEngine
from inspector.errors import Code, DatasetRefused
from inspector.media import decode_audio, decode_image
from inspector.protocol import utcnow
from inspector.settings import LimitSettings, SiteProfile
from inspector.store import Store
from inspector.store.adapters import AdapterRecord
from inspector.store.datasets import SnapshotItem, SnapshotRecord
from inspector.train.metrics import Scored, holdout_metrics, threshold_for_escape_target
from inspector.train.registry import baseline_name


@dataclass(frozen=True)
class Example:
    """One snapshot item ready for the engine: decoded media, label and target."""

    item: SnapshotItem
    request: EngineRequest


def examples(
    store: Store, items: Sequence[SnapshotItem], site: str, limits: LimitSettings
) -> list[Example]:
    """Decode the media of snapshot items from the blob store into engine requests."""
    out = []
    for item in items:
        images = []
        audio = None
        for ref in item.media:
            data = store.blobs.get(ref.sha256)
            if ref.role == "image":
                images.append(decode_image(data, ref.content_type, limits).pixels)
            else:
                audio = decode_audio(data, ref.content_type, limits).samples
        request = EngineRequest(item.request_id, site, images, audio, item.note)
        out.append(Example(item, request))
    return out


def adapter_file(record: AdapterRecord, adapters_dir: Path) -> Path:
    """Where an adapter's file lies: registry paths are relative to `model.adapters_dir`."""
    path = Path(record.path)
    return path if path.is_absolute() else adapters_dir / path


def score(
    engine: InferenceEngine, batch: Sequence[Example], adapter: str | None, batch_size: int = 8
) -> list[Scored]:
    """P(PASS) of every example with `adapter` (None: no site adapter), as Scored rows."""
    rows: list[Scored] = []
    for start in range(0, len(batch), batch_size):
        chunk = batch[start : start + batch_size]
        requests = [
            EngineRequest(
                e.request.request_id,
                e.request.site,
                e.request.images,
                e.request.audio,
                e.request.note,
                adapter,
            )
            for e in chunk
        ]
        results = engine.infer(requests)
        rows.extend(Scored(e.item.label, r.p_pass) for e, r in zip(chunk, results, strict=True))
    return rows


def compare(
    candidate: Sequence[Scored],
    baseline: Sequence[Scored],
    profile: SiteProfile,
    candidate_ref: str,
    active: AdapterRecord | None,
    snapshot: SnapshotRecord,
) -> dict[str, Any]:
    """The evaluation record stored with the candidate and shown by `adapters eval`."""
    if not candidate:
        raise DatasetRefused(
            Code.TRAIN_CLASS_MISSING, f"snapshot {snapshot.id} has no holdout to evaluate on"
        )
    return {
        "adapter": candidate_ref,
        "snapshot_id": snapshot.id,
        "content_hash": snapshot.content_hash,
        "holdout": len(candidate),
        "site_threshold": profile.threshold,
        "candidate": holdout_metrics(candidate, profile.threshold),
        "candidate_for_target": threshold_for_escape_target(candidate, profile.escape_target),
        "baseline": {
            "adapter": baseline_name(active),
            "metrics": holdout_metrics(baseline, profile.threshold),
            "for_target": threshold_for_escape_target(baseline, profile.escape_target),
        },
        "majority_accuracy": _majority(candidate),
        "evaluated_at": utcnow().isoformat(),
    }


def _majority(rows: Sequence[Scored]) -> float:
    fails = sum(1 for r in rows if r.label == "FAIL")
    return max(fails, len(rows) - fails) / len(rows)
