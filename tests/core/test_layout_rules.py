"""House rules as checks: SQL only in the store, one coded error family."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from inspector import errors
from inspector.errors import Code, InspectorError, RejectedInput

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for pkg in ("inspector", "edge") for p in (REPO / pkg).rglob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):  # inside functions too
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_no_module_outside_the_store_imports_sqlalchemy_or_alembic() -> None:
    store = REPO / "inspector" / "store"
    offenders = [
        str(path.relative_to(REPO))
        for path in SOURCES
        if not path.is_relative_to(store)
        and any(
            name.split(".")[0] in ("sqlalchemy", "alembic")
            for name in _imports(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert offenders == []


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
