"""`inspector demo`: the whole line on embedded defaults, from drawn parts to stored verdicts."""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from inspector.context import config_path, settings_from
from inspector.settings import SLUG

console = Console()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM stops the demo the way Ctrl-C does: edge agent first, then the worker.
    raise KeyboardInterrupt


def demo(
    ctx: typer.Context,
    count: Annotated[
        int | None,
        typer.Option(min=1, max=200, help="Photos to generate (default 3; 36 with --loop)."),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option(help="Keep the line running after the verdicts (Ctrl-C stops).")
    ] = False,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Then review those parts, train a site adapter on the CPU, promote it, let "
            "the worker hot-swap it and judge a fresh batch with it (a few minutes).",
        ),
    ] = False,
    fresh: Annotated[
        int, typer.Option(min=1, max=200, help="Parts of the --loop's fresh batch.")
    ] = 6,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Model directory (default: model.path; the "
            "tiny test model is built there when it is the default and missing).",
        ),
    ] = None,
    site: Annotated[str, typer.Option(help="Site slug of the demo station.")] = "demo",
    workdir: Annotated[
        Path, typer.Option(help="Watched folder, voice note, spool and worker log.")
    ] = Path("var/demo"),
    start_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds the worker may take to load the model.")
    ] = 300.0,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the verdicts.")
    ] = 180.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log connection events.")
    ] = False,
) -> None:
    """Run the demo line: worker + edge agent on the local broker, drawn parts, verdicts."""
    from inspector.demo import DemoOptions, run_demo

    # The site names the worker (SITE-workers must stay a slug of at most 64 characters).
    if not re.match(SLUG, site) or len(site) > 50:
        raise typer.BadParameter(
            "lowercase letters, digits and '-', at most 50", param_hint="--site"
        )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    first = count if count is not None else (36 if loop else 3)
    if loop and first < 12:
        raise typer.BadParameter(
            "--loop trains on the first batch: give it at least 12 parts", param_hint="--count"
        )
    options = DemoOptions(
        count=first,
        loop=loop,
        fresh=fresh,
        site=site,
        workdir=workdir,
        model=model,
        config=config_path(ctx),
        keep_running=keep_running,
        start_timeout_s=start_timeout,
        verdict_timeout_s=timeout,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_demo(settings_from(ctx), options, console)
    except KeyboardInterrupt:
        console.print("[yellow]demo interrupted[/]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
