"""`inspector train`: snapshot → LoRA training → candidate in the registry with its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from inspector.settings import Settings
from inspector.store import Store
from inspector.store.adapters import AdapterRecord, record_metrics, register_adapter
from inspector.store.datasets import SnapshotRecord
from inspector.train.dataset import build_snapshot
from inspector.train.evaluate import compare, examples, outcomes
from inspector.train.trainer import OnStep, TrainResult, train_adapter


@dataclass(frozen=True)
class Trained:
    """One finished training run."""

    snapshot: SnapshotRecord
    adapter: AdapterRecord
    result: TrainResult


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def run_training(
    store: Store,
    settings: Settings,
    site: str,
    actor: str,
    since: datetime | None = None,
    until: datetime | None = None,
    out: Path | None = None,
    on_step: OnStep | None = None,
) -> Trained:
    """Freeze a snapshot, train on its train split, score its holdout, register a candidate."""
    snapshot = build_snapshot(store, site, settings.train, actor, since=since, until=until)
    profile = settings.site(site)
    train = examples(store, snapshot.split("train"), site, settings.limits)
    holdout = examples(store, snapshot.split("holdout"), site, settings.limits)
    name = profile.adapter or site
    directory = out or settings.model.adapters_dir / name / f"snapshot-{snapshot.id}"
    card = {
        "site": site,
        "name": name,
        "snapshot": {
            "id": snapshot.id,
            "content_hash": snapshot.content_hash,
            "since": _iso(snapshot.since),
            "until": _iso(snapshot.until),
        },
        "counts": snapshot.counts,
        "model": str(settings.model.path),
        "trained_by": actor,
    }
    result = train_adapter(
        settings.model,
        profile,
        [e.request for e in train],
        [e.item.label for e in train],
        settings.train,
        directory,
        card,
        holdout=[e.request for e in holdout],
        on_step=on_step,
    )
    labels = [e.item.label for e in holdout]
    trained = outcomes(labels, result.holdout_trained)
    base = outcomes(labels, result.holdout_base)
    adapters_dir = settings.model.adapters_dir
    path = directory.resolve()
    try:
        stored_path = str(path.relative_to(adapters_dir.resolve()))
    except ValueError:
        stored_path = str(path)
    with store.db.write() as session:
        record = register_adapter(
            session,
            site=site,
            name=name,
            path=stored_path,
            sha256=result.sha256,
            base_model=result.base_model,
            actor=actor,
            snapshot_id=snapshot.id,
            card={**card, "epoch_losses": result.epoch_losses, "adapter_sha256": result.sha256},
        )
        # The run scores the holdout with and without the new LoRA on the served base. A
        # site that serves an adapter already needs `adapters eval` against that one
        # before a promotion (the registry refuses a comparison against the wrong one).
        metrics = {
            "train": {
                "epoch_losses": result.epoch_losses,
                "steps": result.steps,
                "seconds": result.seconds,
            },
            "eval": compare(trained, base, profile, record.ref, None, snapshot).model_dump(
                mode="json"
            ),
        }
        record = record_metrics(session, record.ref, metrics, actor, "trained")
    return Trained(snapshot, record, result)
