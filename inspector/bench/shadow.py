"""What a shadow adapter costs the engine: the same batches at shadow share 0 and at a share.

The site serves a random site adapter (the champion) in both runs; at the share, a drawn
`share` of each batch's requests get a second row routed to a second random adapter (the
shadow), as the worker adds them (`inspector.worker.shadow`): same prefill, no rationale,
no transcript. Throughput counts live inspections only, so the ratio of the two rates is
what shadowing costs the line.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inspector.engine.runtime import PhiEngine
from inspector.engine.types import EngineRequest
from inspector.quality import AdapterRef

SITE_ADAPTER_RANK = 32  # the default of `train.rank`: what a trained site adapter has


def shadow_rows(batch: Sequence[EngineRequest], share: float, seed: int) -> list[EngineRequest]:
    """A drawn `share` of the batch's requests again, as shadow rows."""
    rng = np.random.default_rng(seed)
    return [
        replace(r, request_id=f"{r.request_id}~shadow", shadow=True)
        for r in batch
        if rng.random() < share
    ]


def measure_shadow(
    engine: PhiEngine, inputs: Sequence[list[EngineRequest]], share: float, timed: Any
) -> dict[str, Any]:
    """Live inspections per second at shadow share 0 and at `share`, on the same batches.

    `timed(batch)` runs one batch and returns its wall seconds.
    """
    from inspector.bench.swap import write_site_adapter

    site = inputs[0][0].site
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        champion = write_site_adapter(engine, root / "champion", SITE_ADAPTER_RANK, 1)
        challenger = write_site_adapter(engine, root / "challenger", SITE_ADAPTER_RANK, 2)
        engine.load_site_adapter(site, AdapterRef("champion", 1, champion), root / "champion")
        engine.load_shadow_adapter(
            site, AdapterRef("challenger", 1, challenger), root / "challenger"
        )
    try:
        extra = [shadow_rows(batch, share, seed) for seed, batch in enumerate(inputs)]
        timed(inputs[0] + extra[0])  # warm-up: the batch bucket with shadow rows
        without = [timed(batch) for batch in inputs]
        with_shadow = [timed(batch + rows) for batch, rows in zip(inputs, extra, strict=True)]
    finally:
        engine.clear_shadow_adapter(site)
        engine.clear_site_adapter(site)
    live = sum(len(b) for b in inputs)
    rate_without, rate_with = live / sum(without), live / sum(with_shadow)
    return {
        "shadow_share": share,
        "shadow_rows_per_batch": [len(rows) for rows in extra],
        "batch_seconds_share_0": without,
        "batch_seconds": with_shadow,
        "inspections_per_s_share_0": rate_without,
        "inspections_per_s": rate_with,
        # Live throughput kept with the shadow on: 1.0 would be free.
        "throughput_ratio": rate_with / rate_without,
    }
