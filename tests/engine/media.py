"""Seeded photos and voice notes for the engine tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def photo(height: int, width: int, seed: int) -> NDArray[np.uint8]:
    """A seeded random RGB photo."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def voice(seconds: float, seed: int) -> NDArray[np.float32]:
    """A seeded 16 kHz mono voice note of quiet noise."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * 0.1).astype(np.float32)
