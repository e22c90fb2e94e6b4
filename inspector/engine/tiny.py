"""A tiny random-initialised Phi4Multimodal checkpoint for tests, demos and benchmarks.

Same classes and on-disk layout as the public checkpoint (weights, processor, tokenizer,
``vision-lora/`` and ``speech-lora/``), small enough to build and run on a CPU in seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Phi4MultimodalConfig,
    Phi4MultimodalFeatureExtractor,
    Phi4MultimodalForCausalLM,
    Phi4MultimodalImageProcessor,
    Phi4MultimodalProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from inspector.engine.identity import is_tiny_model
from inspector.engine.layout import Layout, detect_layout
from inspector.engine.lora import LoraSpec
from inspector.engine.prompt import ASSISTANT, AUDIO, END, IMAGE, SYSTEM, USER, tokenizer_corpus
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER
from inspector.errors import ModelTargetNotEmpty

TEXT_EOS = "<|endoftext|>"
SPECIAL_TOKENS = (TEXT_EOS, SYSTEM, USER, ASSISTANT, END, IMAGE, AUDIO)
TINY_VISION_RANK = 8
TINY_SPEECH_RANK = 4


def build_tokenizer(
    vocab_size: int = 1024, extra_text: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here, with the chat and media tokens registered."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*tokenizer_corpus(), *extra_text], trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=TEXT_EOS,
        eos_token=TEXT_EOS,
        pad_token=TEXT_EOS,
        extra_special_tokens={"image_token": IMAGE, "audio_token": AUDIO},
    )


def build_processor(tokenizer: PreTrainedTokenizerFast) -> Phi4MultimodalProcessor:
    """The stock Phi4Multimodal image/audio processors around `tokenizer`."""
    return Phi4MultimodalProcessor(  # type: ignore[no-untyped-call]
        image_processor=Phi4MultimodalImageProcessor(),
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
    )


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    end_id = tokenizer.convert_tokens_to_ids(END)
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": [tokenizer.eos_token_id, end_id],
    }


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> Phi4MultimodalConfig:
    """LM hidden 64 × 2 layers, vision 32 × 2, audio 32 × 2; token ids from `tokenizer`."""
    return Phi4MultimodalConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_token_id": tokenizer.image_token_id,
        },
        audio_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_blocks": 2,
            "num_attention_heads": 2,
            "ext_pw_out_channel": 32,
            "depthwise_separable_out_channel": 32,
            "nemo_conv_channels": 32,
            "audio_token_id": tokenizer.audio_token_id,
        },
        **_token_ids(tokenizer),
    )


def full_size_config(tokenizer: PreTrainedTokenizerFast) -> Phi4MultimodalConfig:
    """The default (full-size) architecture, with special token ids taken from `tokenizer`."""
    ids = _token_ids(tokenizer)
    # Sizes stay the defaults (vocabulary included); only the token ids follow the tokenizer.
    ids.pop("vocab_size")
    return Phi4MultimodalConfig(
        vision_config={"image_token_id": tokenizer.image_token_id},
        audio_config={"audio_token_id": tokenizer.audio_token_id},
        **ids,
    )


def write_random_adapter(model: PreTrainedModel, path: Path, rank: int, seed: int) -> Path:
    """Save a random LoRA adapter of the shared spec for `model` into `path`."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraSpec(rank=rank).config(random_init=True))
    peft_model.save_pretrained(str(path))
    peft_model.unload()  # leave `model` as it was, without LoRA layers
    return path


def _check_replaceable(directory: Path, replace: bool) -> None:
    """Refuse to write into a directory that holds anything but, with `replace`, a tiny model."""
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return
    if not replace:
        raise ModelTargetNotEmpty(
            f"{directory} is not empty; name a new directory (--force replaces an earlier "
            "tiny test model, never anything else)"
        )
    shards = sorted(p.name for p in directory.glob("*.safetensors*") if p.name.startswith("model-"))
    if detect_layout(directory) is not Layout.NATIVE or not is_tiny_model(directory) or shards:
        raise ModelTargetNotEmpty(
            f"{directory} holds something other than the tiny test model (a real checkpoint or "
            "other files); it is never replaced: name a new directory"
        )


def build_tiny_model(directory: Path, seed: int = 0, replace: bool = False) -> Path:
    """Write a tiny Phi4Multimodal checkpoint (model, processor, both LoRAs) into `directory`.

    `directory` must be new or empty; with `replace`, it may hold an earlier tiny test model,
    which is swapped for the new one only once that is complete.
    """
    _check_replaceable(directory, replace)
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.building-", dir=directory.parent))
    try:
        tokenizer = build_tokenizer()
        torch.manual_seed(seed)
        model: Any = Phi4MultimodalForCausalLM(tiny_config(tokenizer))
        model.eval()
        model.save_pretrained(str(work))
        build_processor(tokenizer).save_pretrained(str(work))
        write_random_adapter(model, work / f"{VISION_ADAPTER}-lora", TINY_VISION_RANK, seed + 1)
        write_random_adapter(model, work / f"{SPEECH_ADAPTER}-lora", TINY_SPEECH_RANK, seed + 2)
        _check_replaceable(directory, replace)
        if directory.exists():
            shutil.rmtree(directory)
        work.rename(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return directory
