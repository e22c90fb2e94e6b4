"""Edge configuration: the example file loads; bad values name the field and the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import DEFAULT_EDGE_CONFIG, load_edge_settings
from inspector.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[station]
site = "plant-a"
line = "line-1"
station = "station-3"
"""


def test_the_example_config_loads() -> None:
    settings = load_edge_settings(REPO / DEFAULT_EDGE_CONFIG)
    assert settings.station.mqtt_client_id == "edge-plant-a-line-1-station-3"
    assert settings.broker.session_expiry_s > 0


def test_bad_values_name_the_field_the_file_and_the_env_variable(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD.replace('"station-3"', '"Station 3"') + "\n[broker]\nport = 70000\n")
    with pytest.raises(ConfigError) as err:
        load_edge_settings(path)
    text = err.value.message
    assert str(path) in text
    assert "station.station" in text and "'Station 3'" in text
    assert "broker.port" in text and "INSPECTOR_EDGE_BROKER__PORT" in text


def test_missing_station_unknown_keys_and_cross_field_rules_are_explained(
    tmp_path: Path,
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        '[spool]\npath = "x.db"\nmax_byte = 5\n[audio]\nmode = "file"\n'
        '[triggers]\ndefault_part_id = "{line}-{seq}"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_edge_settings(path)
    text = err.value.message
    assert "station: Field required" in text
    assert "spool.max_byte: not a setting of [spool]" in text
    assert "audio.mode = 'file' needs audio.file" in text
    assert "default_part_id may use only {station}, {seq} and {time} ('line')" in text


def test_environment_overrides_the_file_and_secrets_stay_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD + '[broker]\nusername = "station-3"\n')
    monkeypatch.setenv("INSPECTOR_EDGE_BROKER__PASSWORD", "s3cret")
    monkeypatch.setenv("INSPECTOR_EDGE_BROKER__PORT", "8883")
    settings = load_edge_settings(path)
    assert settings.broker.port == 8883
    assert settings.broker.password is not None
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("INSPECTOR_EDGE_BROKER__PORT", "abc")
    with pytest.raises(ConfigError, match="INSPECTOR_EDGE_BROKER__PORT"):
        load_edge_settings(path)


def test_unreadable_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    broken = tmp_path / "edge.toml"
    broken.write_text("[station\nsite = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_edge_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_edge_settings(tmp_path / "nope.toml")


def test_the_edge_imports_neither_torch_nor_the_store() -> None:
    code = (
        "import sys, edge.agent, edge.cli, edge.terminal, edge.__main__\n"
        "heavy = [m for m in ('torch', 'transformers', 'inspector.store', 'sqlalchemy')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == ""
