"""Loading checkpoints: the tiny model's layout, and clear messages for broken directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.engine.checkpoint import resolve_runtime
from inspector.engine.runtime import load_engine
from inspector.engine.tiny import build_tokenizer
from inspector.engine.verdict import verdict_tokens
from inspector.errors import ModelLoadError
from inspector.settings import ModelSettings


def test_tiny_model_has_the_public_checkpoint_layout(tiny_model_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json"):
        assert (tiny_model_dir / name).is_file(), name
    for lora in ("vision-lora", "speech-lora"):
        config = json.loads((tiny_model_dir / lora / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA"
        assert (tiny_model_dir / lora / "adapter_model.safetensors").is_file()
    size = sum(f.stat().st_size for f in tiny_model_dir.rglob("*") if f.is_file())
    assert size < 5_000_000


def test_media_tokens_are_registered_and_match_the_config(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tokenizer = build_tokenizer()
    assert tokenizer.image_token == "<|image|>" and tokenizer.audio_token == "<|audio|>"
    assert config["vision_config"]["image_token_id"] == tokenizer.image_token_id
    assert config["audio_config"]["audio_token_id"] == tokenizer.audio_token_id


def test_verdict_token_ids_come_from_the_tokenizer() -> None:
    plain = build_tokenizer()
    # Extra training text reshuffles the vocabulary, so fixed ids would now be wrong.
    shifted = build_tokenizer(extra_text=["PASSAGE FAILURE PASSING FAILING"] * 50)
    for tokenizer in (plain, shifted):
        tokens = verdict_tokens(tokenizer)
        assert tokenizer.decode([tokens.pass_id]) == " PASS"
        assert tokenizer.decode([tokens.fail_id]) == " FAIL"
    assert verdict_tokens(plain) != verdict_tokens(shifted)


def test_tokenizer_that_cannot_separate_pass_from_fail_is_refused() -> None:
    letters_only = build_tokenizer(vocab_size=263)  # byte alphabet + specials, no merges
    with pytest.raises(ModelLoadError, match="cannot tell PASS from FAIL"):
        verdict_tokens(letters_only)


def broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "config.json").unlink(), "no config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json cannot be read"),
        (
            lambda d: (d / "config.json").write_text('{"model_type": "llama"}'),
            "model_type 'llama'",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "no weights"),
        (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer"),
        (lambda d: (d / "processor_config.json").unlink(), "no processor config"),
        (lambda d: shutil.rmtree(d / "vision-lora"), "vision LoRA directory .* does not exist"),
        (
            lambda d: (d / "vision-lora" / "adapter_model.safetensors").unlink(),
            "vision LoRA directory .* has no adapter_model.safetensors",
        ),
        (lambda d: shutil.rmtree(d / "speech-lora"), "speech LoRA directory"),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "cannot load the model"),
    ],
)
def test_broken_model_directory_names_what_is_missing(
    tiny_model_dir: Path, tmp_path: Path, damage: object, message: str
) -> None:
    model_dir = broken_copy(tiny_model_dir, tmp_path / "model")
    damage(model_dir)  # type: ignore[operator]
    settings = ModelSettings(path=model_dir, transcribe=True, adapters_dir=tmp_path / "none")
    with pytest.raises(ModelLoadError, match=message):
        load_engine(settings, {})


def test_cpu_runs_float32_with_sdpa(tiny_model_dir: Path) -> None:
    runtime = resolve_runtime(ModelSettings(path=tiny_model_dir, device="cpu"))
    assert (str(runtime.device), str(runtime.dtype), runtime.attn_implementation) == (
        "cpu",
        "torch.float32",
        "sdpa",
    )


def test_engine_interface_imports_without_torch() -> None:
    code = (
        "import sys; import inspector.engine, inspector.engine.types, inspector.engine.prompt; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
