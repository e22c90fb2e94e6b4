"""`inspector model …` and `inspector infer`: import, verify or build checkpoints, judge files.

torch is imported inside the commands only, so `inspector --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, TaskID

from inspector.context import settings_from
from inspector.errors import InspectorError
from inspector.safetext import json_line

console = Console()
err_console = Console(stderr=True)

model_app = typer.Typer(help="Model checkpoints.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    # Messages carry codes like "[image.undecodable]": print them literally, unwrapped.
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@model_app.command("tiny")
def model_tiny(
    directory: Annotated[Path, typer.Argument(help="A new or empty directory to write it into.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an earlier tiny test model in DIRECTORY (never a real checkpoint).",
        ),
    ] = False,
) -> None:
    """Write a tiny random Phi4Multimodal checkpoint (with vision and speech LoRAs)."""
    from inspector.engine.tiny import build_tiny_model

    try:
        build_tiny_model(directory, seed=seed, replace=force)
    except InspectorError as exc:
        raise _fail(f"[{exc.code}] {exc.message}") from None
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    console.print(f"tiny model written to {directory} ({size / 1e6:.1f} MB)")


@model_app.command("import")
def model_import(
    source: Annotated[
        Path, typer.Argument(help="A download of microsoft/Phi-4-multimodal-instruct (main).")
    ],
    target: Annotated[Path, typer.Argument(help="A new or empty directory to write.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Convert a download into the layout workers load; SOURCE is only read."""
    from inspector.engine.importing import import_model, verify_native
    from inspector.engine.layout import Layout, detect_layout

    started = time.monotonic()
    try:
        if detect_layout(source) is Layout.NATIVE:
            report = verify_native(source)
            report["note"] = f"{source} is in the native layout already: point model.path at it"
        else:
            with _progress(quiet=json_output) as progress:
                manifest = import_model(source, target, progress)
            report = {
                "layout": manifest["source"]["layout"],
                "source": str(source),
                "target": str(target),
                "files": len(manifest["files"]),
                "bytes": sum(f["bytes"] for f in manifest["files"].values()),
            }
    except InspectorError as exc:
        raise _fail(f"[{exc.code}] {exc.message}") from None
    report["seconds"] = round(time.monotonic() - started, 2)
    _print_report(report, json_output)


@model_app.command("verify")
def model_verify(
    directory: Annotated[Path, typer.Argument(help="A model directory in the native layout.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Check a model directory: layout, files, every shard whole, the manifest's sha256s."""
    from inspector.engine.importing import verify_native

    try:
        report = verify_native(directory)
    except InspectorError as exc:
        raise _fail(f"[{exc.code}] {exc.message}") from None
    _print_report(report, json_output)


def _print_report(report: dict[str, Any], json_output: bool) -> None:
    if json_output:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    for key, value in report.items():
        console.print(f"{key}: {value}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawn on stderr (nothing with --json)."""
    if quiet:
        yield lambda what, done, total: None
        return
    with Progress(console=err_console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield update


def infer(
    ctx: typer.Context,
    image: Annotated[
        list[Path], typer.Option("--image", "-i", help="Photo file; repeat for several.")
    ],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model directory (default: model.path).")
    ] = None,
    audio: Annotated[Path | None, typer.Option("--audio", "-a", help="Voice note file.")] = None,
    note: Annotated[str | None, typer.Option("--note", "-n", help="Typed operator note.")] = None,
    site: Annotated[str, typer.Option("--site", "-s", help="Site profile to use.")] = "default",
    adapter: Annotated[
        str | None, typer.Option("--adapter", help="Adapter instead of the site default.")
    ] = None,
    transcribe: Annotated[
        bool | None, typer.Option("--transcribe/--no-transcribe", help="Transcribe the note.")
    ] = None,
) -> None:
    """Judge one inspection from local files and print the verdict as JSON."""
    from inspector.engine.runtime import load_engine
    from inspector.engine.types import EngineRequest
    from inspector.media import decode_audio, decode_image

    try:
        settings = settings_from(ctx)
        overrides: dict[str, Any] = {}
        if model is not None:
            overrides["path"] = model
        if transcribe is not None:
            overrides["transcribe"] = transcribe
        model_settings = settings.model.model_copy(update=overrides)
        images = [decode_image(p.read_bytes(), None, settings.limits).pixels for p in image]
        samples = None
        if audio is not None:
            samples = decode_audio(audio.read_bytes(), None, settings.limits).samples
        engine = load_engine(model_settings, settings.sites)
        request = EngineRequest(str(uuid.uuid4()), site, images, samples, note, adapter)
        result = engine.infer([request])[0]
    except InspectorError as exc:
        raise _fail(exc.message) from None
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename}: {exc.strerror}") from None
    # The rationale is model text: unsafe characters reach the terminal as JSON escapes.
    console.print(json_line(result.model_dump(mode="json"), indent=2), markup=False)
