"""LoRA training of a site adapter on a dataset snapshot, through the serving prompt path.

The base is the served one, loaded by the engine's `load_base`: the checkpoint with its
vision LoRA merged into the weights. Each example goes through the engine's model core
(`PhiCore`: the same prompt, photo and voice-note embedding and forward as a worker), the
language model runs with the site LoRA, and the loss is the cross-entropy of the verdict
token over PASS and FAIL, the two logits P(PASS) is read from (`PhiCore.verdict_logits`,
what serving scores with). The LoRA touches only the language model, so the embeddings do
not change during training and are computed once per batch.

The learning rate falls linearly from `train.learning_rate` to zero over the run: the
verdict loss has a floor (two logits of a normed hidden state), and a full step size at
that floor walks the adapter away from what it learned.

A library: progress reaches the caller through a callback (the CLI draws it), and the
resumable checkpoint holds only tensors and plain values (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file

from inspector.engine.checkpoint import load_base, resolve_runtime
from inspector.engine.core import PhiCore
from inspector.engine.lora import WEIGHTS_FILE, LoraSpec
from inspector.engine.types import VISION_ADAPTER, EngineRequest
from inspector.settings import ModelSettings, SiteProfile, TrainSettings

CARD_FILE = "card.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class Step:
    """Where a training run is: after optimiser step `step` of `steps`, in `epoch`."""

    epoch: int  # 1-based
    epochs: int
    step: int
    steps: int
    loss: float


OnStep = Callable[[Step], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run wrote and how its loss went."""

    directory: Path
    sha256: str
    base_model: str
    epoch_losses: list[float]
    steps: int
    seconds: float
    holdout_base: list[float] = field(default_factory=list)  # P(PASS), no site adapter
    holdout_trained: list[float] = field(default_factory=list)  # P(PASS), the new adapter


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_model_hash(model_dir: Path) -> str:
    """sha256 over the base weights and the vision LoRA merged into them."""
    files = [
        *sorted(model_dir.glob("model*.safetensors")),
        model_dir / f"{VISION_ADAPTER}-lora" / WEIGHTS_FILE,
    ]
    body = [[f.relative_to(model_dir).as_posix(), file_sha256(f)] for f in files]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def lora_config(settings: TrainSettings) -> LoraConfig:
    """The site adapter's LoRA: the spec's modules at the configured rank and alpha."""
    return LoraSpec(rank=settings.rank, alpha=settings.alpha).config()


def _batches(
    requests: Sequence[EngineRequest], labels: Sequence[str], size: int, seed: int
) -> list[tuple[list[EngineRequest], torch.Tensor]]:
    order = torch.randperm(len(requests), generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        target = torch.tensor([0 if labels[i] == "PASS" else 1 for i in rows])
        out.append(([requests[i] for i in rows], target))
    return out


class LoraSteps:
    """A site LoRA on a served base: embeddings, verdict logits, one optimiser step.

    Training and the training benchmark both run through this, so what the benchmark times
    is what `inspector train` does.
    """

    def __init__(
        self,
        base: Any,
        processor: Any,
        device: torch.device,
        profile: SiteProfile,
        settings: TrainSettings,
    ) -> None:
        self.device = device
        self.profile = profile
        self.model: Any = get_peft_model(base, lora_config(settings))
        self.core = PhiCore(self.model, processor)
        if settings.gradient_checkpointing:
            self.model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()  # the LoRA trains in fp32 also on a bf16 base
        self.optimiser = torch.optim.AdamW(self.params, lr=settings.learning_rate)

    def embedded(self, chunk: Sequence[EngineRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """The requests' input embeddings (the serving prompt and media path) and mask."""
        encoded = self.core.encode(chunk, [self.profile] * len(chunk))
        with torch.no_grad():
            return self.core.embed(encoded).clone(), encoded.attention_mask

    def verdict_logits(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The PASS and FAIL logits of the verdict token (the model core's), in fp32."""
        return self.core.embedded_verdict_logits(embeds, mask).float()

    def p_pass(self, held: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
        """P(PASS) of each held-out example under the current weights."""
        self.model.eval()
        out: list[float] = []
        with torch.no_grad():
            for embeds, mask in held:
                out.extend(torch.softmax(self.verdict_logits(embeds, mask), -1)[:, 0].tolist())
        return out

    def save(self, out: Path) -> Path:
        """Write the site LoRA as a peft adapter directory (safetensors only); the weights."""
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in get_peft_model_state_dict(self.model).items()}
        save_file(state, str(out / WEIGHTS_FILE))
        self.model.peft_config["default"].save_pretrained(str(out))
        return out / WEIGHTS_FILE

    def set_learning_rate(self, value: float) -> None:
        """The optimiser's learning rate from the next step on."""
        for group in self.optimiser.param_groups:
            group["lr"] = value

    def step(self, embeds: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> float:
        """One optimiser step on one batch; its loss."""
        loss = torch.nn.functional.cross_entropy(self.verdict_logits(embeds, mask), target)
        self.optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimiser.step()
        return float(loss.detach())


def train_adapter(
    model: ModelSettings,
    profile: SiteProfile,
    requests: Sequence[EngineRequest],
    labels: Sequence[str],
    settings: TrainSettings,
    out: Path,
    card: dict[str, Any],
    holdout: Sequence[EngineRequest] = (),
    on_step: OnStep | None = None,
) -> TrainResult:
    """Train a site LoRA on (request, label) pairs; write the adapter, its card, a checkpoint.

    Seeded; resumes from `out/checkpoint.pt` when one from the same settings is there.
    """
    started = time.monotonic()
    torch.manual_seed(settings.seed)
    runtime = resolve_runtime(model)
    base, processor = load_base(model.model_copy(update={"transcribe": False}), runtime)
    lora = LoraSteps(base, processor, runtime.device, profile, settings)
    peft_model, optimiser = lora.model, lora.optimiser
    embedded, p_pass = lora.embedded, lora.p_pass

    batches = []
    for chunk, target in _batches(requests, labels, settings.batch_size, settings.seed):
        embeds, mask = embedded(chunk)
        batches.append((embeds, mask, target.to(runtime.device)))
    held = [
        embedded(holdout[i : i + settings.batch_size])
        for i in range(0, len(holdout), settings.batch_size)
    ]
    with peft_model.disable_adapter():
        before = p_pass(held)

    out.mkdir(parents=True, exist_ok=True)
    hyper = asdict_settings(settings)
    checkpoint = out / CHECKPOINT_FILE
    first_epoch, losses = 0, []
    if checkpoint.exists():
        # Tensors and plain values only: a checkpoint in a shared directory runs no code.
        saved = torch.load(checkpoint, weights_only=True)
        if saved.get("settings") == hyper and saved.get("examples") == len(requests):
            peft_model.load_state_dict(saved["lora"], strict=False)
            optimiser.load_state_dict(saved["optimiser"])
            first_epoch, losses = saved["epoch"], list(saved["losses"])

    peft_model.train()
    order = torch.Generator().manual_seed(settings.seed + 1)
    for _ in range(first_epoch):
        torch.randperm(len(batches), generator=order)  # keep the resumed run's order
    steps = 0
    total_steps = settings.epochs * len(batches)
    done_steps = first_epoch * len(batches)
    for epoch in range(first_epoch, settings.epochs):
        total = 0.0
        for index in torch.randperm(len(batches), generator=order).tolist():
            lora.set_learning_rate(settings.learning_rate * (1 - done_steps / total_steps))
            loss = lora.step(*batches[index])
            total += loss
            steps += 1
            done_steps += 1
            if on_step is not None:
                on_step(Step(epoch + 1, settings.epochs, done_steps, total_steps, loss))
        losses.append(total / len(batches))
        peft_model.train()
        torch.save(
            {
                "settings": hyper,
                "examples": len(requests),
                "epoch": epoch + 1,
                "losses": losses,
                "lora": {k: v for k, v in peft_model.state_dict().items() if "lora_" in k},
                "optimiser": optimiser.state_dict(),
            },
            checkpoint,
        )
    after = p_pass(held)
    sha = file_sha256(lora.save(out))
    base_hash = base_model_hash(model.path)
    card = {
        **card,
        "hyperparameters": hyper,
        "epoch_losses": losses,
        "base_model": base_hash,
        "adapter_sha256": sha,
        "format": "peft LoRA (safetensors)",
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    return TrainResult(
        out, sha, base_hash, losses, steps, time.monotonic() - started, before, after
    )


def asdict_settings(settings: TrainSettings) -> dict[str, Any]:
    """The hyperparameters as plain JSON values."""
    return dict(settings.model_dump(mode="json"))
