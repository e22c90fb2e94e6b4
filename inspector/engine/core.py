"""The Phi model core: one loaded checkpoint and the steps that serving and training share.

From requests to the logits at the verdict position: the prompt (`prompt.verdict_prompt`),
tokens and media tensors (`inputs.encode`), input embeddings with the photo and voice-note
features in their placeholders (`inputs.embed`), one forward of the language model.
Nothing here turns autograd off: the runtime wraps its calls in `torch.inference_mode()`,
training calls the same functions with gradients on, so both see the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import ProcessorMixin

from inspector.engine.inputs import Encoded, embed, encode, positions
from inspector.engine.prompt import END, transcript_prompt, verdict_prompt
from inspector.engine.shapes import CROP
from inspector.engine.types import EngineRequest
from inspector.engine.verdict import VerdictTokens, pass_probability, verdict_tokens
from inspector.settings import SiteProfile


class PhiCore:
    """A Phi4Multimodal model with its processor, verdict tokens and stop tokens."""

    def __init__(self, model: Any, processor: ProcessorMixin) -> None:
        self.model = model
        self.processor = processor
        tokenizer: Any = processor.tokenizer
        self.tokenizer = tokenizer
        self.verdict: VerdictTokens = verdict_tokens(tokenizer)
        self.image_token: str = processor.image_token  # type: ignore[attr-defined]
        self.audio_token: str = processor.audio_token  # type: ignore[attr-defined]
        eos = model.config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        stops.update({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END)})
        self.stop_ids = sorted(s for s in stops if isinstance(s, int) and s >= 0)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.stop_ids[0]
        size = getattr(processor.image_processor, "size", None)
        self.crop: int = int(size["height"]) if isinstance(size, dict) else CROP

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        device: torch.device = next(self.model.parameters()).device
        return device

    def prompts(
        self, requests: Sequence[EngineRequest], profiles: Sequence[SiteProfile]
    ) -> list[str]:
        """The verdict prompt of each request under its site profile."""
        return [
            verdict_prompt(
                p, len(r.images), r.audio is not None, r.note, self.image_token, self.audio_token
            )
            for r, p in zip(requests, profiles, strict=True)
        ]

    def encode(self, requests: Sequence[EngineRequest], profiles: Sequence[SiteProfile]) -> Encoded:
        """Tokens and media tensors of the requests' verdict prompts, left-padded."""
        images = [image for r in requests for image in r.images]
        return encode(
            self.processor,
            self.prompts(requests, profiles),
            images,
            [r.audio for r in requests],
            self.device,
        )

    def encode_transcripts(self, audios: Sequence[NDArray[np.float32]]) -> Encoded:
        """Tokens and features of the transcription prompt, one row per voice note."""
        prompt = transcript_prompt(self.audio_token)
        return encode(self.processor, [prompt] * len(audios), [], list(audios), self.device)

    def embed(self, encoded: Encoded) -> torch.Tensor:
        """Input embeddings [B, T, H] with the media features in their placeholders."""
        return embed(self.model, encoded)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> Any:
        """One forward of the language model over left-padded embedded prompts.

        `logits_to_keep=1` keeps only the last position's logits (the verdict position of
        a verdict prompt); 0 keeps all. Other keyword arguments reach the model as given
        (a KV cache, peft's `adapter_names`).
        """
        return self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=positions(attention_mask),
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def verdict_logits(
        self, requests: Sequence[EngineRequest], profiles: Sequence[SiteProfile]
    ) -> torch.Tensor:
        """[B, 2] logits of the PASS and FAIL tokens at each request's verdict position.

        With the model's active adapter, and with gradients unless the caller turns them
        off: a cross-entropy over these two columns trains the verdict.
        """
        encoded = self.encode(requests, profiles)
        return self.embedded_verdict_logits(self.embed(encoded), encoded.attention_mask)

    def embedded_verdict_logits(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """`verdict_logits` from prompts already embedded (`embed`): training embeds once."""
        out = self.forward(inputs_embeds, attention_mask, logits_to_keep=1)
        return self.verdict_pair(out.logits[:, -1])

    def verdict_pair(self, logits: torch.Tensor) -> torch.Tensor:
        """The PASS and FAIL columns [B, 2] of next-token `logits` [B, V]."""
        return logits[:, [self.verdict.pass_id, self.verdict.fail_id]]

    def pass_probability(self, logits: torch.Tensor) -> list[float]:
        """P(PASS) normalised over PASS and FAIL, per row of next-token `logits` [B, V]."""
        return pass_probability(logits, self.verdict)
