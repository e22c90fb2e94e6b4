"""Turn prompts, photos and voice notes into the input embeddings of one batched prefill.

Media are encoded in groups that need no padding, so a request's verdict never depends
on the rest of its batch and no compute goes into padding: photos are grouped by crop
count (the stock processor would pad every photo of a call to the largest one, and the
vision tower would run those blank crops), voice notes by length (the conformer's
convolutions see a shorter note's zero padding, which would change its features).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import ProcessorMixin

SAMPLE_RATE = 16_000


@dataclass
class AudioGroup:
    """Voice notes of equal length, encoded together."""

    rows: list[int]  # batch rows the notes belong to, in order
    features: torch.Tensor  # [len(rows), frames, mel bins]
    embed_size: int  # audio tokens each note takes in the prompt


@dataclass
class ImageGroup:
    """Photos with the same crop count, run through the vision tower together."""

    photos: list[int]  # indices into the batch's photos (prompt order), ascending
    tensors: dict[str, torch.Tensor]  # image_pixel_values, image_sizes, image_attention_mask


@dataclass
class Encoded:
    """Token ids plus the media tensors that fill the placeholder tokens."""

    input_ids: torch.Tensor  # [B, T], left-padded
    attention_mask: torch.Tensor  # [B, T]
    image_tokens: list[int]  # placeholder tokens of each photo, in prompt order
    images: list[ImageGroup]
    audio: list[AudioGroup]


IMAGE_KEYS = ("image_pixel_values", "image_sizes", "image_attention_mask")


def _image_groups(
    processor: ProcessorMixin, images: Sequence[NDArray[np.uint8]], device: torch.device
) -> tuple[list[ImageGroup], list[int]]:
    one_by_one = [
        processor.image_processor([image], return_tensors="pt", device=str(device))
        for image in images
    ]
    by_crops: dict[int, list[int]] = {}
    for index, pixels in enumerate(one_by_one):
        by_crops.setdefault(pixels["image_pixel_values"].shape[1], []).append(index)
    groups = [
        ImageGroup(
            photos,
            {key: torch.cat([one_by_one[i][key] for i in photos]).to(device) for key in IMAGE_KEYS},
        )
        for photos in by_crops.values()
    ]
    return groups, [int(pixels["num_img_tokens"][0]) for pixels in one_by_one]


def _audio_groups(
    processor: ProcessorMixin, audios: Sequence[NDArray[np.float32] | None], device: torch.device
) -> list[AudioGroup]:
    by_length: dict[int, list[tuple[int, NDArray[np.float32]]]] = {}
    for row, audio in enumerate(audios):
        if audio is not None:
            by_length.setdefault(len(audio), []).append((row, audio))
    groups = []
    extractor = processor.audio_processor  # type: ignore[attr-defined]
    for notes in by_length.values():
        rows = [row for row, _ in notes]
        waves = torch.from_numpy(np.stack([audio for _, audio in notes])).to(device)
        features, size = _log_mel(extractor, waves)
        groups.append(AudioGroup(rows, features, size))
    return groups


def _log_mel(extractor: Any, waves: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Log-mel features [N, frames, bins] of equal-length notes on their device, and tokens each.

    The stock extractor's `__call__` pads on the host and builds its FFT window on the
    requested device without moving the samples there, so it only runs on the CPU; its
    feature code itself is device-agnostic. Equal lengths need none of its padding.
    """
    count, samples = waves.shape
    lengths = torch.full((count,), samples, dtype=torch.long)
    features = extractor._torch_extract_fbank_features(waves.float(), lengths, str(waves.device))
    frames = (lengths - extractor.win_length) // extractor.hop_length + 1
    sizes = extractor._compute_audio_embed_size(frames * extractor.audio_feat_stride)
    return features, int(sizes[0])


def encode(
    processor: ProcessorMixin,
    prompts: Sequence[str],
    images: Sequence[NDArray[np.uint8]],
    audios: Sequence[NDArray[np.float32] | None],
    device: torch.device,
) -> Encoded:
    """Tokenize `prompts` (one per row) with their photos (in prompt order) and notes."""
    image_token: str = processor.image_token  # type: ignore[attr-defined]
    audio_token: str = processor.audio_token  # type: ignore[attr-defined]
    # Placeholders are expanded here rather than by the processor, which would pad the
    # photos and voice notes of one call to a common size.
    image_groups, image_tokens = _image_groups(processor, images, device)
    counts = iter(image_tokens)
    texts = [_expand(text, image_token, counts) for text in prompts]
    audio_groups = _audio_groups(processor, audios, device)
    for group in audio_groups:
        for row in group.rows:
            texts[row] = texts[row].replace(audio_token, audio_token * group.embed_size, 1)
    tokens = processor.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
    return Encoded(
        tokens["input_ids"].to(device),
        tokens["attention_mask"].to(device),
        image_tokens,
        image_groups,
        audio_groups,
    )


def _expand(text: str, token: str, counts: Iterator[int]) -> str:
    pieces = text.split(token)
    out = [pieces[0]]
    for piece in pieces[1:]:
        out.append(token * next(counts))
        out.append(piece)
    return "".join(out)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] of left-padded rows: each row's first real token is position 0."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def embed(model: Any, encoded: Encoded) -> torch.Tensor:
    """Input embeddings [B, T, H] with photo and voice-note features in their placeholders.

    Differentiable: training runs it with autograd on, the runtime under inference mode.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm: Any = base.model  # Phi4MultimodalModel
    features = lm.embed_tokens_extend
    ids = encoded.input_ids
    embeds = lm.embed_tokens(ids)
    if len(encoded.images) == 1:
        embeds = features.image_embed(ids, embeds, **encoded.images[0].tensors)
    elif encoded.images:
        # The stock image embedding fills every image placeholder of `ids` at once, so
        # each group sees only its own photos' placeholders.
        slots = (ids == features.image_token_id).nonzero(as_tuple=True)  # row-major
        owner = torch.repeat_interleave(
            torch.arange(len(encoded.image_tokens), device=ids.device),
            torch.tensor(encoded.image_tokens, device=ids.device),
        )
        for photos in encoded.images:
            others = ~torch.isin(owner, torch.tensor(photos.photos, device=ids.device))
            group_ids = ids.clone()
            group_ids[slots[0][others], slots[1][others]] = -1
            embeds = features.image_embed(group_ids, embeds, **photos.tensors)
    # With photos in the prompt the model projects speech through its vision-speech head.
    mode = "vision" if encoded.images else "speech"
    for notes in encoded.audio:
        rows = torch.tensor(notes.rows, device=ids.device)
        embeds[rows] = features.audio_embed(
            ids[rows],
            embeds[rows],
            audio_input_features=notes.features,
            audio_embed_sizes=[notes.embed_size] * len(notes.rows),
            audio_attention_mask=None,
            audio_projection_mode=mode,
        )
    result: torch.Tensor = embeds
    return result
