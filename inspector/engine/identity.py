"""What a model directory holds, read from its config.json without loading any weights.

The tiny test model (`inspector model tiny`) has Phi-4-multimodal's classes but a few dozen
hidden units and random weights, so its verdicts are random until a site adapter is trained
on reviews; the demo, `inspector doctor` and the review app all say so. Standard library
only: the review app and the CLI ask this without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_HIDDEN_LIMIT = 512  # Phi-4-multimodal has 3072; the tiny test model a few dozen
RANDOM_VERDICTS = "its verdicts are random until a site adapter is trained on reviews"


def hidden_size(path: Path) -> int:
    """The checkpoint's hidden size from its config.json; 0 when there is none to read."""
    try:
        value = json.loads((path / "config.json").read_text()).get("hidden_size", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0


def is_tiny_model(path: Path) -> bool:
    """Whether `path` holds the tiny test model with random weights."""
    return 0 < hidden_size(path) < TINY_HIDDEN_LIMIT
