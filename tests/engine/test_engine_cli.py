"""`inspector model tiny` and `inspector infer` through a typer app, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from inspector.cli import app as root_app
from inspector.media import encode_jpeg, encode_wav
from tests.engine.media import photo, voice


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return root_app


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "a.jpg": tmp_path / "a.jpg",
        "b.jpg": tmp_path / "b.jpg",
        "note.wav": tmp_path / "note.wav",
        "bad.jpg": tmp_path / "bad.jpg",
        "site.toml": tmp_path / "site.toml",
    }
    paths["a.jpg"].write_bytes(encode_jpeg(photo(48, 64, 1)))
    paths["b.jpg"].write_bytes(encode_jpeg(photo(90, 60, 2)))
    paths["note.wav"].write_bytes(encode_wav(voice(1.0, 3)))
    paths["bad.jpg"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths["site.toml"].write_text(
        "[model]\nmax_rationale_tokens = 5\n"
        f"adapters_dir = '{tmp_path / 'adapters'}'\n"
        "[sites.plant-a]\npart = 'valve body'\nthreshold = 1.0\n"
    )
    return paths


def test_model_tiny_writes_a_loadable_checkpoint(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    assert "tiny model written" in result.output
    assert (tmp_path / "tiny" / "vision-lora" / "adapter_model.safetensors").is_file()


def test_infer_prints_the_verdict_json(
    app: typer.Typer, tiny_model_dir: Path, files: dict[str, Path]
) -> None:
    args = ["--config", str(files["site.toml"]), "infer", "--model", str(tiny_model_dir)]
    args += ["--image", str(files["a.jpg"]), "--image", str(files["b.jpg"])]
    args += ["--audio", str(files["note.wav"]), "--note", "flange ok", "--site", "plant-a"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "REVIEW"  # plant-a's threshold of 1.0 sends all to a person
    assert 0 < verdict["p_pass"] < 1
    assert verdict["adapter"] == "base" and verdict["adapter_fallback"] is False
    assert verdict["prompt_version"] == "inspect-v1"
    assert verdict["rationale_tokens"] <= 5
    assert verdict["model"] == tiny_model_dir.name


def test_infer_refuses_a_bad_photo_with_its_code(
    app: typer.Typer, tiny_model_dir: Path, files: dict[str, Path]
) -> None:
    args = ["infer", "--model", str(tiny_model_dir), "--image", str(files["bad.jpg"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "[image.undecodable]" in result.stderr


def test_infer_names_a_missing_model_directory(
    app: typer.Typer, tmp_path: Path, files: dict[str, Path]
) -> None:
    args = ["infer", "--model", str(tmp_path / "nowhere"), "--image", str(files["a.jpg"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert f"model directory {tmp_path / 'nowhere'} does not exist" in result.stderr
