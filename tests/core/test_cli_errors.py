"""Errors that point at the fix, and help that is whole at any width or through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer import _click as click
from typer.core import TyperGroup

from inspector.cli import COMMANDS, load_command
from inspector.errors import ConfigError
from inspector.settings import load_settings


def piped(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`inspector ARGS` with stdout and stderr through pipes at 80 columns."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args],
        capture_output=True,  # stdout and stderr are pipes, as under `| jq`
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": "80", **(env or {})},
        check=False,
    )


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text("[worker]\nmax_batch = 8\n")
    out = piped("--config", str(cfg), "verdicts", "list", env={"INSPECTOR_WORKER__MAX_BATCH": "0"})
    assert out.returncode == 2
    assert "\\x0a" not in out.stderr, "real newlines, not escapes"
    lines = out.stderr.splitlines()
    assert any(line.strip().startswith("worker.max_batch:") for line in lines), out.stderr
    assert "set by the environment variable INSPECTOR_WORKER__MAX_BATCH" in out.stderr
    assert str(cfg) not in out.stderr


def test_a_bad_value_in_the_file_names_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text('# site\n[broker]\nhost = "mq"\n\n[worker]\nmax_wait_ms = 5\nmax_batch = 0\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert f"set in {cfg} line 7" in info.value.message
    assert "worker.max_batch: Input should be greater than or equal to 1 (got 0)" in (
        info.value.message
    )


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("[worker]\nmax_bach = 3\n", "did you mean 'max_batch'?"),
        ("[broker]\nhots = 'mq'\n", "did you mean 'host'?"),
        ("[limits]\nmax_image = 3\n", "did you mean 'max_images'?"),
        ("[brokr]\nhost = 'mq'\n", "did you mean 'broker'?"),
    ],
)
def test_an_unknown_key_gets_the_nearest_valid_one(
    tmp_path: Path, text: str, suggestion: str
) -> None:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert suggestion in info.value.message
    assert f"set in {cfg} line" in info.value.message


def test_a_mistyped_environment_variable_gets_the_nearest_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INSPECTOR_WORKER__MAX_BACH", "3")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert "did you mean 'max_batch'?" in info.value.message
    assert "INSPECTOR_WORKER__MAX_BACH" in info.value.message


def _commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(path: str, command: click.Command) -> None:
        found.append((path, command))
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(f"{path} {name}", sub)

    for name in COMMANDS:
        walk(name, load_command(name))
    return found


def test_help_never_shortens_an_option_name_and_flags_show_no_metavar() -> None:
    for path, command in _commands():
        for width in (60, 80):
            ctx = click.Context(command, info_name=path, terminal_width=width)
            text = command.get_help(ctx)
            for param in command.params:
                for opt in (*param.opts, *param.secondary_opts):
                    if opt.startswith("-"):
                        assert opt in text, f"{path} --help at {width} columns cuts {opt}"
            assert "<bool>" not in text, f"{path} --help shows a metavar for a flag"


def test_help_through_a_pipe_is_whole() -> None:
    out = piped("bench", "engine", "--help")
    assert out.returncode == 0, out.stderr
    assert "--rationale-tokens" in out.stdout
    assert "--baseline / --no-baseline" in out.stdout
    assert "<bool>" not in out.stdout


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [("--site", "Osaka", "did you mean 'osaka'?"), ("--station", "line 3/s1", "'line-3-s1'")],
)
def test_filters_refuse_a_value_that_is_not_a_slug_and_say_which(
    tmp_path: Path, option: str, value: str, hint: str
) -> None:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n')
    out = piped("--config", str(cfg), "verdicts", "list", option, value)
    assert out.returncode == 2
    flat = " ".join(out.stderr.replace("│", " ").split())
    assert f"'{value}' is not a slug" in flat and option in flat and hint in flat
