"""Evaluate an adapter on its snapshot's holdout beside what the site serves now.

Both run through the serving engine (same prompt, media embedding, adapter loading and
verdict scoring as the workers), so the figures are the ones the line would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspector.engine.types import EngineRequest, InferenceEngine
from inspector.errors import Code, DatasetRefused, RegistryRefused
from inspector.media import decode_audio, decode_image
from inspector.protocol import utcnow
from inspector.settings import LimitSettings, Settings, SiteProfile
from inspector.store import Store
from inspector.store.adapters import AdapterRecord, active_adapter, find_adapter, record_metrics
from inspector.store.datasets import SnapshotItem, SnapshotRecord, load_snapshot
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


@dataclass(frozen=True)
class Evaluated:
    """One `adapters eval` run: the candidate, what it was compared with, the figures."""

    adapter: AdapterRecord
    baseline: AdapterRecord | None  # None: the base model, no site adapter
    evaluation: dict[str, Any]


def evaluate_adapter(
    store: Store, settings: Settings, ref: str, actor: str, engine: InferenceEngine | None = None
) -> Evaluated:
    """Score `ref` and the site's active adapter (or the base) on `ref`'s snapshot holdout.

    Both are loaded the way a worker loads them (sha256 checked), one after the other, for
    the site itself, so prompt, threshold and scoring are the site's. The figures are stored
    with the adapter, which is what a promotion is judged on.
    """
    with store.db.read() as session:
        adapter = find_adapter(session, ref)
        if adapter.snapshot_id is None:
            raise RegistryRefused(
                Code.ADAPTER_NOT_FOUND,
                f"{adapter.ref} records no dataset snapshot, so it has no holdout to be "
                "evaluated on; register adapters through `inspector train`",
            )
        snapshot = load_snapshot(session, adapter.snapshot_id)
        active = active_adapter(session, adapter.site)
    baseline = active if active is not None and active.id != adapter.id else None
    holdout = examples(store, snapshot.split("holdout"), adapter.site, settings.limits)
    if engine is None:
        from inspector.engine import load_engine

        engine = load_engine(settings.model, settings.sites)
    adapters_dir = settings.model.adapters_dir
    site = adapter.site

    def served(record: AdapterRecord | None) -> list[Scored]:
        if record is None:
            engine.clear_site_adapter(site)
        else:
            engine.load_site_adapter(
                site, record.name, record.version, str(record.file(adapters_dir)), record.sha256
            )
        return score(engine, holdout, None, settings.train.batch_size)

    evaluation = compare(
        served(adapter), served(baseline), settings.site(site), adapter.ref, baseline, snapshot
    )
    with store.db.write() as session:
        current = find_adapter(session, adapter.ref)
        metrics = {**current.metrics, "eval": evaluation}
        adapter = record_metrics(session, adapter.ref, metrics, actor, "evaluated")
    return Evaluated(adapter, baseline, evaluation)
