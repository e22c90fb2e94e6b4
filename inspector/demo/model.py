"""The demo's model directory: local weights when model.path holds them, else the tiny model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from inspector.engine.identity import RANDOM_VERDICTS, is_tiny_model
from inspector.engine.layout import Layout, detect_layout, needs_import_message
from inspector.errors import DemoFailed
from inspector.settings import ModelSettings

BUILD_TIMEOUT_S = 600.0


def is_checkpoint(path: Path) -> bool:
    """Whether `path` looks like a local transformers checkpoint (it has a config.json)."""
    return (path / "config.json").is_file()


def ensure_model(path: Path, console: Console, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Use the checkpoint at `path`; build the tiny test model there when it is the default."""
    if detect_layout(path) is Layout.REMOTE_CODE:
        raise DemoFailed(needs_import_message(path))
    if is_checkpoint(path):
        console.print(f"model: [bold]{path}[/]")
        _note_if_tiny(path, console)
        return path
    if path.exists() and any(path.iterdir()):
        raise DemoFailed(
            f"model.path {path} is not a Phi4Multimodal directory (no config.json); point "
            "model.path (or --model, or INSPECTOR_MODEL__PATH) at one"
        )
    if path != ModelSettings().path:
        # Only the default location is ours to fill: another missing path is a mistake to show.
        raise DemoFailed(
            f"model.path {path} does not exist; point it at a directory made by `inspector "
            "model import` (README: Real weights), or leave model.path at its default for the "
            "tiny test model"
        )
    console.print(f"model: building the tiny test model in [bold]{path}[/] (random weights)")
    build_tiny(path, timeout_s)
    _note_if_tiny(path, console)
    return path


def _note_if_tiny(path: Path, console: Console) -> None:
    # A broken checkpoint is not said here: the worker reports it with the file it cannot read.
    if is_tiny_model(path):
        console.print(
            f"[bold yellow]a tiny test model with random weights: {RANDOM_VERDICTS}[/] "
            "(and its rationales noise); "
            "point model.path at a local Phi-4-multimodal-instruct for real ones"
        )


def build_tiny(path: Path, timeout_s: float) -> None:
    """Run `inspector model tiny` into a scratch folder, then move it into place in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.building")
    # A half-built folder from an interrupted run must never be taken for a checkpoint.
    shutil.rmtree(scratch, ignore_errors=True)
    if path.exists():
        path.rmdir()  # empty: ensure_model refused anything else
    argv = [sys.executable, "-m", "inspector", "model", "tiny", str(scratch)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DemoFailed(f"building the tiny model took over {timeout_s:g} s") from None
    if done.returncode != 0 or not is_checkpoint(scratch):
        shutil.rmtree(scratch, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip()[-1500:]
        raise DemoFailed(f"building the tiny model failed (exit {done.returncode}):\n{tail}")
    scratch.rename(path)
