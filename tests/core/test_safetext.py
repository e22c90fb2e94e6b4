"""Untrusted text on every screen: a terminal, a spreadsheet, a JSON Lines file."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from rich.text import Text

from inspector.safetext import csv_cell, first_unsafe, json_line, terminal, visible

HOSTILE = [
    "[/]",
    "[link=https://evil.example]click[/link]",
    "[bold red on white]FAIL",
    "P-\u202eLIAF\u202c",
    "a\x9b31mred",
    "a\x9d8;;https://x\x9cb",
    "a\x1b]8;;https://x\x07b",
    "line\u2028break\u2029para\x85nel",
    "nul\x00bell\x07del\x7f",
    "zero\u200bwidth\u2066iso\u2069",
    "lone \ud800 surrogate",
    "tag \U000e0041 char",
    "trailing backslash \\",
]


def rendered(markup: str) -> str:
    out = io.StringIO()
    Console(
        file=out, force_terminal=True, color_system="truecolor", width=200, highlight=False
    ).print(markup)
    return out.getvalue()


def unsafe_in(output: str) -> list[str]:
    # The console's own SGR sequences start with ESC [ ... m; anything else is from the text.
    stripped = re.sub(r"\x1b\[[0-9;]*m", "", output)
    return [ch for ch in stripped if first_unsafe(ch, allow="\n") is not None]


@pytest.mark.parametrize("text", HOSTILE)
def test_terminal_shows_hostile_text_literally_without_markup_or_controls(text: str) -> None:
    out = rendered(f"part {terminal(text)} [bold]end[/]")
    assert unsafe_in(out) == []
    assert "\x1b]8" not in out, "no live hyperlink"
    plain = rendered(f"part {terminal(text)}")
    assert plain.count("\x1b[") == 0, "no styling comes from the text"


def test_bidi_override_is_spelled_out_so_a_part_never_reads_as_fail() -> None:
    assert terminal("P-\u202eLIAF\u202c") == "P-\\u202eLIAF\\u202c"
    assert visible("x\u2028y\x85z\x9b") == "x\\u2028y\\x85z\\x9b"


def test_markup_in_a_part_id_prints_as_typed() -> None:
    out = rendered(terminal("[/] [link=https://e.example]x[/link] [bold red on white]"))
    assert "[/] [link=https://e.example]x[/link] [bold red on white]" in out


def test_table_cells_and_text_objects_stay_literal() -> None:
    table = Table("part")
    table.add_row(terminal("[/]\u202e"))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    console.print(table)
    console.print(Text(visible("[link=x]y\x1b[2J")))
    assert "[/]\\u202e" in out.getvalue()
    assert "[link=x]y\\x1b[2J" in out.getvalue()


def test_multiline_keeps_newlines_and_nothing_else() -> None:
    assert visible("a\nb\r\tc", multiline=True) == "a\nb\\x0d\\x09c"
    assert visible("a\nb") == "a\\x0ab"


def test_ordinary_text_in_any_script_is_unchanged() -> None:
    for text in ("Größe 3 mm", "部品 ひび割れ", "שלום", "مرحبا", "emoji 🙂", "a-b_c.d/e #4"):
        assert visible(text) == text
        assert terminal(text) == text


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cell_never_starts_a_formula(start: str) -> None:
    cell = csv_cell(f'{start}HYPERLINK("https://evil")')
    assert cell.startswith("'")


def test_csv_cell_keeps_numbers_and_plain_text() -> None:
    assert csv_cell(-0.5) == "-0.5"
    assert csv_cell(3) == "3"
    assert csv_cell(None) == ""
    assert csv_cell("P-001") == "P-001"
    assert csv_cell("P-\u202eLIAF") == "P-\\u202eLIAF"


def test_csv_round_trip_through_the_csv_module_keeps_cells_apart() -> None:
    out = io.StringIO()
    csv.writer(out).writerow([csv_cell('=1+1,"x"\nnext'), csv_cell("ok")])
    (row,) = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ['\'=1+1,"x"\nnext', "ok"]


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_every_string_is_safe_after_each_helper(text: str) -> None:
    assert first_unsafe(visible(text)) is None
    assert first_unsafe(visible(text, multiline=True), allow="\n") is None
    assert first_unsafe(csv_cell(text), allow="\n") is None
    line = json_line({"t": text})
    assert first_unsafe(line) is None
    assert json.loads(line) == {"t": text}, "JSON Lines stay exact"
    rendered(terminal(text))  # never a MarkupError


def test_first_unsafe_names_position_and_kind() -> None:
    found = first_unsafe("P-\u202eX")
    assert found is not None
    assert found.position == 3
    assert found.describe() == "a bidirectional formatting character (U+202E) at position 3"
    assert first_unsafe("tab\there", allow="\t") is None
    assert first_unsafe("Größe") is None


def test_excerpt_quotes_at_most_64_characters_and_gives_the_length() -> None:
    from inspector.safetext import excerpt

    assert excerpt("Osaka") == "'Osaka'"
    long = excerpt("x" * 10_309)
    assert long == "'" + "x" * 64 + "…' (10309 characters)"
    hostile = excerpt("\x1b[2J" * 100)
    assert "\x1b" not in hostile and hostile.endswith("(400 characters)")
    assert len(hostile) < 100


def test_joiners_show_as_typed_between_visible_characters_and_escaped_elsewhere() -> None:
    family = "\U0001f468\u200d\U0001f469"
    assert visible(family) == family
    assert json.loads(json_line({"t": family})) == {"t": family} and "\\u" not in json_line(family)
    assert visible("\u200dx") == "\\u200dx"
    stray = first_unsafe("x\u200d")
    assert stray is not None and "joins no two visible characters" in stray.describe()
