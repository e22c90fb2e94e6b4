"""A training run stopped after its last checkpoint resumes from it, loading tensors only."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.engine.types import EngineRequest
from inspector.settings import ModelSettings, SiteProfile, TrainSettings
from inspector.train.trainer import CHECKPOINT_FILE, train_adapter
from tests.train.parts import draw_plate, label_for


@pytest.mark.slow
def test_a_second_run_with_the_same_settings_resumes_from_the_checkpoint(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    requests = [
        EngineRequest(f"r{i}", "site", [draw_plate(i, label_for(i) == "FAIL")]) for i in range(8)
    ]
    labels = [label_for(i) for i in range(8)]
    model = ModelSettings(path=tiny_model_dir, device="cpu")
    settings = TrainSettings(epochs=2, batch_size=4, gradient_checkpointing=False)
    out = tmp_path / "adapter"
    first = train_adapter(model, SiteProfile(), requests, labels, settings, out, {})
    assert (out / CHECKPOINT_FILE).exists() and first.steps == 4
    # The checkpoint says both epochs are done: nothing is trained again, the same adapter
    # is written, and the losses are the checkpoint's (read with weights_only=True).
    again = train_adapter(model, SiteProfile(), requests, labels, settings, out, {})
    assert again.steps == 0
    assert again.epoch_losses == first.epoch_losses
    assert again.sha256 == first.sha256
