"""`inspector doctor` as an operator runs it: each broken thing named, with what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from inspector.demo.review import ReviewProcess
from inspector.engine.importing import import_model
from inspector.engine.layout import import_command
from inspector.protocol import utcnow
from inspector.store import Store, record_inspection
from inspector.store.database import alembic_config
from inspector.store.models import Inspection
from tests.core.helpers import make_request
from tests.fixtures.deploy import MAKE_CERTS, PASSWORDS, running_deploy_broker
from tests.fixtures.download import Download
from tests.fixtures.services import free_port
from tests.fixtures.tls import run_tool

# The model and GPU checks load torch (seconds), the review check needs a running app; tests
# about other checks leave them out.
NO_TORCH = ("--skip", "model", "--skip", "gpu", "--skip", "review")


def _config(tmp_path: Path, broker: tuple[str, int], model: Path, **over: Any) -> Path:
    values = {
        "broker_port": broker[1],
        "url": f"sqlite:///{tmp_path / 'inspector.db'}",
        "blobs": tmp_path / "blobs",
        "model": model,
    }
    values.update(over)
    path = tmp_path / "inspector.toml"
    path.write_text(
        f'[broker]\nhost = "{broker[0]}"\nport = {values["broker_port"]}\nconnect_timeout_s = 3\n'
        f'[store]\nurl = "{values["url"]}"\nblob_dir = "{values["blobs"]}"\n'
        f'[model]\npath = "{values["model"]}"\n'
    )
    return path


def _doctor(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, dict[str, str]]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        check=False,
    )
    found = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        found[record["check"]] = record
    assert found, done.stdout + done.stderr
    return done.returncode, found


def _upgraded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'inspector.db'}"
    Store(url, tmp_path / "blobs").upgrade()
    return url


@pytest.mark.timeout(300)  # builds the tiny model and loads torch in a fresh process
def test_doctor_passes_on_a_ready_host_and_says_the_tiny_model_is_random(
    tmp_path: Path, broker: tuple[str, int], tiny_model_dir: Path
) -> None:
    _upgraded(tmp_path)
    code, found = _doctor(_config(tmp_path, broker, tiny_model_dir), "--skip", "review")
    assert code == 0, found
    assert {k: v["status"] for k, v in found.items()} == {
        "config": "ok",
        "broker": "ok",
        "migrations": "ok",
        "model": "warn",
        "gpu": "ok",
        "blob disk": "ok",
        "clock skew": "skip",
        "review": "skip",
    }
    assert "random" in found["model"]["detail"]
    assert "anonymously over plain TCP" in found["broker"]["detail"]


def test_doctor_names_a_wrong_broker_port(
    tmp_path: Path, broker: tuple[str, int], tiny_model_dir: Path
) -> None:
    _upgraded(tmp_path)
    port = free_port()
    config = _config(tmp_path, broker, tiny_model_dir, broker_port=port)
    code, found = _doctor(config, *NO_TORCH)
    assert code == 1
    assert found["broker"]["status"] == "fail"
    assert f"127.0.0.1:{port}" in found["broker"]["detail"]
    assert "broker.port" in found["broker"]["fix"]
    assert found["migrations"]["status"] == "ok"  # one failure does not hide the others


def test_doctor_names_a_missing_model_directory(tmp_path: Path, broker: tuple[str, int]) -> None:
    _upgraded(tmp_path)
    missing = tmp_path / "models" / "phi-4"
    code, found = _doctor(
        _config(tmp_path, broker, missing), "--skip", "broker", "--skip", "gpu", "--skip", "review"
    )
    assert code == 1
    assert found["model"]["status"] == "fail"
    assert str(missing) in found["model"]["detail"] and "does not exist" in found["model"]["detail"]
    assert "model.path" in found["model"]["fix"]
    # The fix never writes into model.path: it may hold a real model.
    assert "model tiny" not in found["model"]["fix"]
    assert "inspector model import" in found["model"]["fix"]
    assert found["broker"]["status"] == "skip"


@pytest.mark.timeout(300)  # loads torch in a fresh process
def test_doctor_gives_the_import_command_for_a_download_and_checks_the_import(
    tmp_path: Path, broker: tuple[str, int], download: Download
) -> None:
    _upgraded(tmp_path)
    skip = ("--skip", "broker", "--skip", "gpu", "--skip", "review")
    code, found = _doctor(_config(tmp_path, broker, download.published), *skip)
    assert code == 1 and found["model"]["status"] == "fail"
    assert "remote-code" in found["model"]["detail"]
    assert found["model"]["fix"].startswith(f"`{import_command(download.published)}`")
    imported = tmp_path / "imported"
    import_model(download.published, imported)
    code, found = _doctor(_config(tmp_path, broker, imported), *skip)
    assert found["model"]["status"] == "warn", found["model"]  # tiny weights: random verdicts
    # A file changed after the import is caught by the manifest.
    (imported / "tokenizer_config.json").write_text("{}")
    code, found = _doctor(_config(tmp_path, broker, imported), *skip)
    assert code == 1 and "differs from its manifest" in found["model"]["detail"]


def test_doctor_names_pending_migrations_without_creating_the_database(
    tmp_path: Path, broker: tuple[str, int], tiny_model_dir: Path
) -> None:
    config = _config(tmp_path, broker, tiny_model_dir)
    code, found = _doctor(config, "--skip", "broker", *NO_TORCH)
    assert code == 1 and found["migrations"]["status"] == "fail"
    assert "empty schema" in found["migrations"]["detail"]
    assert "inspector db upgrade" in found["migrations"]["fix"]
    assert not (tmp_path / "inspector.db").exists()

    # A database one release behind: the first migration only.
    url = f"sqlite:///{tmp_path / 'inspector.db'}"
    command.upgrade(alembic_config(url), "0001")
    code, found = _doctor(config, "--skip", "broker", *NO_TORCH)
    assert code == 1 and "revision 0001" in found["migrations"]["detail"]
    assert "pending" in found["migrations"]["detail"]


def test_doctor_names_a_station_whose_clock_runs_ahead(
    tmp_path: Path, broker: tuple[str, int], tiny_model_dir: Path
) -> None:
    url = _upgraded(tmp_path)
    store = Store(url, tmp_path / "blobs")
    try:
        with store.db.write() as s:
            for station, ahead_s in (("s1", 0.0), ("s2", 30.0)):
                for _ in range(3):
                    req = make_request(
                        station=station, captured_at=utcnow() + timedelta(seconds=ahead_s)
                    )
                    record_inspection(s, store.blobs, req)
        with store.db.read() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(Inspection)) == 6
    finally:
        store.close()
    code, found = _doctor(_config(tmp_path, broker, tiny_model_dir), "--skip", "broker", *NO_TORCH)
    assert code == 1 and found["clock skew"]["status"] == "fail"
    assert "osaka/l1/s2" in found["clock skew"]["detail"]
    assert "ahead of" in found["clock skew"]["detail"]
    assert "osaka/l1/s1" not in found["clock skew"]["detail"]
    assert "NTP" in found["clock skew"]["fix"]


def test_doctor_refuses_an_unknown_check_name(
    tmp_path: Path, broker: tuple[str, int], tiny_model_dir: Path
) -> None:
    config = _config(tmp_path, broker, tiny_model_dir)
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), "doctor", "--skip", "gpus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "gpus" in done.stderr


@pytest.mark.parametrize("bad", ["port = 0", 'url = "mysql://x"'])
def test_doctor_reports_an_invalid_config_and_stops_there(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "bad.toml"
    section = "[broker]" if "port" in bad else "[store]"
    config.write_text(f"{section}\n{bad}\n")
    code, found = _doctor(config)
    assert code == 1 and list(found) == ["config"]
    assert found["config"]["status"] == "fail"


@pytest.fixture(scope="module")
def plant_certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The broker's and clients' certificates, by deploy/make-certs.sh."""
    tls = tmp_path_factory.mktemp("tls")
    clients = [arg for user in PASSWORDS for arg in ("--client", user)]
    run_tool("sh", MAKE_CERTS, "-o", tls, "--broker", "127.0.0.1", "--days", "2", *clients)
    return tls


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of another plant: it did not sign the test broker's certificate."""
    tls = tmp_path_factory.mktemp("other-tls")
    run_tool("sh", MAKE_CERTS, "-o", tls, "--broker", "127.0.0.1", "--days", "2")
    return tls / "ca.crt"


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mosquitto", "mosquitto_passwd", "openssl")),
    reason="needs mosquitto, mosquitto_passwd and openssl",
)
def test_doctor_logs_in_over_tls_and_names_a_wrong_password_and_a_foreign_ca(
    tmp_path: Path, plant_certificates: Path, other_ca: Path
) -> None:
    with running_deploy_broker(tmp_path / "broker", plant_certificates) as broker:
        _upgraded(tmp_path)

        def doctor(password: str, ca: Path) -> dict[str, str]:
            config = _config(tmp_path, ("127.0.0.1", broker.port), tmp_path / "model")
            text = config.read_text().replace(
                "connect_timeout_s = 3\n", 'connect_timeout_s = 3\nusername = "worker"\n'
            )
            config.write_text(text + f'[broker.tls]\nenabled = true\nca_certs = "{ca}"\n')
            env = {"INSPECTOR_BROKER__PASSWORD": password}
            _, found = _doctor(config, *NO_TORCH, "--skip", "migrations", env=env)
            return found["broker"]

        good = doctor(PASSWORDS["worker"], broker.ca)
        assert good["status"] == "ok" and "as worker over TLS" in good["detail"], good
        wrong = doctor("not-the-password", broker.ca)
        assert wrong["status"] == "fail" and "refused the login as worker" in wrong["detail"]
        assert "INSPECTOR_BROKER__PASSWORD" in wrong["fix"]
        foreign = doctor(PASSWORDS["worker"], other_ca)
        assert foreign["status"] == "fail" and "not trusted" in foreign["detail"], foreign
        assert "broker.tls.ca_certs" in foreign["fix"]


def test_doctor_names_a_review_app_that_does_not_answer_and_passes_one_that_does(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    url = _upgraded(tmp_path)
    port = free_port()
    config = _config(tmp_path, broker, tmp_path / "model")
    config.write_text(config.read_text() + f"[review]\nport = {port}\n")
    quick = ("--role", "review", "--skip", "broker")
    code, found = _doctor(config, *quick)
    assert code == 1 and found["review"]["status"] == "fail"
    assert f"127.0.0.1:{port}/healthz" in found["review"]["detail"]
    assert "inspector review serve" in found["review"]["fix"]

    env = {"INSPECTOR_STORE__URL": url, "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs")}
    app = ReviewProcess(port, tmp_path / "review.log", config, env)
    app.start(90)
    try:
        code, found = _doctor(config, *quick)
    finally:
        app.stop()
    assert code == 0 and found["review"]["status"] == "ok", found


def test_a_fresh_all_in_one_host_without_the_review_app_passes_with_a_warning(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    _upgraded(tmp_path)
    config = _config(tmp_path, broker, tmp_path / "model")
    config.write_text(config.read_text() + f"[review]\nport = {free_port()}\n")
    code, found = _doctor(config, "--skip", "model", "--skip", "gpu")
    assert code == 0, found
    assert found["review"]["status"] == "warn"
    assert "optional here" in found["review"]["detail"]
    assert "inspector review serve" in found["review"]["fix"]


def test_a_station_host_runs_only_the_broker_check_and_prints_no_connection_chatter(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    config = _config(tmp_path, broker, tmp_path / "no-model")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "--config", str(config), "doctor", "--role", "station"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "80"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "disconnected" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0].startswith("┏"), "the table is the first thing printed"
    code, found = _doctor(config, "--role", "station")
    assert code == 0
    assert found["broker"]["status"] == "ok"
    others = {k: v["status"] for k, v in found.items() if k not in ("config", "broker")}
    assert set(others.values()) == {"skip"}, others
    assert "not needed on a station host" in found["model"]["detail"]


def test_the_config_role_chooses_the_checks_and_the_flag_overrides_it(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    config = _config(tmp_path, broker, tmp_path / "no-model")
    config.write_text('role = "station"\n' + config.read_text())
    code, found = _doctor(config)
    assert code == 0 and found["model"]["status"] == "skip"
    code, found = _doctor(config, "--role", "worker", "--skip", "gpu")
    assert code == 1 and found["model"]["status"] == "fail"


@pytest.mark.parametrize("name", ["clock", "clock skew", "disk", "blob disk"])
def test_doctor_skip_takes_each_checks_short_id_or_its_name(
    tmp_path: Path, broker: tuple[str, int], name: str
) -> None:
    config = _config(tmp_path, broker, tmp_path / "no-model")
    _, found = _doctor(config, "--role", "station", "--skip", "broker", "--skip", name)
    assert found["broker"]["status"] == "skip" and found["broker"]["id"] == "broker"


def test_doctor_help_lists_every_check_id_and_role() -> None:
    from inspector.doctor import SPECS

    done = subprocess.run(
        [sys.executable, "-m", "inspector", "doctor", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    flat = " ".join(done.stdout.replace("│", " ").split())
    for spec in SPECS:
        assert spec.id in flat
    for role in ("station", "worker", "review", "all-in-one"):
        assert role in flat
