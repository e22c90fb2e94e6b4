"""One table of codes: complete, printed by `inspector codes`, and copied in the README."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inspector.cli import app
from inspector.codes import CODES, README_END, README_START, markdown_table
from inspector.errors import Code
from inspector.safetext import first_unsafe

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_code_has_a_meaning_and_an_example_reason() -> None:
    assert set(CODES) == set(Code)
    for doc in CODES.values():
        assert doc.meaning.endswith(".") and doc.example
        assert first_unsafe(doc.example) is None


def test_the_readme_holds_the_same_table() -> None:
    text = README.read_text(encoding="utf-8")
    inside = text.split(README_START, 1)[1].split(README_END, 1)[0]
    assert inside.strip() == markdown_table(), "regenerate the README table from inspector.codes"


def test_inspector_codes_prints_every_code_with_its_reason() -> None:
    result = CliRunner().invoke(app, ["codes"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for code in CODES:
        assert code.value in result.output
    assert "images[0].content_type: 'text/plain' is not a supported type" in result.output


def test_inspector_codes_code_shows_that_one_code() -> None:
    result = CliRunner().invoke(app, ["codes", "image.too_small"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "image.too_small"
    assert CODES[Code.IMAGE_TOO_SMALL].meaning in result.output
    assert "payload.too_large" not in result.output


def test_an_unknown_code_is_refused_with_the_nearest_codes() -> None:
    result = CliRunner().invoke(app, ["codes", "image.to_small"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "no code 'image.to_small'" in result.output
    assert "did you mean image.too_small" in result.output
