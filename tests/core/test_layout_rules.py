"""House rules as checks: one coded error family.

The import rules (SQL only in the store, a light core, edge on the light core only, no torch
in the worker, no MQTT in the engine or training...) are import-linter contracts in
pyproject.toml, checked by `lint-imports` in `make test` and `make lint`.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from inspector import errors
from inspector.errors import Code, InspectorError, RejectedInput

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for pkg in ("inspector", "edge") for p in (REPO / pkg).rglob("*.py"))


def _error_classes() -> list[type[InspectorError]]:
    found: list[type[InspectorError]] = []
    todo = [InspectorError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_class_lives_in_errors_and_carries_a_code() -> None:
    import inspector.client
    import inspector.demo.line
    import inspector.mqtt
    import inspector.store  # noqa: F401  (load every module that raises errors)

    classes = [c for c in _error_classes() if c is not InspectorError]
    assert {c.__module__ for c in classes} == {"inspector.errors"}
    for cls in classes:
        if issubclass(cls, RejectedInput):
            continue  # a refusal's code is given per instance
        assert isinstance(cls.code, Code), cls.__name__


def test_the_bare_base_cannot_be_raised() -> None:
    with pytest.raises(TypeError, match="subclass"):
        InspectorError("no code")
    assert errors.ConfigError("x").code is Code.CONFIG_INVALID


def test_no_module_raises_the_bare_base_class() -> None:
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "InspectorError"
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_codes_are_unique_dotted_names() -> None:
    values = [c.value for c in Code]
    assert len(values) == len(set(values))
    assert all("." in v and v == v.lower() for v in values)
    assert inspect.getsource(errors).count("class ") >= len(_error_classes())
