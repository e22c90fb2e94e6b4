"""`inspector model import`: the download's remote-code layout into the native one, once.

microsoft/Phi-4-multimodal-instruct's main branch stores the language model's projections
wrapped by peft (`…qkv_proj.base_layer.weight`) with the vision and speech LoRAs inline
(`…qkv_proj.lora_A.vision.weight`), and names a few tower tensors its own way. The rules
below are the public ones: transformers' converter
(`models/phi4_multimodal/convert_phi4_multimodal_weights_to_hf.py`: the renames, the config
fields, the LoRA ranks and alphas) and vLLM's loader (`model_executor/models/phi4mm.py`:
`base_layer.` dropped, the `audio_projection.speech|vision` prefixes).

The import reads every shard's header first and refuses, before writing anything, a shard
missing or cut short, a tensor of unknown name or unexpected shape. Then it streams shard by
shard (one input shard in memory at a time, plus the LoRA factors, which are smaller), writes
into a temporary directory beside the target and renames it into place at the end, with a
manifest of every file it wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    Phi4MultimodalConfig,
    Phi4MultimodalFeatureExtractor,
    Phi4MultimodalForCausalLM,
    Phi4MultimodalImageProcessor,
    Phi4MultimodalProcessor,
    PreTrainedTokenizerFast,
)

from inspector.engine.layout import (
    MANIFEST_FILE,
    REMOTE_MODEL_TYPE,
    HeaderError,
    Layout,
    TensorInfo,
    detect_layout,
    read_json_object,
    read_safetensors_header,
    verify_manifest,
    write_manifest,
)
from inspector.engine.lora import LORA_TARGETS, WEIGHTS_FILE
from inspector.engine.prompt import END
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER
from inspector.errors import ModelImportRefused, ModelTargetNotEmpty

INDEX_FILE = "model.safetensors.index.json"
# The size of the shards the import writes, and so about the memory it needs beyond the LoRAs.
OUTPUT_SHARD_BYTES = 2 * 1024**3
# The remote-code processor's placeholders: `<|image_1|>` and `<|audio_1|>` in a prompt become
# these tokens (ids 200010 and 200011 in the published tokenizer).
IMAGE_TOKEN = "<|endoftext10|>"
AUDIO_TOKEN = "<|endoftext11|>"
# vision_siglip_navit.py fixes the tower (SigLIP so400m: heads of 72 channels); config.json
# carries no size for it, so its width and depth are read off the tensors.
VISION_HEAD_DIM = 72
_TOWER = "model.embed_tokens_extend.image_embed.img_processor."
_AUDIO_LAYER = r"model\.embed_tokens_extend\.audio_embed\.encoder\.encoders\.\d+"
_IMAGE = "model.embed_tokens_extend.image_embed."
_AUDIO = "model.embed_tokens_extend.audio_embed."
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (rf"^({_AUDIO_LAYER}\.feed_forward_(?:in|out))\.net\.0\.linear\.", r"\1.gate_up_proj."),
        (rf"^({_AUDIO_LAYER}\.feed_forward_(?:in|out))\.net\.2\.", r"\1.down_proj."),
        (rf"^({_AUDIO_LAYER}\.self_attn)\.linear_(q|k|v)\.", r"\1.\2_proj."),
        (rf"^({_AUDIO_LAYER}\.self_attn)\.linear_out\.", r"\1.o_proj."),
        (rf"^{re.escape(_IMAGE)}img_projection\.0\.", f"{_IMAGE}img_projection_up."),
        (rf"^{re.escape(_IMAGE)}img_projection\.2\.", f"{_IMAGE}img_projection_down."),
        (rf"^{re.escape(_IMAGE)}glb_GN$", f"{_IMAGE}global_img_feature_extensor"),
        (rf"^{re.escape(_IMAGE)}sub_GN$", f"{_IMAGE}sub_img_feature_extensor"),
        (rf"^{re.escape(_AUDIO)}audio_projection\.speech\.0\.", f"{_AUDIO}up_proj_for_speech."),
        (rf"^{re.escape(_AUDIO)}audio_projection\.speech\.2\.", f"{_AUDIO}down_proj_for_speech."),
        (
            rf"^{re.escape(_AUDIO)}audio_projection\.vision\.0\.",
            f"{_AUDIO}up_proj_for_vision_speech.",
        ),
        (
            rf"^{re.escape(_AUDIO)}audio_projection\.vision\.2\.",
            f"{_AUDIO}down_proj_for_vision_speech.",
        ),
    )
)
LORA_KEY = re.compile(
    r"^(?P<module>model\.layers\.\d+\.(?:self_attn\.(?:qkv|o)_proj|mlp\.(?:gate_up|down)_proj))"
    r"\.lora_(?P<factor>[AB])\.(?P<adapter>vision|speech)\.weight$"
)
# config.json's LoRA sections and the adapters they become.
LORA_SECTIONS = {VISION_ADAPTER: "vision_lora", SPEECH_ADAPTER: "speech_lora"}
# Config fields the native model reads as they are; the rest are renamed or dropped below.
_PLAIN_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "resid_pdrop", "embd_pdrop",
    "attention_dropout", "hidden_act", "max_position_embeddings",
    "original_max_position_embeddings", "initializer_range", "rms_norm_eps", "use_cache",
    "tie_word_embeddings", "bos_token_id", "pad_token_id", "sliding_window", "rope_theta",
    "rope_scaling", "partial_rotary_factor",
)  # fmt: skip
_AUDIO_FIELDS = {
    "attention_dim": "hidden_size",
    "attention_heads": "num_attention_heads",
    "linear_units": "intermediate_size",
    "num_blocks": "num_blocks",
    "activation": "activation",
    "chunk_size": "chunk_size",
    "left_chunk": "left_chunk",
    "dropout_rate": "dropout_rate",
    "ext_pw_out_channel": "ext_pw_out_channel",
    # Spelled "seperable" in the published config.json.
    "depthwise_seperable_out_channel": "depthwise_separable_out_channel",
    "depthwise_multiplier": "depthwise_multiplier",
    "kernel_size": "kernel_size",
    "conv_activation": "conv_activation",
    "input_size": "input_size",
    "conv_glu_type": "conv_glu_type",
    "time_reduction": "time_reduction",
}
_UNSUPPORTED_BIASES = ("attention_bias", "mlp_bias", "lm_head_bias")


Progress = Callable[[str, int, int], None]  # (what, done, total)


def _refuse(message: str) -> ModelImportRefused:
    return ModelImportRefused(message)


def native_name(key: str) -> str:
    """The native layout's name of a non-LoRA tensor of the download."""
    key = key.replace(".base_layer.", ".")
    for pattern, replacement in RENAMES:
        renamed, count = pattern.subn(replacement, key)
        if count:
            return renamed
    return key


# --- the config ------------------------------------------------------------------------------


def _section(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    node: Any = config
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise _refuse(f"config.json has no {'.'.join(keys)} section")
    return node


def _audio_config(config: dict[str, Any]) -> dict[str, Any]:
    audio = _section(config, "audio_processor", "config")
    fields = {new: audio[old] for old, new in _AUDIO_FIELDS.items() if old in audio}
    try:
        fields["nemo_conv_channels"] = audio["nemo_conv_settings"]["conv_channels"]
        bias = audio["relative_attention_bias_args"]
        fields["bias_max_distance"] = bias["t5_bias_max_distance"]
    except (KeyError, TypeError):
        raise _refuse(
            "config.json's audio_processor.config lacks its conv or bias settings"
        ) from None
    embedding = _section(config, "embd_layer", "audio_embd_layer")
    fields["downsample_rate"] = embedding.get("downsample_rate", 1)
    return fields


def _vision_config(config: dict[str, Any], tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    patch = tensors.get(f"{_TOWER}embeddings.patch_embedding.weight")
    fc1 = tensors.get(f"{_TOWER}encoder.layers.0.mlp.fc1.weight")
    positions = tensors.get(f"{_TOWER}embeddings.position_embedding.weight")
    if patch is None or fc1 is None or positions is None:
        raise _refuse("the download has no vision tower (img_processor) tensors")
    width, patch_size = patch.shape[0], patch.shape[-1]
    if width % VISION_HEAD_DIM:
        raise _refuse(f"the vision tower is {width} wide, not a whole number of 72-wide heads")
    layers = {
        int(m.group(1))
        for name in tensors
        if (m := re.match(rf"^{re.escape(_TOWER)}encoder\.layers\.(\d+)\.", name))
    }
    side = round(positions.shape[0] ** 0.5)
    crop = _section(config, "embd_layer", "image_embd_layer").get("crop_size", side * patch_size)
    return {
        "hidden_size": width,
        "intermediate_size": fc1.shape[0],
        "num_hidden_layers": max(layers) + 1,
        "num_attention_heads": width // VISION_HEAD_DIM,
        "patch_size": patch_size,
        "image_size": side * patch_size,
        "crop_size": crop,
    }


def native_config(
    config: dict[str, Any], tensors: dict[str, TensorInfo], token_ids: dict[str, int]
) -> Phi4MultimodalConfig:
    """transformers' Phi4MultimodalConfig for a download's config.json and tensors."""
    for name in _UNSUPPORTED_BIASES:
        if config.get(name):
            raise _refuse(f"config.json sets {name}; the native Phi4Multimodal has no such bias")
    fields = {name: config[name] for name in _PLAIN_FIELDS if name in config}
    if isinstance(config.get("torch_dtype"), str):
        fields["dtype"] = config["torch_dtype"]
    audio = {**_audio_config(config), "audio_token_id": token_ids["audio"]}
    vision = {**_vision_config(config, tensors), "image_token_id": token_ids["image"]}
    # Generation ends at <|endoftext|> or at the end of the assistant's turn.
    fields["eos_token_id"] = [token_ids["eos"], token_ids["end"]]
    try:
        return Phi4MultimodalConfig(**fields, vision_config=vision, audio_config=audio)
    except (TypeError, ValueError) as exc:
        raise _refuse(f"config.json does not describe a Phi-4-multimodal model: {exc}") from None


# --- the plan: everything checked before a byte is written ------------------------------------


@dataclass
class ImportPlan:
    """What an import will read and write, checked against the native model's shapes."""

    source: Path
    shards: list[Path]
    config: Phi4MultimodalConfig
    loras: dict[str, LoraConfig]
    headers: dict[Path, dict[str, TensorInfo]] = field(default_factory=dict)

    @property
    def tensor_count(self) -> int:
        """How many tensors the shards hold."""
        return sum(len(h) for h in self.headers.values())


def _shards(source: Path) -> list[Path]:
    index = read_json_object(source / INDEX_FILE)
    if index is None:
        single = source / "model.safetensors"
        if single.is_file():
            return [single]
        raise _refuse(f"{source} has neither {INDEX_FILE} nor model.safetensors")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise _refuse(f"{INDEX_FILE} has no weight_map")
    names = sorted(set(map(str, weight_map.values())))
    missing = [name for name in names if not (source / name).is_file()]
    if missing:
        raise _refuse(
            f"{source} lacks {', '.join(missing)} of the {len(names)} shards its index lists; "
            "download the whole repository again"
        )
    return [source / name for name in names]


def _headers(shards: list[Path]) -> dict[Path, dict[str, TensorInfo]]:
    headers: dict[Path, dict[str, TensorInfo]] = {}
    for shard in shards:
        try:
            headers[shard] = read_safetensors_header(shard)
        except HeaderError as exc:
            raise _refuse(f"{exc}; download that shard again") from None
    return headers


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    wanted = {"image": IMAGE_TOKEN, "audio": AUDIO_TOKEN, "end": END, "eos": "<|endoftext|>"}
    vocabulary = tokenizer.get_vocab()
    ids: dict[str, int] = {}
    for what, token in wanted.items():
        if token not in vocabulary:
            raise _refuse(f"the tokenizer has no {token} token ({what})")
        ids[what] = vocabulary[token]
    return ids


def _lora_config(config: dict[str, Any], adapter: str) -> LoraConfig:
    section = _section(config, LORA_SECTIONS[adapter])
    try:
        rank, alpha = int(section["r"]), int(section["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        raise _refuse(f"config.json's {LORA_SECTIONS[adapter]} lacks r or lora_alpha") from None
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=float(section.get("dp", 0.0)),
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )


def _expected_shapes(config: Phi4MultimodalConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = Phi4MultimodalForCausalLM(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _check_tensors(plan: ImportPlan) -> None:
    expected = _expected_shapes(plan.config)
    seen: set[str] = set()
    for shard, header in plan.headers.items():
        for key, info in header.items():
            lora = LORA_KEY.match(key)
            if lora is not None:
                _check_lora_shape(plan, key, info, lora, expected)
                continue
            name = native_name(key)
            if name not in expected:
                raise _refuse(f"{shard.name} holds {key!r}, which is no Phi-4-multimodal tensor")
            if info.shape != expected[name]:
                raise _refuse(
                    f"{shard.name}: {key!r} is {list(info.shape)}, the model's config needs "
                    f"{list(expected[name])}"
                )
            seen.add(name)
    missing = (
        set(expected) - seen - ({"lm_head.weight"} if plan.config.tie_word_embeddings else set())
    )
    if missing:
        raise _refuse(f"the shards lack {len(missing)} tensors, e.g. {sorted(missing)[0]!r}")


def _check_lora_shape(
    plan: ImportPlan,
    key: str,
    info: TensorInfo,
    match: re.Match[str],
    expected: dict[str, tuple[int, ...]],
) -> None:
    out_features, in_features = expected[f"{match['module']}.weight"]
    rank = int(plan.loras[match["adapter"]].r)
    want = (rank, in_features) if match["factor"] == "A" else (out_features, rank)
    if info.shape != want:
        raise _refuse(
            f"{key!r} is {list(info.shape)}; a rank-{rank} LoRA of that layer is {list(want)}"
        )


def plan_import(source: Path) -> ImportPlan:
    """Read and check a download; raises ModelImportRefused naming the first problem."""
    layout = detect_layout(source)
    if layout in (Layout.MISSING, Layout.NOT_A_DIRECTORY):
        raise _refuse(f"{source} is {layout.value}")
    config = read_json_object(source / "config.json")
    if config is None:
        raise _refuse(f"{source}/config.json is missing or not a JSON object")
    if layout is not Layout.REMOTE_CODE:
        raise _refuse(
            f"{source}/config.json has model_type {config.get('model_type')!r}; the import reads "
            f"microsoft/Phi-4-multimodal-instruct's main branch (model_type "
            f"{REMOTE_MODEL_TYPE!r})"
        )
    shards = _shards(source)
    headers = _headers(shards)
    tokenizer = load_tokenizer(source)
    # The vision tower's size is read off its tensors, by their native names.
    renamed = {native_name(k): v for header in headers.values() for k, v in header.items()}
    native = native_config(config, renamed, _token_ids(tokenizer))
    loras = {adapter: _lora_config(config, adapter) for adapter in LORA_SECTIONS}
    plan = ImportPlan(source, shards, native, loras, headers)
    _check_tensors(plan)
    return plan


# --- the processor ---------------------------------------------------------------------------


def load_tokenizer(source: Path) -> PreTrainedTokenizerFast:
    """The download's tokenizer (tokenizer.json, its config and chat template)."""
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(
            str(source),
            local_files_only=True,
            extra_special_tokens={"image_token": IMAGE_TOKEN, "audio_token": AUDIO_TOKEN},
        )
    except (OSError, ValueError, TypeError) as exc:
        raise _refuse(f"cannot read the tokenizer in {source}: {exc}") from None
    return tokenizer  # type: ignore[no-any-return]


def build_processor(source: Path) -> Phi4MultimodalProcessor:
    """transformers' Phi4MultimodalProcessor with the download's tokenizer and settings."""
    settings = read_json_object(source / "preprocessor_config.json") or {}
    image = Phi4MultimodalImageProcessor(dynamic_hd=int(settings.get("dynamic_hd", 36)))
    audio = Phi4MultimodalFeatureExtractor(
        audio_compression_rate=int(settings.get("audio_compression_rate", 8)),
        audio_downsample_rate=int(settings.get("audio_downsample_rate", 1)),
        audio_feat_stride=int(settings.get("audio_feat_stride", 1)),
    )
    tokenizer = load_tokenizer(source)
    return Phi4MultimodalProcessor(  # type: ignore[no-untyped-call]
        image_processor=image,
        audio_processor=audio,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


# --- writing ---------------------------------------------------------------------------------


def check_target(target: Path) -> None:
    """Refuse a target that exists and is not an empty directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelTargetNotEmpty(f"{target} is not empty; name a new directory")


class _ShardWriter:
    """Writes tensors into output shards of at most `limit` bytes, named once all are known."""

    def __init__(self, out: Path, limit: int) -> None:
        self.out, self.limit = out, limit
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.parts: list[list[str]] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.limit:
            self.flush()
        self.pending[name] = tensor
        self.pending_bytes += size

    def flush(self) -> None:
        if self.pending:
            part = self.out / f".part-{len(self.parts):05d}.safetensors"
            save_file(self.pending, str(part), metadata={"format": "pt"})
            self.parts.append(list(self.pending))
            self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        """Name the parts model-0000N-of-0000M and write the index."""
        self.flush()
        weight_map: dict[str, str] = {}
        for number, names in enumerate(self.parts, start=1):
            name = f"model-{number:05d}-of-{len(self.parts):05d}.safetensors"
            (self.out / f".part-{number - 1:05d}.safetensors").rename(self.out / name)
            weight_map.update(dict.fromkeys(names, name))
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _write_weights(plan: ImportPlan, out: Path, progress: Progress, shard_bytes: int) -> None:
    # Memory holds one output shard (shard_bytes) and the LoRA factors at a time.
    loras: dict[str, dict[str, torch.Tensor]] = {name: {} for name in LORA_SECTIONS}
    writer = _ShardWriter(out, shard_bytes)
    for number, shard in enumerate(plan.shards, start=1):
        with safe_open(str(shard), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                lora = LORA_KEY.match(key)
                if lora is not None:
                    peft_key = f"base_model.model.{lora['module']}.lora_{lora['factor']}.weight"
                    loras[lora["adapter"]][peft_key] = handle.get_tensor(key)
                else:
                    writer.add(native_name(key), handle.get_tensor(key))
        progress("shards", number, len(plan.shards))
    writer.finish()
    for adapter, factors in loras.items():
        if not factors:
            raise _refuse(f"the shards hold no {adapter} LoRA (lora_A.{adapter}.weight tensors)")
        directory = out / f"{adapter}-lora"
        plan.loras[adapter].save_pretrained(str(directory))
        save_file(factors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})


def import_model(
    source: Path,
    target: Path,
    progress: Progress | None = None,
    shard_bytes: int = OUTPUT_SHARD_BYTES,
) -> dict[str, Any]:
    """Convert the download at `source` into a new native directory `target`; the manifest.

    The weights are written in shards of at most `shard_bytes`, which bounds the memory.
    """
    report = progress or (lambda what, done, total: None)
    check_target(target)
    plan = plan_import(source)
    report("checked", plan.tensor_count, plan.tensor_count)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.importing-", dir=target.parent))
    try:
        plan.config.save_pretrained(str(work))
        build_processor(source).save_pretrained(str(work))
        _write_weights(plan, work, report, shard_bytes)
        if (source / "LICENSE").is_file():
            shutil.copyfile(source / "LICENSE", work / "LICENSE")
        manifest = write_manifest(
            work,
            {
                "path": str(source.resolve()),
                "layout": Layout.REMOTE_CODE.value,
                "shards": {p.name: p.stat().st_size for p in plan.shards},
            },
        )
        report("manifest", 1, 1)
        check_target(target)
        if target.exists():
            target.rmdir()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def verify_native(path: Path, hashes: bool = True) -> dict[str, Any]:
    """Check a directory already in the native layout; raises naming the first problem.

    Every safetensors file must hold what its header promises, the loader's checks must pass,
    and where `inspector model import` wrote a manifest, every file must match it.
    """
    from inspector.engine.checkpoint import check_model_dir

    check_model_dir(path, need_speech=True)
    files = sorted(path.rglob("*.safetensors"))
    for file in files:
        try:
            read_safetensors_header(file)
        except HeaderError as exc:
            raise ModelImportRefused(f"{file.parent}: {exc}") from None
    manifest = (path / MANIFEST_FILE).is_file()
    if manifest:
        problems = verify_manifest(path, hashes=hashes)
        if problems:
            raise ModelImportRefused(f"{path} differs from its manifest: {'; '.join(problems)}")
    return {"layout": Layout.NATIVE.value, "path": str(path), "files": len(files),
            "manifest": manifest}  # fmt: skip
