"""`pip install 'inspector[edge]'` is all a line station needs: no SQL, no torch, no worker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.fixtures.edge import BrokerObserver, jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only `inspector[edge]` installed from this tree."""
    home = tmp_path_factory.mktemp("edge-venv")
    # A copy of the tree, so the build leaves nothing behind in the checkout.
    source = home / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "var", "build", "*.egg-info", "__pycache__"),
    )
    env_dir = home / "venv"
    # This interpreter's pip installs into the new environment (`pip --python`): the same
    # resolver and install as a pip of its own, without seeding one there first. Byte
    # compiling is left to the first import of each module.
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "--quiet", "--no-compile", f"{source}[edge]"],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return env_dir


@pytest.mark.slow
def test_an_edge_install_holds_neither_sql_torch_nor_the_web_stack(edge_venv: Path) -> None:
    python = edge_venv / "bin" / "python"
    code = (
        "import importlib.util as u\n"
        "print(','.join(m for m in ('sqlalchemy', 'alembic', 'psycopg', 'torch', "
        "'transformers', 'fastapi', 'prometheus_client') if u.find_spec(m)))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_an_edge_install_sends_a_photo_to_the_real_broker(
    edge_venv: Path, tmp_path: Path, unique: str, broker: tuple[str, int]
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[station]\nsite = "{unique}"\nline = "l1"\nstation = "s1"\n'
        f'client_id = "edge-{unique}"\n[broker]\nhost = "{broker[0]}"\nport = {broker[1]}\n'
        f'session_expiry_s = 60\n[spool]\npath = "{tmp_path / "spool.db"}"\n'
    )
    photo = tmp_path / "P-7.jpg"
    photo.write_bytes(jpeg_bytes())
    observer = BrokerObserver(*broker, f"inspector/v1/{unique}/l1/s1/request")
    try:
        command = [str(edge_venv / "bin" / "inspector"), "edge", "send", "--config", str(config)]
        command += ["--no-verdicts", "--wait", "20", str(photo)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 capture(s) delivered to the broker" in out.stdout
        (message,) = observer.wait_for(1, timeout=20)
        assert b'"part_id":"P-7"' in message.payload
    finally:
        observer.close()
