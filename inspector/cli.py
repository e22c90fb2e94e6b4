"""The `inspector` command: one root with `--config`, every command registered lazily.

Adding a command is one line in `COMMANDS`: the name users type, where it lives
(`"package.module:attribute"`, a plain function for a command or a `typer.Typer` for a
group) and the one-line help `inspector --help` shows. The module is imported only when
that command runs or its own help is asked for, so `inspector --help` and `inspector edge …`
load neither torch, SQL nor the worker. A command module imports `inspector.context` for
the settings and the store (never this module), and its heavy packages inside the command
function. `tests/core/test_cli_layout.py` checks each entry loads and its help matches.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from typer import _click as click  # typer carries its own click; its groups are built on it
from typer.core import TyperCommand, TyperGroup

from inspector.context import ConfigOption, remember_config
from inspector.errors import ConfigError, InspectorError
from inspector.safetext import terminal


@dataclass(frozen=True)
class Entry:
    """One command of the root: where it lives and its one-line help."""

    target: str
    help: str


COMMANDS: dict[str, Entry] = {
    "serve": Entry(
        "inspector.worker.cli:serve",
        "Run a worker: consume requests, infer, commit, publish verdicts (until SIGTERM).",
    ),
    "submit": Entry(
        "inspector.worker.cli:submit",
        "Publish one inspection and wait for its verdict; prints the verdict JSON.",
    ),
    "infer": Entry(
        "inspector.engine.cli:infer",
        "Judge one inspection from local files and print the verdict as JSON.",
    ),
    "model": Entry("inspector.engine.cli:model_app", "Model checkpoints."),
    "edge": Entry("edge.cli:app", "The line-station agent."),
    "db": Entry("inspector.store.cli:db_app", "Database schema."),
    "verdicts": Entry("inspector.store.cli:verdicts_app", "Browse and export stored verdicts."),
    "train": Entry(
        "inspector.train.cli:train",
        "Train a site adapter from the site's reviews and register it as a candidate.",
    ),
    "adapters": Entry("inspector.train.cli:adapters_app", "The site adapter registry."),
    "golden": Entry(
        "inspector.canary.cli:golden_app",
        "Golden parts: reviewed inspections every worker must answer as reviewed.",
    ),
    "canary": Entry(
        "inspector.canary.cli:canary_app", "The canary that checks every worker on golden parts."
    ),
    "schema": Entry("inspector.cli:schema", "Print the JSON Schema of the wire messages."),
    "codes": Entry(
        "inspector.cli:codes", "List every error and rejection code: its meaning and a reason."
    ),
    "bench": Entry("inspector.bench.cli:app", "Benchmarks."),
    "demo": Entry(
        "inspector.demo.cli:demo",
        "Run the demo line: worker + edge agent on the local broker, drawn parts, verdicts.",
    ),
    "doctor": Entry(
        "inspector.doctor.cli:doctor",
        "Check this host's settings against the broker, store, model, GPU, disk and clocks.",
    ),
    "review": Entry("inspector.review.cli:review_app", "The review web app."),
    "users": Entry("inspector.review.cli:users_app", "Review-app users and API tokens."),
    "retention": Entry(
        "inspector.store.retention_cli:retention",
        "Remove old photo and voice-note blobs; inspections, verdicts and reviews stay.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module behind `name` and build its click command."""
    module_name, _, attribute = COMMANDS[name].target.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _plain_help(command)
    return command


def _plain_help(command: click.Command) -> None:
    """Click's own help layout for `command` and everything under it.

    Typer's rich panels cut long option names at 80 columns or through a pipe
    (`--rationale-toke…`) and give flags a `<bool>` metavar; click's layout wraps the help
    text instead and never shortens an option.
    """
    if isinstance(command, TyperCommand | TyperGroup):
        command.rich_markup_mode = None
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _plain_help(sub)


class LazyGroup(TyperGroup):
    """The root group: lists `COMMANDS` from their entries, imports one only to run it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        self._loaded: dict[str, click.Command] = {}
        # Names only, so typer's "did you mean" suggestions know every command.
        for name, entry in COMMANDS.items():
            self.commands[name] = TyperCommand(name, help=entry.help)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return self.commands[cmd_name]
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = load_command(cmd_name)
        return self._loaded[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing shows each entry's help without importing its module.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="inspector",
    cls=LazyGroup,
    help="Factory inspection from photos and operator voice notes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

err_console = Console(stderr=True)


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    remember_config(ctx, config)


def schema(
    message: Annotated[
        str | None,
        typer.Argument(
            help="One message: request, verdict, rejection, worker-status, adapter-control, "
            "canary-health."
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of the wire messages."""
    from inspector.protocol import message_schemas

    schemas = message_schemas()
    if message is not None:
        if message not in schemas:
            raise typer.BadParameter(
                f"unknown message {message!r}; choose one of {', '.join(schemas)}",
                param_hint="MESSAGE",
            )
        out: dict[str, Any] = schemas[message]
    else:
        out = schemas
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


def codes(
    code: Annotated[
        str | None,
        typer.Argument(help="One code, e.g. image.too_small (all of them when left out)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines: code, meaning, example.")
    ] = False,
) -> None:
    """List every error and rejection code: its meaning and a reason."""
    import difflib

    from inspector.codes import CODES
    from inspector.safetext import json_line

    chosen = list(CODES.items())
    if code is not None:
        chosen = [(c, doc) for c, doc in chosen if c.value == code.strip().lower()]
        if not chosen:
            names = [c.value for c in CODES]
            near = difflib.get_close_matches(code.lower(), names, n=3, cutoff=0.5)
            near += [n for n in names if code.lower() in n and n not in near][: 3 - len(near)]
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise typer.BadParameter(
                f"no code {code!r}{hint} (`inspector codes` lists them all)", param_hint="CODE"
            )
    if as_json:
        for c, doc in chosen:
            sys.stdout.write(
                json_line({"code": c.value, "meaning": doc.meaning, "example": doc.example}) + "\n"
            )
        return
    if code is not None:
        c, doc = chosen[0]
        out = Console(highlight=False)
        out.print(f"[bold]{c.value}[/]")
        out.print(f"  meaning: {terminal(doc.meaning)}")
        out.print(f"  example: {terminal(doc.example)}")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=True)
    table.add_column("code", no_wrap=True)
    table.add_column("meaning", overflow="fold")
    table.add_column("example reason", overflow="fold")
    for c, doc in chosen:
        table.add_row(Text(c.value, style="bold"), Text(doc.meaning), Text(doc.example))
    Console().print(table)


def main() -> None:
    """Console entry point: runs the app, turning Inspector errors into clear messages."""
    try:
        app()
    except ConfigError as exc:
        message = terminal(exc.message, multiline=True)
        err_console.print(f"[bold red]configuration error[/]: {message}", highlight=False)
        raise SystemExit(2) from None
    except InspectorError as exc:
        message = terminal(exc.message, multiline=True)
        err_console.print(f"[bold red]error[/]: {message}", highlight=False)
        raise SystemExit(1) from None
