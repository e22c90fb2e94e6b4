"""The shape of the command line: no import cycles, light commands, every entry loads."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.cli import COMMANDS, load_command
from inspector.context import DEFAULT_CONFIG
from inspector.settings import DEFAULT_CONFIG as SETTINGS_DEFAULT_CONFIG
from tests.fixtures.edge import BrokerObserver, jpeg_bytes

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("inspector", "edge")
HEAVY = ("torch", "transformers", "sqlalchemy", "alembic", "inspector.store", "inspector.worker")

# Runs `inspector ARGS…` in this interpreter and, at exit, writes which heavy modules it held.
PROBE = """
import atexit, json, sys
out, sys.argv = sys.argv[1], ["inspector", *sys.argv[2:]]
heavy = {heavy!r}
atexit.register(
    lambda: open(out, "w").write(json.dumps([m for m in heavy if m in sys.modules]))
)
from inspector.cli import main
main()
"""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, module: str) -> set[str]:
    """Modules imported when `module` is imported: not inside functions, not TYPE_CHECKING."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
    return {
        name: {m for m in _top_level_imports(path, name) if m in files and m != name}
        for name, path in files.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    return cycles


def test_no_module_of_inspector_or_edge_is_part_of_an_import_cycle() -> None:
    graph = _import_graph()
    assert "edge.config" in graph["edge.cli"]  # the graph holds relative imports too
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_and_skips_imports_inside_functions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cli.py"
    path.write_text("from inspector.cli import app\n")
    assert "inspector.cli" in _top_level_imports(path, "inspector.worker.cli")
    path.write_text("def f():\n    from inspector.cli import app\n")
    assert "inspector.cli" not in _top_level_imports(path, "inspector.worker.cli")
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_only_the_entry_point_imports_the_root_command() -> None:
    # Command modules take settings and the store from inspector.context; one importing
    # inspector.cli (even inside a function) would run while the root is half-built.
    importers = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                if "inspector.cli" in names:
                    importers.append(_module_name(path))
    assert importers == ["inspector.__main__"]


def _heavy_modules_loaded(tmp_path: Path, args: list[str], **kwargs: object) -> list[str]:
    out = tmp_path / "modules.json"
    code = PROBE.format(heavy=HEAVY)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = kwargs.get("until")
    if isinstance(ready, str):
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line:
                break
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out.exists(), output
    loaded: list[str] = json.loads(out.read_text())
    return loaded


def _edge_config(tmp_path: Path, unique: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[station]\nsite = "{unique}"\nline = "l1"\nstation = "s1"\n'
        f'client_id = "edge-{unique}"\n[broker]\nsession_expiry_s = 60\n'
        f'[spool]\npath = "{tmp_path / "spool.db"}"\n'
    )
    return path


def test_inspector_help_loads_neither_torch_sql_the_store_nor_the_worker(
    tmp_path: Path,
) -> None:
    assert _heavy_modules_loaded(tmp_path, ["--help"]) == []


def test_edge_send_status_and_run_load_neither_torch_sql_the_store_nor_the_worker(
    tmp_path: Path, unique: str, broker: tuple[str, int]
) -> None:
    config = str(_edge_config(tmp_path, unique))
    photo = tmp_path / "P-1.jpg"
    photo.write_bytes(jpeg_bytes())
    observer = BrokerObserver(*broker, f"inspector/v1/{unique}/+/+/request")
    try:
        send = ["edge", "send", "--config", config, "--no-verdicts", "--wait", "10", str(photo)]
        assert _heavy_modules_loaded(tmp_path, send) == []
        assert len(observer.wait_for(1, timeout=10)) == 1  # the command really sent it
    finally:
        observer.close()
    assert _heavy_modules_loaded(tmp_path, ["edge", "status", "--config", config]) == []
    run = ["edge", "run", "--config", config, "--no-keyboard"]
    assert _heavy_modules_loaded(tmp_path, run, until="edge agent") == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_and_lists_the_help_it_has(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").strip().splitlines()[0] == COMMANDS[name].help


def test_every_command_gets_the_root_config_default_the_settings_use() -> None:
    assert Path(DEFAULT_CONFIG) == SETTINGS_DEFAULT_CONFIG
