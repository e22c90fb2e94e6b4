"""Builders of real payloads for the core tests."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import soundfile as sf

from inspector.media import encode_jpeg
from inspector.protocol import (
    AudioPart,
    Decision,
    ImagePart,
    InspectionRequest,
    VerdictMessage,
    utcnow,
)
from inspector.quality import AdapterRef
from inspector.store.shadow import ShadowVerdictInput


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A real JPEG with some texture."""
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def wav(seconds: float = 1.0, rate: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    """A real audio file holding a 440 Hz tone."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = np.stack([tone] * channels, axis=1)
    out = io.BytesIO()
    sf.write(out, data, rate, format=fmt)
    return out.getvalue()


def make_request(**overrides: Any) -> InspectionRequest:
    """A valid request with one photo and a voice note."""
    fields: dict[str, Any] = {
        "request_id": uuid.uuid4(),
        "site": "osaka",
        "line": "l1",
        "station": "s1",
        "part_id": "P-0001",
        "captured_at": utcnow(),
        "images": [ImagePart.from_bytes("image/jpeg", jpeg())],
        "audio": AudioPart.from_bytes("audio/wav", wav()),
        "note": "looks fine",
    }
    fields.update(overrides)
    return InspectionRequest(**fields)


def verdict_for(req: InspectionRequest, **over: Any) -> VerdictMessage:
    """A FAIL verdict on `req` as a worker would store it; `over` replaces fields."""
    fields: dict[str, Any] = dict(
        request_id=req.request_id,
        site=req.site,
        line=req.line,
        station=req.station,
        part_id=req.part_id,
        verdict=Decision.FAIL,
        confidence=0.8,
        p_pass=0.2,
        rationale="dent near the hole",
        defects=[{"type": "dent", "where": "near the hole"}],
        model="tiny",
        adapter="vision",
        prompt_version="v1",
        worker_id="w1",
        latency_ms=5.0,
        decided_at=utcnow(),
    )
    fields.update(over)
    return VerdictMessage(**fields)


def shadow_verdict_for(
    request_id: str, site: str, adapter: AdapterRef, verdict: Decision, model: str = "tiny"
) -> ShadowVerdictInput:
    """A shadow adapter's confident `verdict` on one request, as a worker hands it over."""
    return ShadowVerdictInput(
        request_id=request_id,
        site=site,
        adapter=adapter,
        model=model,
        prompt_version="v1",
        verdict=verdict,
        confidence=0.9,
        p_pass=0.9 if verdict is Decision.PASS else 0.1,
        worker_id="w1",
        decided_at=utcnow(),
    )
