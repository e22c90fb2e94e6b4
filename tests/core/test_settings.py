"""Settings: TOML file plus environment, with errors that name the field and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.errors import ConfigError
from inspector.settings import load_settings

EXAMPLE = Path(__file__).parents[2] / "config" / "inspector.toml"


def test_example_config_loads_with_a_default_site_profile() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.broker.port == 1883
    profile = settings.site("any-site")
    assert profile.threshold == 0.7
    assert {d.name for d in profile.defects} >= {"scratch", "dent"}


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text('[broker]\nhost = "mq.example"\nport = 1884\n[worker]\nmax_batch = 8\n')
    monkeypatch.setenv("INSPECTOR_BROKER__PORT", "8883")
    settings = load_settings(cfg)
    assert settings.broker.host == "mq.example"
    assert settings.broker.port == 8883
    assert settings.worker.max_batch == 8


def test_invalid_value_names_field_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[worker]\nmax_batch = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert "worker.max_batch" in info.value.message
    assert str(cfg) in info.value.message
    assert "INSPECTOR_WORKER__MAX_BATCH" in info.value.message


def test_invalid_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_LIMITS__MAX_PIXELS", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings(EXAMPLE)
    assert "limits.max_pixels" in info.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[broker\nport=1", "not valid TOML"),
        ("[brokre]\nport = 1\n", "brokre"),
        ('[broker]\npassword = "x"\n', "username"),
        ('[store]\nurl = "mysql://x"\n', "store"),
        ('[sites."Bad Site"]\npart = "x"\n', "Bad Site"),
        ("[sites.a]\nthreshold = 1.5\n", "sites.a.threshold"),
        ('[broker.tls]\ncertfile = "c.pem"\n', "keyfile"),
    ],
)
def test_config_mistakes_get_clear_messages(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert needle in info.value.message


def test_missing_config_file_is_an_error_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    monkeypatch.chdir(tmp_path)
    assert load_settings().store.url.startswith("sqlite")
