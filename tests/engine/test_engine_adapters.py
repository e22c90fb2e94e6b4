"""Site adapters: per-row adapters in one batch, fallback, hot load/unload, registry sync."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from inspector.engine import EngineRequest
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.errors import ModelLoadError
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo

MakeAdapter = Callable[[str, int], Path]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "adapters"


@pytest.fixture
def engine(tiny_model_dir: Path, registry: Path) -> PhiEngine:
    settings = ModelSettings(path=tiny_model_dir, max_rationale_tokens=6, adapters_dir=registry)
    sites = {"line-a": SiteProfile(adapter="plant-a", threshold=0.0)}
    return load_engine(settings, sites)


def ask(site: str, adapter: str | None, seed: int = 1) -> EngineRequest:
    return EngineRequest(
        f"{site}-{adapter}-{seed}", site, [photo(48, 64, seed)], None, None, adapter
    )


def test_unknown_adapter_falls_back_to_the_vision_lora(engine: PhiEngine) -> None:
    [base, unknown] = engine.infer([ask("x", None), ask("x", "no-such-adapter")])
    assert (base.adapter, base.adapter_fallback) == ("vision", False)
    assert (unknown.adapter, unknown.adapter_fallback) == ("vision", True)
    assert unknown.p_pass == pytest.approx(base.p_pass, abs=1e-6)
    # A site whose default adapter is not loaded falls back too, and says so.
    [site_default] = engine.infer([ask("line-a", None)])
    assert (site_default.adapter, site_default.adapter_fallback) == ("vision", True)


def test_loaded_site_adapter_changes_the_verdict_and_mixes_in_one_batch(
    engine: PhiEngine, make_site_adapter: MakeAdapter
) -> None:
    engine.load_adapter("plant-a", make_site_adapter("plant-a", 7))
    engine.load_adapter("plant-b", make_site_adapter("plant-b", 8))
    assert {"vision", "plant-a", "plant-b"} <= set(engine.adapters())
    batch = [ask("line-a", None), ask("x", "plant-b"), ask("x", None), ask("x", "plant-a", 2)]
    mixed = engine.infer(batch)
    assert [(r.adapter, r.adapter_fallback) for r in mixed] == [
        ("plant-a", False),
        ("plant-b", False),
        ("vision", False),
        ("plant-a", False),
    ]
    alone = [engine.infer([req])[0] for req in batch]
    for a, b in zip(mixed, alone, strict=True):
        assert a.p_pass == pytest.approx(b.p_pass, abs=1e-5)
        assert a.rationale == b.rationale
    # Same photo, three adapters, three different verdict probabilities.
    assert len({round(r.p_pass, 6) for r in mixed[:3]}) == 3


def test_unload_makes_requests_fall_back(engine: PhiEngine, make_site_adapter: MakeAdapter) -> None:
    engine.load_adapter("plant-a", make_site_adapter("plant-a", 7))
    engine.unload_adapter("plant-a")
    assert "plant-a" not in engine.adapters()
    [result] = engine.infer([ask("x", "plant-a")])
    assert (result.adapter, result.adapter_fallback) == ("vision", True)
    with pytest.raises(ModelLoadError, match="cannot be unloaded"):
        engine.unload_adapter("vision")


def test_refresh_follows_the_registry_directory(
    engine: PhiEngine, registry: Path, make_site_adapter: MakeAdapter
) -> None:
    registry.mkdir()
    shutil.copytree(make_site_adapter("plant-a", 7), registry / "plant-a")
    (registry / "notes").mkdir()  # not an adapter: ignored
    assert engine.refresh_adapters() == ["plant-a"]
    [before] = engine.infer([ask("x", "plant-a")])
    # A new version written over the old one is picked up on the next refresh.
    shutil.rmtree(registry / "plant-a")
    shutil.copytree(make_site_adapter("plant-a", 9), registry / "plant-a")
    assert engine.refresh_adapters() == ["plant-a"]
    [after] = engine.infer([ask("x", "plant-a")])
    assert after.adapter == "plant-a"
    assert after.p_pass != pytest.approx(before.p_pass, abs=1e-7)
    shutil.rmtree(registry / "plant-a")
    assert engine.refresh_adapters() == []
    assert "plant-a" not in engine.adapters()


def test_adapter_of_another_shape_is_refused(
    engine: PhiEngine, tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    odd = get_peft_model(base, LoraConfig(r=4, target_modules=["o_proj"]))
    odd.save_pretrained(str(tmp_path / "odd"))
    with pytest.raises(ModelLoadError, match="targets"):
        engine.load_adapter("plant-odd", tmp_path / "odd")
    assert "plant-odd" not in engine.adapters()


def test_reserved_and_bad_adapter_names_are_refused(
    engine: PhiEngine, tiny_model_dir: Path
) -> None:
    with pytest.raises(ModelLoadError, match="must be a slug"):
        engine.load_adapter("vision", tiny_model_dir / "vision-lora")
    with pytest.raises(ModelLoadError, match="must be a slug"):
        engine.load_adapter("Bad Name", tiny_model_dir / "vision-lora")
    with pytest.raises(ModelLoadError, match=r"has no adapter_config\.json"):
        engine.load_adapter("plant-q", tiny_model_dir)
