"""Load a local Phi4Multimodal directory (weights, processor, LoRAs) onto a device.

The vision LoRA is merged into the weights once here (every inspection prompt has a
photo), and the speech LoRA becomes a transcription adapter over those merged weights.
Nothing is ever downloaded: every load is `local_files_only`, and a missing or broken
piece fails with a message naming the file that is missing.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoProcessor, ProcessorMixin

from inspector.engine.layout import (
    NATIVE_MODEL_TYPE,
    Layout,
    detect_layout,
    needs_import_message,
)
from inspector.engine.lora import (
    WEIGHTS_FILE,
    attach_lora,
    difference_lora,
    lora_host,
    merge_lora,
    read_lora,
)
from inspector.engine.prompt import ASSISTANT, END, SYSTEM, USER
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER
from inspector.errors import ModelLoadError, ModelNeedsImport
from inspector.settings import ModelSettings

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json",)
ADAPTER_FILES = ("adapter_config.json", WEIGHTS_FILE)
CHAT_MARKERS = (SYSTEM, USER, ASSISTANT, END)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs."""

    device: torch.device
    dtype: torch.dtype
    attn_implementation: str


def resolve_runtime(settings: ModelSettings) -> Runtime:
    """Device, dtype and attention kernel: bf16 on GPU, fp32 on CPU, flash-attn when present."""
    want_cuda = settings.device == "cuda" or (
        settings.device == "auto" and torch.cuda.is_available()
    )
    if want_cuda and not torch.cuda.is_available():
        raise ModelLoadError("model.device is 'cuda' but no CUDA device is visible")
    device = torch.device("cuda" if want_cuda else "cpu")
    if settings.dtype == "auto":
        dtype = torch.bfloat16 if want_cuda else torch.float32
    else:
        dtype = DTYPES[settings.dtype]
    attn = settings.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if want_cuda and _flash_attn_imports() else "sdpa"
    return Runtime(device, dtype, attn)


def _flash_attn_imports() -> bool:
    # An installed flash-attn built for another torch or CUDA fails at import; use sdpa then.
    try:
        importlib.import_module("flash_attn")
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def _first_present(directory: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise ModelLoadError(
        f"model directory {directory} has no {what} (expected {' or '.join(names)})"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def check_adapter_dir(path: Path, what: str) -> None:
    """Raise ModelLoadError unless `path` holds a peft LoRA adapter."""
    if not path.is_dir():
        raise ModelLoadError(f"{what} directory {path} does not exist")
    for name in ADAPTER_FILES:
        if not (path / name).is_file():
            raise ModelLoadError(f"{what} directory {path} has no {name}")
    config = _read_json(path / "adapter_config.json")
    if config.get("peft_type") != "LORA":
        raise ModelLoadError(f"{path}/adapter_config.json is not a LoRA adapter")


def check_model_dir(path: Path, need_speech: bool) -> None:
    """Raise ModelLoadError naming the first missing or broken piece of a model directory.

    A download of microsoft/Phi-4-multimodal-instruct in its remote-code layout raises
    ModelNeedsImport, whose message is the command that converts it.
    """
    if not path.exists():
        raise ModelLoadError(
            f"model directory {path} does not exist; point model.path at a directory made by "
            "`inspector model import DOWNLOAD NEW_DIR` from a download of "
            "microsoft/Phi-4-multimodal-instruct (README: Real weights)"
        )
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a directory")
    config = _read_json(_first_present(path, ("config.json",), "config.json"))
    if detect_layout(path) is Layout.REMOTE_CODE:
        raise ModelNeedsImport(needs_import_message(path))
    if config.get("model_type") != NATIVE_MODEL_TYPE:
        raise ModelLoadError(
            f"{path}/config.json has model_type {config.get('model_type')!r}, expected "
            f"{NATIVE_MODEL_TYPE!r} (transformers' native Phi4Multimodal) or a download of "
            "microsoft/Phi-4-multimodal-instruct to convert with `inspector model import`"
        )
    _first_present(path, WEIGHT_FILES, "weights")
    _first_present(path, PROCESSOR_FILES, "processor config")
    _first_present(path, TOKENIZER_FILES, "tokenizer")
    check_adapter_dir(path / f"{VISION_ADAPTER}-lora", "vision LoRA")
    if need_speech:
        check_adapter_dir(path / f"{SPEECH_ADAPTER}-lora", "speech LoRA")


def load_base(settings: ModelSettings, runtime: Runtime) -> tuple[Any, ProcessorMixin]:
    """The served base, the model with its vision LoRA merged into the weights, and its processor.

    Serving and training both start here: a site adapter is trained and served on top of
    exactly these weights.
    """
    path = settings.path
    check_model_dir(path, need_speech=settings.transcribe)
    try:
        processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            str(path), local_files_only=True
        )
    except Exception as exc:  # tokenizers and processors raise library-specific types
        raise ModelLoadError(f"cannot load the processor from {path}: {exc}") from None
    try:
        base: Any = AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            dtype=runtime.dtype,
            attn_implementation=runtime.attn_implementation,
        )
    except Exception as exc:  # safetensors, torch and transformers each raise their own types
        raise ModelLoadError(f"cannot load the model weights from {path}: {exc}") from None
    _check_media_tokens(base.config, processor, path)
    base.to(runtime.device)
    base.eval()
    merge_lora(base, read_lora(path / f"{VISION_ADAPTER}-lora", runtime.device))
    return base, processor


def load_checkpoint(settings: ModelSettings, runtime: Runtime) -> tuple[PeftModel, ProcessorMixin]:
    """The served base ready for LoRA adapters, with the transcription adapter when enabled.

    The transcription adapter is the speech LoRA minus the vision LoRA: over the merged
    weights it gives the speech LoRA's model on the original ones.
    """
    base, processor = load_base(settings, runtime)
    model = lora_host(base)
    if settings.transcribe:
        path = settings.path
        speech = read_lora(path / f"{SPEECH_ADAPTER}-lora", runtime.device)
        vision = read_lora(path / f"{VISION_ADAPTER}-lora", runtime.device)
        try:
            attach_lora(model, SPEECH_ADAPTER, difference_lora(speech, vision))
        except (ValueError, RuntimeError) as exc:  # peft's and torch's shape errors
            raise ModelLoadError(f"cannot attach the speech LoRA of {path}: {exc}") from None
    return model, processor


def _check_media_tokens(config: Any, processor: ProcessorMixin, path: Path) -> None:
    expected = {
        "image": (config.vision_config.image_token_id, getattr(processor, "image_token_id", None)),
        "audio": (config.audio_config.audio_token_id, getattr(processor, "audio_token_id", None)),
    }
    for kind, (model_id, tokenizer_id) in expected.items():
        if model_id != tokenizer_id:
            raise ModelLoadError(
                f"{path}: the tokenizer's {kind} token id is {tokenizer_id} but the model "
                f"config expects {model_id}; tokenizer and weights do not belong together"
            )


def check_token_ids(path: Path) -> str:
    """Check the tokenizer against the weights' config; a summary, or ModelLoadError.

    The photo and voice-note placeholders must have the ids the model expects, each chat
    marker of the prompt must be one token, and generation must stop at the end of a turn.
    """
    config = _read_json(path / "config.json")
    try:
        processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            str(path), local_files_only=True
        )
    except Exception as exc:  # tokenizers and processors raise library-specific types
        raise ModelLoadError(f"cannot load the processor from {path}: {exc}") from None
    tokenizer: Any = processor.tokenizer
    for kind, section, key in (
        ("image", "vision_config", "image_token_id"),
        ("audio", "audio_config", "audio_token_id"),
    ):
        model_id = (config.get(section) or {}).get(key)
        token_id = getattr(processor, f"{kind}_token_id", None)
        if model_id != token_id:
            raise ModelLoadError(
                f"{path}: the tokenizer's {kind} token id is {token_id} but the model config "
                f"expects {model_id}; tokenizer and weights do not belong together"
            )
    for marker in CHAT_MARKERS:
        ids = tokenizer.encode(marker, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelLoadError(f"{path}: the tokenizer splits the chat marker {marker} in {ids}")
    end_id = tokenizer.convert_tokens_to_ids(END)
    eos = config.get("eos_token_id")
    if end_id not in (eos if isinstance(eos, list) else [eos]):
        raise ModelLoadError(f"{path}: generation does not stop at {END} (eos_token_id {eos})")
    return (
        f"image token {processor.image_token_id}, audio token "
        f"{processor.audio_token_id}, {END} {end_id}, vocabulary {len(tokenizer)}"
    )
