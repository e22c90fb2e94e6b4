"""The MQTT worker service: consume, validate, batch, infer, commit, publish, then ack.

`Worker` is imported on first use, so `inspector.worker.cli` loads no store or engine code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.worker.service import Worker

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from inspector.worker.service import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
