"""Shape buckets: which photos batch together without padding, known without torch.

Phi-4-multimodal's image processor tiles each photo into square crops; photos with the
same crop grid run through the vision tower together and pad least. The worker groups
its batches by these buckets, so it asks the engine for them instead of knowing the crop.
"""

from __future__ import annotations

from collections.abc import Iterable

# The stock Phi4Multimodal image processor's crop (its `size`); the runtime reads the
# loaded processor's own value and uses that.
CROP = 448

# One (columns, rows) crop grid per photo, in request order.
Bucket = tuple[tuple[int, int], ...]


def shape_bucket(sizes: Iterable[tuple[int, int]], crop: int = CROP) -> Bucket:
    """The crop grid of each (width, height) photo: requests with equal buckets batch best."""
    return tuple((-(-width // crop), -(-height // crop)) for width, height in sizes)
