"""Training end to end on the tiny model: reviews in the store → a candidate that learned."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.quality import stored_evaluation
from inspector.settings import ModelSettings, Settings, StoreSettings, TrainSettings
from inspector.store import Store
from inspector.store.adapters import find_adapter
from inspector.train.run import run_training
from inspector.train.trainer import file_sha256
from tests.train.parts import add_reviewed

# Holdout accuracy the trained adapter must reach above the majority class (0.5) and the
# untrained base on 24 held-out plates; 0.125 is three plates.
MARGIN = 0.125
# Ten passes over the 48 training plates reach 0.875 on the holdout with seed 0 (eight
# reach 0.79), well clear of the margin.
EPOCHS = 10


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_training_on_reviews_learns_the_scratch(
    sqlite_url: str, tmp_path: Path, tiny_model_dir: Path, unique: str
) -> None:
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    add_reviewed(store, unique, 72)
    settings = Settings(
        store=StoreSettings(url=sqlite_url, blob_dir=tmp_path / "blobs"),
        model=ModelSettings(path=tiny_model_dir, device="cpu", adapters_dir=tmp_path / "adapters"),
        # Checkpointing only trades compute for memory: the gradients, and so every epoch's
        # loss, are the same without it, and the tiny model needs no memory saved.
        train=TrainSettings(
            min_reviews=40,
            holdout_share=1 / 3,
            rank=32,
            epochs=EPOCHS,
            seed=0,
            gradient_checkpointing=False,
        ),
    )
    try:
        done = run_training(store, settings, unique, "trainer")
        with store.db.read() as session:
            stored = find_adapter(session, done.adapter.ref)
    finally:
        store.close()
    losses = done.result.epoch_losses
    assert len(losses) == EPOCHS and losses[-1] < losses[0] - 0.1, losses
    ev = stored_evaluation(stored.metrics)
    assert ev is not None and ev.holdout == 24 and ev.candidate.majority_share == 0.5
    trained, base = ev.candidate.lean_accuracy, ev.baseline.metrics.lean_accuracy
    assert trained is not None and base is not None
    assert trained >= 0.5 + MARGIN and trained >= base + MARGIN, (trained, base, losses)
    weights = tmp_path / "adapters" / stored.path / "adapter_model.safetensors"
    assert file_sha256(weights) == stored.sha256 == stored.card["adapter_sha256"]
    assert stored.card["snapshot"]["content_hash"] == done.snapshot.content_hash
    print(
        f"loss {losses[0]:.3f} → {losses[-1]:.3f}; holdout {base:.3f} → {trained:.3f}; "
        f"{done.result.seconds:.0f} s"
    )
