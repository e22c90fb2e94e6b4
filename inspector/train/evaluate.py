"""Evaluate an adapter on its snapshot's holdout beside what the site serves now.

Both run through the serving engine (same prompt, media embedding, adapter loading and
verdict scoring as the workers), so the figures are the ones the line would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inspector.engine.types import EngineRequest, InferenceEngine
from inspector.errors import Code, DatasetRefused, RegistryRefused
from inspector.media import decode_audio, decode_image
from inspector.protocol import utcnow
from inspector.quality import (
    Baseline,
    Evaluation,
    Outcome,
    holdout_metrics,
    threshold_for_escape_target,
)
from inspector.settings import LimitSettings, Settings, SiteProfile
from inspector.store import Store
from inspector.store.adapters import AdapterRecord, active_adapter, find_adapter, record_metrics
from inspector.store.datasets import SnapshotItem, SnapshotRecord, load_snapshot
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
) -> list[Outcome]:
    """P(PASS) of every example with `adapter` (None: no site adapter), with its label."""
    rows: list[Outcome] = []
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
        rows.extend(outcomes([e.item.label for e in chunk], [r.p_pass for r in results]))
    return rows


def outcomes(labels: Sequence[str], p_pass: Sequence[float]) -> list[Outcome]:
    """Holdout outcomes from reviewed labels and the model's P(PASS), in order."""
    return [
        Outcome("PASS" if label == "PASS" else "FAIL", p)
        for label, p in zip(labels, p_pass, strict=True)
    ]


def compare(
    candidate: Sequence[Outcome],
    baseline: Sequence[Outcome],
    profile: SiteProfile,
    candidate_ref: str,
    active: AdapterRecord | None,
    snapshot: SnapshotRecord,
) -> Evaluation:
    """The evaluation stored with the candidate, shown by `adapters eval`, judged by the gate."""
    if not candidate:
        raise DatasetRefused(
            Code.TRAIN_CLASS_MISSING, f"snapshot {snapshot.id} has no holdout to evaluate on"
        )
    return Evaluation(
        adapter=candidate_ref,
        snapshot_id=snapshot.id,
        content_hash=snapshot.content_hash,
        holdout=len(candidate),
        site_threshold=profile.threshold,
        escape_target=profile.escape_target,
        candidate=holdout_metrics(candidate, profile.threshold),
        candidate_for_target=threshold_for_escape_target(candidate, profile.escape_target),
        baseline=Baseline(
            adapter=baseline_name(active),
            metrics=holdout_metrics(baseline, profile.threshold),
            for_target=threshold_for_escape_target(baseline, profile.escape_target),
        ),
        evaluated_at=utcnow(),
    )


@dataclass(frozen=True)
class Evaluated:
    """One `adapters eval` run: the candidate, what it was compared with, the figures."""

    adapter: AdapterRecord
    baseline: AdapterRecord | None  # None: the base model, no site adapter
    evaluation: Evaluation


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

    def served(record: AdapterRecord | None) -> list[Outcome]:
        if record is None:
            engine.clear_site_adapter(site)
        else:
            engine.load_site_adapter(site, record.adapter, str(record.file(adapters_dir)))
        return score(engine, holdout, None, settings.train.batch_size)

    evaluation = compare(
        served(adapter), served(baseline), settings.site(site), adapter.ref, baseline, snapshot
    )
    with store.db.write() as session:
        current = find_adapter(session, adapter.ref)
        metrics = {**current.metrics, "eval": evaluation.model_dump(mode="json")}
        adapter = record_metrics(session, adapter.ref, metrics, actor, "evaluated")
    return Evaluated(adapter, baseline, evaluation)
