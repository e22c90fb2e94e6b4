"""`inspector model tiny` never harms a directory: it writes only into a new or empty one."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from inspector.cli import app
from inspector.engine.identity import is_tiny_model
from tests.fixtures.download import Download


def tiny(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["model", "tiny", *args])
    return done.exit_code, done.output


def test_tiny_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    code, output = tiny(str(tmp_path))
    assert code == 1 and "model.target_not_empty" in output
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_tiny_force_never_touches_a_real_checkpoints_shards(
    download: Download, tmp_path: Path
) -> None:
    model = tmp_path / "Phi-4-multimodal-instruct"
    shutil.copytree(download.published, model)
    before = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    code, output = tiny(str(model), "--force")
    assert code == 1 and "never replaced" in output
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == before
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_tiny_force_replaces_an_earlier_tiny_model(tmp_path: Path) -> None:
    model = tmp_path / "tiny"
    assert tiny(str(model))[0] == 0
    first = (model / "model.safetensors").read_bytes()
    code, _ = tiny(str(model), "--seed", "7", "--force")
    assert code == 0 and is_tiny_model(model)
    assert (model / "model.safetensors").read_bytes() != first
