"""What every command shares: the root `--config`, the settings it names, the store.

Command modules import this module, never `inspector.cli`, so the root command can list
them without an import cycle. Nothing here imports the store or the engine until asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from inspector.settings import Settings
    from inspector.store import Store

# inspector.settings.DEFAULT_CONFIG (a test keeps them equal): importing the settings models
# here would cost `inspector --help` a fifth of a second.
DEFAULT_CONFIG = "config/inspector.toml"

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"TOML settings file (default: {DEFAULT_CONFIG} when present).",
        envvar="INSPECTOR_CONFIG",
    ),
]


def _state(ctx: typer.Context) -> dict[str, Any]:
    # The root context carries the state, so nested groups (`db upgrade`) see it too.
    state: dict[str, Any] = ctx.find_root().ensure_object(dict)
    return state


def remember_config(ctx: typer.Context, config: Path | None) -> None:
    """Keep the root `--config` for the command that runs next (the root callback calls this)."""
    _state(ctx)["config"] = config


def config_path(ctx: typer.Context) -> Path | None:
    """The file given to the root `--config` (or INSPECTOR_CONFIG), if any."""
    path: Path | None = _state(ctx).get("config")
    return path


def settings_from(ctx: typer.Context) -> Settings:
    """The settings named by the root `--config`, loaded once per command."""
    from inspector.settings import load_settings

    state = _state(ctx)
    if "settings" not in state:
        state["settings"] = load_settings(state.get("config"))
    settings: Settings = state["settings"]
    return settings


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[Store]:
    """The store named by the settings, closed when the command is done."""
    from inspector.store import Store

    store = Store.from_settings(settings_from(ctx).store)
    try:
        yield store
    finally:
        store.close()


def print_json(obj: Any, *, indent: int | None = 2) -> None:
    """One JSON document on stdout: never wrapped, coloured or prefixed, whatever the terminal.

    Written to the stream itself, not through rich (which wraps at the terminal's width);
    unsafe characters are JSON escapes (`safetext.json_line`), so `cat` stays safe too.
    """
    import sys

    from inspector.safetext import json_line

    sys.stdout.write(json_line(obj, indent=indent) + "\n")


def print_json_lines(records: Iterable[Any]) -> int:
    """JSON Lines on stdout, one record a line; the number written."""
    import sys

    from inspector.safetext import json_line

    count = 0
    for record in records:
        sys.stdout.write(json_line(record) + "\n")
        count += 1
    return count
