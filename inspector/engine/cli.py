"""`inspector model tiny` and `inspector infer`: build a test checkpoint, judge files locally.

torch is imported inside the commands only, so `inspector --help` stays fast.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
    directory: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random Phi4Multimodal checkpoint (with vision and speech LoRAs)."""
    from inspector.engine.tiny import build_tiny_model

    build_tiny_model(directory, seed=seed)
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    console.print(f"tiny model written to {directory} ({size / 1e6:.1f} MB)")


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
