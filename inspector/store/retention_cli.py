"""`inspector retention`: remove old media blobs (dry run unless --apply), audited."""

from __future__ import annotations

import getpass
import re
import socket
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console

from inspector.context import open_store

_AGE = re.compile(r"(\d+)([dw])")
GiB = 1024**3


def parse_age(value: str) -> timedelta:
    """'90d' or '12w' as a timedelta of at least one day."""
    match = _AGE.fullmatch(value.strip())
    if not match or int(match[1]) < 1:
        raise typer.BadParameter(
            f"{value!r} is not an age such as 90d or 12w (days or weeks, at least 1d)",
            param_hint="--older-than",
        )
    days = int(match[1]) * (7 if match[2] == "w" else 1)
    return timedelta(days=days)


def _size(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / 1024**2:.1f} MiB"


def retention(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Remove blobs that no inspection received within this age uses (90d, 12w).",
        ),
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete the files (without it: a dry run).")
    ] = False,
    include_snapshots: Annotated[
        bool,
        typer.Option(
            "--include-snapshots",
            help="Also remove media of inspections in adapters' training snapshots.",
        ),
    ] = False,
    by: Annotated[
        str | None, typer.Option(help="Who runs it, for the audit (default: user@host).")
    ] = None,
) -> None:
    """Remove old photo and voice-note blobs; inspections, verdicts and reviews stay."""
    from inspector.protocol import utcnow
    from inspector.store.retention import apply_retention, plan_retention

    age = parse_age(older_than)
    console = Console()
    cutoff = utcnow() - age
    with open_store(ctx) as store:
        plan = plan_retention(store.db, store.blobs, cutoff, include_snapshots)
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(plan.by_kind().items()))
        summary = (
            f"{len(plan.blobs)} blob(s) ({_size(plan.bytes)}{'; ' + kinds if kinds else ''}) "
            f"used only by inspections received before {cutoff:%Y-%m-%d %H:%M} UTC "
            f"({plan.inspections} inspection(s))"
        )
        if plan.kept_for_snapshots:
            console.print(
                f"keeping {plan.kept_for_snapshots} old blob(s) of inspections in training "
                "snapshots (--include-snapshots removes them too)"
            )
        if not apply:
            console.print(f"[bold]dry run[/]: would remove {summary}")
            console.print("nothing was deleted; add --apply to delete them")
            return
        actor = by or f"{getpass.getuser()}@{socket.gethostname()}"
        result = apply_retention(store.db, store.blobs, plan, actor)
    console.print(
        f"[green]removed {result.removed} blob(s)[/] ({_size(result.bytes)}); "
        f"audit: retention run {result.run_id}"
        + (
            f"; kept {result.skipped_now_young} used again since the plan"
            if result.skipped_now_young
            else ""
        )
    )
