"""`python -m edge run|status|send`: the edge commands without the rest of the CLI."""

from __future__ import annotations

from .cli import app

if __name__ == "__main__":
    app(prog_name="inspector edge")
