"""The demo line: worker, edge agent and generated inspection media on the local broker.

`DemoOptions` and `run_demo` are imported on first use, so the command module stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.demo.line import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from inspector.demo import line

        return getattr(line, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
