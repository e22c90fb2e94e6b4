"""The demo line: worker, edge agent and generated inspection media on the local broker."""

from inspector.demo.line import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
