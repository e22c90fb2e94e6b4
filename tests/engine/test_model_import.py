"""`inspector model import`: the checkpoint users download becomes the one workers load.

The download is a tiny model in the published main-branch layout (tests/fixtures/download.py
names the public source of every tensor name and config field); the reference is the same
weights assembled in transformers' native layout by transformers and peft themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from inspector.engine import EngineRequest
from inspector.engine.checkpoint import check_model_dir
from inspector.engine.core import PhiCore
from inspector.engine.decode import activate, prefill
from inspector.engine.importing import import_model
from inspector.engine.layout import MANIFEST_FILE, verify_manifest
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER
from inspector.errors import ModelImportRefused, ModelNeedsImport, ModelTargetNotEmpty
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo, voice
from tests.fixtures.download import Download

SITE = SiteProfile(threshold=0.0)
FP32_LOGITS = 1e-5
REPO = Path(__file__).resolve().parents[2]


def engine_on(model_dir: Path, registry: Path) -> PhiEngine:
    settings = ModelSettings(
        path=model_dir,
        device="cpu",
        dtype="float32",
        transcribe=True,
        max_rationale_tokens=4,
        max_transcript_tokens=4,
        adapters_dir=registry,
    )
    return load_engine(settings, {"default": SITE})


@pytest.fixture(scope="module")
def imported(download: Download, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("imports") / "phi4mm-native"
    import_model(download.published, target)
    return target


def batch() -> list[EngineRequest]:
    return [
        EngineRequest("i1", "default", [photo(48, 64, 1)], voice(1.0, 1), "burr on the edge"),
        EngineRequest("i2", "default", [photo(120, 90, 2), photo(64, 64, 3)]),
    ]


def verdict_logits(engine: PhiEngine) -> torch.Tensor:
    encoded = engine.core.encode(batch(), [SITE, SITE])
    with torch.inference_mode():
        state = prefill(
            engine.model, engine.core.embed(encoded), encoded.attention_mask, [VISION_ADAPTER] * 2
        )
    return state.logits


def transcript_logits(engine: PhiEngine) -> torch.Tensor:
    encoded = engine.core.encode_transcripts([voice(1.5, 7)])
    activate(engine.model, SPEECH_ADAPTER)
    with torch.inference_mode():
        logits = engine.core.forward(engine.core.embed(encoded), encoded.attention_mask).logits
    return logits.float()[encoded.attention_mask.bool()]


def test_imported_download_gives_the_native_checkpoints_verdict_and_transcript_logits(
    download: Download, imported: Path, tmp_path: Path
) -> None:
    ours = engine_on(imported, tmp_path / "a")
    reference = engine_on(download.native, tmp_path / "b")
    # The vision LoRA is merged into the served base: verdict logits at the primed position.
    served, expected = verdict_logits(ours), verdict_logits(reference)
    assert (served - expected).abs().max().item() <= FP32_LOGITS
    # The speech LoRA became the transcription adapter: every real position of its prompt.
    served, expected = transcript_logits(ours), transcript_logits(reference)
    assert (served - expected).abs().max().item() <= FP32_LOGITS
    # The comparison can fail: the same weights without their vision LoRA differ clearly.
    base = AutoModelForCausalLM.from_pretrained(str(download.native), local_files_only=True)
    bare = PhiCore(base.eval(), reference.core.processor)
    encoded = bare.encode(batch(), [SITE, SITE])
    with torch.inference_mode():
        plain = bare.forward(bare.embed(encoded), encoded.attention_mask).logits[:, -1].float()
    assert (plain - verdict_logits(ours)).abs().max().item() > 1e-2
    results = ours.infer(batch())
    assert [r.p_pass for r in results] == pytest.approx(
        [r.p_pass for r in reference.infer(batch())], abs=1e-6
    )


def test_import_keeps_the_published_lora_ranks_and_alphas(
    download: Download, imported: Path
) -> None:
    published = json.loads((download.published / "config.json").read_text())
    for adapter in (VISION_ADAPTER, SPEECH_ADAPTER):
        config = json.loads((imported / f"{adapter}-lora" / "adapter_config.json").read_text())
        section = published[f"{adapter}_lora"]
        assert (config["r"], config["lora_alpha"]) == (section["r"], section["lora_alpha"])
        assert config["peft_type"] == "LORA"


def test_import_writes_a_manifest_that_catches_a_changed_file(
    imported: Path, tmp_path: Path
) -> None:
    manifest = json.loads((imported / MANIFEST_FILE).read_text())
    assert "config.json" in manifest["files"]
    assert "vision-lora/adapter_model.safetensors" in manifest["files"]
    assert verify_manifest(imported, hashes=True) == []
    copy = tmp_path / "copy"
    shutil.copytree(imported, copy)
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"hidden_size"', '"hidden_size" '))
    assert verify_manifest(copy, hashes=True) != []


def test_the_loader_refuses_the_download_and_names_the_import_command(
    download: Download,
) -> None:
    with pytest.raises(ModelNeedsImport) as refused:
        check_model_dir(download.published, need_speech=True)
    assert f"inspector model import {download.published} " in refused.value.message
    assert refused.value.code == "model.needs_import"


def _copy(download: Download, tmp_path: Path) -> Path:
    source = tmp_path / "Phi-4-multimodal-instruct"
    shutil.copytree(download.published, source)
    return source


def _refused(source: Path, target: Path, match: str) -> None:
    with pytest.raises(ModelImportRefused, match=match):
        import_model(source, target)
    # Nothing is left behind: no target, no half-written directory beside it.
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if ".importing-" in p.name] == []


def test_import_refuses_a_download_missing_a_shard(download: Download, tmp_path: Path) -> None:
    source = _copy(download, tmp_path)
    (source / "model-00002-of-00003.safetensors").unlink()
    _refused(source, tmp_path / "out", "lacks model-00002-of-00003.safetensors")


def test_import_refuses_a_shard_cut_short(download: Download, tmp_path: Path) -> None:
    source = _copy(download, tmp_path)
    shard = source / "model-00003-of-00003.safetensors"
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    _refused(source, tmp_path / "out", "model-00003-of-00003.safetensors is cut short")


def _rewrite_shard(source: Path, change: dict[str, torch.Tensor], drop: str | None = None) -> None:
    from safetensors.torch import load_file, save_file

    shard = source / "model-00001-of-00003.safetensors"
    tensors = {k: v for k, v in load_file(str(shard)).items() if k != drop}
    save_file({**tensors, **change}, str(shard))


def test_import_refuses_a_tensor_of_unexpected_shape(download: Download, tmp_path: Path) -> None:
    from safetensors import safe_open

    source = _copy(download, tmp_path)
    with safe_open(str(source / "model-00001-of-00003.safetensors"), "pt") as handle:
        name = next(k for k in handle.keys() if k.endswith("base_layer.weight"))  # noqa: SIM118
        wrong = handle.get_tensor(name)[:, :-1].contiguous()
    _rewrite_shard(source, {name: wrong})
    _refused(source, tmp_path / "out", re.escape(name))


def test_import_refuses_an_unknown_tensor(download: Download, tmp_path: Path) -> None:
    source = _copy(download, tmp_path)
    _rewrite_shard(source, {"model.layers.0.mlp.extra_proj.weight": torch.zeros(2, 2)})
    _refused(source, tmp_path / "out", "which is no Phi-4-multimodal tensor")


def test_import_refuses_a_target_that_is_not_empty(download: Download, tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ModelTargetNotEmpty):
        import_model(download.published, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_import_never_writes_into_the_download(download: Download, tmp_path: Path) -> None:
    source = _copy(download, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in source.rglob("*")}
    import_model(source, tmp_path / "out")
    assert {p: p.stat().st_mtime_ns for p in source.rglob("*")} == before


def _readme_import_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Real weights", 1)[1]
    return next(
        line.strip()
        for line in section.splitlines()
        if line.strip().startswith("inspector model import")
    )


def test_the_readmes_import_command_converts_the_download_and_says_what_it_wrote(
    download: Download, tmp_path: Path
) -> None:
    command = _readme_import_command().split()
    source, target = Path(command[3]), Path(command[4])
    workdir = tmp_path / "site"
    (workdir / source).parent.mkdir(parents=True)
    shutil.copytree(download.published, workdir / source)
    done = subprocess.run(
        [sys.executable, "-m", "inspector", *command[1:], "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["target"] == str(target) and report["layout"] == "remote-code"
    assert report["files"] == len(
        json.loads((workdir / target / MANIFEST_FILE).read_text())["files"]
    )
    check_model_dir(workdir / target, need_speech=True)
    # Run again on what it wrote: it says the directory is native already, and verifies it.
    again = subprocess.run(
        [sys.executable, "-m", "inspector", "model", "import", str(target), "unused", "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["layout"] == "native"
    assert not (workdir / "unused").exists()


def test_infer_on_the_download_says_which_import_to_run(download: Download, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspector.cli import app
    from inspector.engine.layout import import_command
    from inspector.media import encode_jpeg

    image = tmp_path / "part.jpg"
    image.write_bytes(encode_jpeg(photo(48, 64, 1)))
    done = CliRunner().invoke(app, ["infer", "-i", str(image), "-m", str(download.published)])
    assert done.exit_code == 1
    assert import_command(download.published) in " ".join(done.output.split())


def test_import_writes_shards_of_bounded_size_that_load_the_same(
    download: Download, imported: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small-shards"
    import_model(download.published, small, shard_bytes=300_000)
    shards = sorted(small.glob("model-*.safetensors"))
    index = json.loads((small / "model.safetensors.index.json").read_text())
    assert len(shards) > 3 and set(index["weight_map"].values()) == {p.name for p in shards}
    # Each shard stays within the bound, unless it holds a single tensor larger than it.
    per_shard = Counter(index["weight_map"].values())
    assert all(p.stat().st_size < 320_000 or per_shard[p.name] == 1 for p in shards)
    assert verdict_logits(engine_on(small, tmp_path / "a")).equal(
        verdict_logits(engine_on(imported, tmp_path / "b"))
    )
