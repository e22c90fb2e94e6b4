"""`python -m edge run|status|send`: the edge commands without the rest of the CLI."""

from __future__ import annotations

from .cli import edge_commands

if __name__ == "__main__":
    edge_commands()(prog_name="inspector edge")
