"""The shipped config/inspector.toml and the README's settings table state settings.py's defaults.

A default written in three places drifts: the shipped file once turned `model.compile` off
while the README's measurements were taken with it on. Each key the file or the table names
is validated by its own settings model and compared with that model's default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from inspector.settings import Settings

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "config" / "inspector.toml"
README = ROOT / "README.md"

# Keys the shipped file sets away from the default on purpose, as its comments say. The
# example site profile describes the demo line's part: what the model is told about a part
# is content, not a tunable, so these four keys are the only exceptions.
DELIBERATELY_DIFFERENT = frozenset(
    {
        "sites.default.part",
        "sites.default.instructions",
        "sites.default.voice_hint",
        "sites.default.defects",
    }
)

# The README's settings table: its header, then rows of `section.key` | default | ... .
TABLE_HEADER = re.compile(r"^\|\s*setting\s*\|\s*default\s*\|")
TABLE_ROW = re.compile(r"^\|\s*`(?P<key>[a-z_]+(?:\.[a-z_]+)+)`\s*\|\s*(?P<value>[^|]+?)\s*\|")


def _leaves(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every `a.b.c` key of a TOML document with its value (arrays are values)."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield ".".join((*prefix, key)), value


def _owner(dotted: str) -> tuple[type[BaseModel], str]:
    """The settings model that holds the last part of `dotted`, and that field's name."""
    model: type[BaseModel] = Settings
    parts = dotted.split(".")
    i = 0
    while i < len(parts) - 1:
        annotation = model.model_fields[parts[i]].annotation
        if get_origin(annotation) is dict:  # e.g. sites.<site>.<key>: skip the site's name
            annotation = get_args(annotation)[1]
            i += 1
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel), dotted
        model = annotation
        i += 1
    return model, parts[-1]


def _differs_from_default(dotted: str, value: Any) -> tuple[Any, Any] | None:
    """(value as validated, default) when `value` is not the default of `dotted`, else None."""
    model, key = _owner(dotted)
    assert key in model.model_fields, f"{dotted} is not a setting"
    given = getattr(model.model_validate({key: value}), key)
    default = model.model_fields[key].get_default(call_default_factory=True)
    return None if given == default else (given, default)


def _readme_settings() -> dict[str, Any]:
    """The `section.key` rows of the README's settings table, values read as TOML."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if TABLE_HEADER.match(line))
    rows: dict[str, Any] = {}
    for line in lines[start + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        match = TABLE_ROW.match(line)
        if match is not None:  # rows such as "photo size" name no setting
            rows[match["key"]] = tomllib.loads(f"v = {match['value']}")["v"]
    return rows


def test_shipped_config_sets_each_key_to_its_default_unless_listed_as_deliberate() -> None:
    shipped = dict(_leaves(tomllib.loads(CONFIG.read_text(encoding="utf-8"))))
    differing = {
        key: diff
        for key, value in shipped.items()
        if key not in DELIBERATELY_DIFFERENT and (diff := _differs_from_default(key, value))
    }
    assert differing == {}, "config/inspector.toml: (value, default) per key"


def test_the_deliberate_exceptions_are_in_the_shipped_config_and_do_differ() -> None:
    shipped = dict(_leaves(tomllib.loads(CONFIG.read_text(encoding="utf-8"))))
    for key in DELIBERATELY_DIFFERENT:
        assert key in shipped, f"{key} is no longer in the shipped config: drop it from the list"
        assert _differs_from_default(key, shipped[key]) is not None, f"{key} is the default"


def test_readme_settings_table_states_the_defaults() -> None:
    table = _readme_settings()
    assert {"model.compile", "worker.max_batch", "model.max_rationale_tokens"} <= table.keys()
    differing = {
        key: diff for key, value in table.items() if (diff := _differs_from_default(key, value))
    }
    assert differing == {}, "README.md settings table: (value, default) per key"


def test_model_compile_is_on_in_the_default_the_shipped_config_and_the_readme() -> None:
    shipped = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert Settings.model_fields["model"].get_default(call_default_factory=True).compile is True
    assert shipped["model"]["compile"] is True
    assert _readme_settings()["model.compile"] is True
