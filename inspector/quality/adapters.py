"""What names an adapter end to end: `AdapterRef`, and the one name of the served base."""

from __future__ import annotations

from dataclasses import dataclass

BASE = "base"
"""The served base (the checkpoint with its vision LoRA merged): no site adapter.

Verdicts, evaluations, the registry and the review app name it so. Verdicts stored
before this name was chosen say "vision"; `served_name` maps them when they are read.
"""

LEGACY_BASE_NAMES = frozenset({"vision"})


def served_name(stored: str) -> str:
    """The adapter name a stored verdict means: BASE for the base's older spelling."""
    return BASE if stored in LEGACY_BASE_NAMES else stored


def is_base(name: str | None) -> bool:
    """Whether `name` (as a verdict or a request names it) means the served base."""
    return name is not None and served_name(name) == BASE


@dataclass(frozen=True, slots=True)
class AdapterRef:
    """One registry version of a site adapter: its name, version and file sha256."""

    name: str
    version: int
    sha256: str

    @property
    def tag(self) -> str:
        """`name@version`, how the CLI, logs and evaluations name it."""
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.tag


def tag_of(ref: AdapterRef | None) -> str:
    """How an evaluation names what runs: the adapter's `name@version`, or BASE."""
    return ref.tag if ref is not None else BASE
