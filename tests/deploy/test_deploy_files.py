"""deploy/: systemd units, the compose file and the Postgres script agree with the code."""

from __future__ import annotations

import configparser
import inspect
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from inspector.settings import Settings
from inspector.worker.service import Worker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/inspector/.venv/bin/inspector"
# How long a worker may drain after SIGTERM before it gives up (`inspector serve` uses the default).
DRAIN_S = float(inspect.signature(Worker.stop).parameters["timeout"].default)


class _UnitParser(configparser.ConfigParser):
    """systemd unit files: case-sensitive keys, repeatable keys, no % interpolation."""

    def __init__(self) -> None:
        super().__init__(strict=False, interpolation=None)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _unit(name: str) -> configparser.ConfigParser:
    parser = _UnitParser()
    parser.read_string((UNITS / name).read_text())
    return parser


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert match, f"unexpected time span {value!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_units_verify_without_warnings(tmp_path: Path) -> None:
    inspector = Path(sys.executable).with_name("inspector")
    for unit in UNITS.glob("*.service"):
        # verify insists that ExecStart's program exists: point it at this checkout's.
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(inspector)))
    instances = [
        tmp_path / "inspector-worker@0.service",
        tmp_path / "inspector-edge@s3.service",
        tmp_path / "inspector-review.service",
    ]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, instances)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize(
    "name", ["inspector-worker@.service", "inspector-edge@.service", "inspector-review.service"]
)
def test_units_restart_on_failure_and_stop_with_sigterm(name: str) -> None:
    service = _unit(name)["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert _seconds(service["TimeoutStopSec"]) >= 30
    # The command line is one the CLI accepts (unknown options fail before --help runs).
    argv = shlex.split(service["ExecStart"].replace("%i", "s3"))
    assert argv[0] == INSTALLED
    done = subprocess.run(
        [sys.executable, "-m", "inspector", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_worker_unit_waits_longer_than_the_worker_drains() -> None:
    service = _unit("inspector-worker@.service")["Service"]
    assert _seconds(service["TimeoutStopSec"]) > DRAIN_S
    assert service["KillMode"] == "mixed"  # SIGTERM to `inspector serve` only, not its children


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "$")):
            mounts.append((source, target))
    return mounts


def test_compose_runs_broker_database_a_gpu_worker_and_the_review_app() -> None:
    services = _compose()["services"]
    assert set(services) == {"mosquitto", "postgres", "worker", "review"}
    review = services["review"]
    assert review["command"][-6:] == ["review", "serve", "--host", "0.0.0.0", "--port", "8080"]
    # The review app shows the workers' photos: it mounts the volume their blobs are on.
    assert "inspector-data:/var/lib/inspector" in review["volumes"]
    assert "inspector-data:/var/lib/inspector" in services["worker"]["volumes"]
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert worker["stop_signal"] == "SIGTERM"
    assert _seconds(worker["stop_grace_period"]) > DRAIN_S
    assert worker["command"][-1] == "serve"


def test_compose_files_exist_or_are_secrets_the_readme_lists() -> None:
    compose = _compose()
    readme = (DEPLOY / "README.md").read_text()
    sources = [src for svc in compose["services"].values() for src, _ in _bind_mounts(svc)]
    sources += [svc["env_file"] for svc in compose["services"].values() if "env_file" in svc]
    sources += [secret["file"] for secret in compose["secrets"].values()]
    for source in sources:
        if source.startswith("./secrets/"):
            # The file itself or the folder holding it (secrets/tls/ holds the certificates).
            path = Path(source.removeprefix("./"))
            named = [str(path), f"{path}/"] + [f"{p}/" for p in path.parents if len(p.parts) > 1]
            assert any(f"`{name}`" in readme for name in named), f"{source} is not explained"
        elif source.startswith("."):
            assert (DEPLOY / source).exists(), f"compose.yaml names a missing {source}"


def test_compose_mounts_everything_the_broker_config_reads() -> None:
    mosquitto = _compose()["services"]["mosquitto"]
    targets = [volume.split(":")[1] for volume in mosquitto["volumes"]]
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    config_path = next(t for s, t in _bind_mounts(mosquitto) if s.endswith("mosquitto.conf"))
    assert f"-c {config_path}" in mosquitto["command"][-1]
    keys = ("password_file", "acl_file", "cafile", "certfile", "keyfile", "persistence_location")
    for key in keys:
        path = re.search(rf"(?m)^{key} (\S+)$", conf)
        assert path, f"mosquitto.conf sets no {key}"
        assert any(path[1].startswith(t.rstrip("/") + "/") or path[1] == t for t in targets), (
            f"{key} {path[1]} is not inside a mounted path"
        )


def test_compose_worker_environment_names_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _compose()["services"]["worker"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    for key in env:
        node: Any = settings
        for part in key.removeprefix("INSPECTOR_").lower().split("__"):
            assert hasattr(node, part), f"{key}: no setting {part!r}"
            node = getattr(node, part)
    assert settings.broker.tls.enabled and settings.broker.port == 8883


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql")
def test_postgres_script_creates_a_role_that_can_migrate_its_database(
    pg_admin: sa.Engine, tmp_path: Path
) -> None:
    name = f"inspector_{uuid.uuid4().hex[:10]}"
    run = [
        "psql",
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "test",
        "-v",
        f"role={name}",
        "-v",
        f"database={name}",
        "-f",
        str(DEPLOY / "postgres.sql"),
    ]
    try:
        missing = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
        assert missing.returncode != 0 and "password" in missing.stderr
        done = subprocess.run(
            [*run, "-v", "password=pw"], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        url = f"postgresql+psycopg://{name}:pw@127.0.0.1:5432/{name}"
        upgrade = subprocess.run(
            [sys.executable, "-m", "inspector", "db", "upgrade"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={"INSPECTOR_STORE__URL": url, "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
