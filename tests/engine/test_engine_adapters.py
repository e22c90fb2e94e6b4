"""Site adapters: per-row adapters in one batch, fallback, per-site versions, sha256 checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from inspector.engine import EngineRequest
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.errors import AdapterRefused, Code, ModelLoadError
from inspector.quality import BASE, AdapterRef
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo
from tests.fixtures.model import adapter_sha256

MakeAdapter = Callable[[str, int], Path]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "adapters"


@pytest.fixture
def engine(tiny_model_dir: Path, registry: Path) -> PhiEngine:
    settings = ModelSettings(path=tiny_model_dir, max_rationale_tokens=6, adapters_dir=registry)
    sites = {"line-a": SiteProfile(threshold=0.0)}
    return load_engine(settings, sites)


def ask(site: str, adapter: str | None, seed: int = 1) -> EngineRequest:
    return EngineRequest(
        f"{site}-{adapter}-{seed}", site, [photo(48, 64, seed)], None, None, adapter
    )


def test_unknown_adapter_falls_back_to_the_vision_lora(engine: PhiEngine) -> None:
    [base, unknown] = engine.infer([ask("x", None), ask("x", "no-such-adapter")])
    assert (base.adapter, base.adapter_version, base.adapter_fallback) == (BASE, None, False)
    assert (unknown.adapter, unknown.adapter_fallback) == (BASE, True)
    assert unknown.p_pass == pytest.approx(base.p_pass, abs=1e-6)


def test_loaded_site_adapter_changes_the_verdict_and_mixes_in_one_batch(
    engine: PhiEngine, make_site_adapter: MakeAdapter
) -> None:
    plant_a = make_site_adapter("plant-a", 7)
    engine.load_site_adapter("line-a", AdapterRef("plant-a", 3, adapter_sha256(plant_a)), plant_a)
    engine.load_adapter("plant-b", make_site_adapter("plant-b", 8))
    assert {"vision", "plant-a_v3", "plant-b"} <= set(engine.adapters())
    batch = [ask("line-a", None), ask("x", "plant-b"), ask("x", None), ask("line-a", None, 2)]
    mixed = engine.infer(batch)
    assert [(r.adapter, r.adapter_version, r.adapter_fallback) for r in mixed] == [
        ("plant-a", 3, False),
        ("plant-b", None, False),
        (BASE, None, False),
        ("plant-a", 3, False),
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
    assert (result.adapter, result.adapter_fallback) == (BASE, True)
    with pytest.raises(ModelLoadError, match="cannot be unloaded"):
        engine.unload_adapter("vision")


def test_a_new_version_replaces_the_sites_adapter_and_clearing_returns_to_the_base(
    engine: PhiEngine, make_site_adapter: MakeAdapter
) -> None:
    [base] = engine.infer([ask("line-a", None)])
    v1, v2 = make_site_adapter("plant-a", 7), make_site_adapter("plant-a", 9)
    engine.load_site_adapter("line-a", AdapterRef("plant-a", 1, adapter_sha256(v1)), v1)
    [first] = engine.infer([ask("line-a", None)])
    engine.load_site_adapter(
        "line-a", AdapterRef("plant-a", 2, adapter_sha256(v2)), v2 / "adapter_model.safetensors"
    )
    [second] = engine.infer([ask("line-a", None)])
    assert (first.adapter_version, second.adapter_version) == (1, 2)
    assert second.p_pass != pytest.approx(first.p_pass, abs=1e-7)
    # The replaced version is detached; only the served one stays attached.
    assert [n for n in engine.adapters() if n.startswith("plant-a")] == ["plant-a_v2"]
    assert engine.site_adapters() == {"line-a": AdapterRef("plant-a", 2, adapter_sha256(v2))}
    # A request naming the site's adapter gets the served version, not a fallback.
    [named] = engine.infer([ask("line-a", "plant-a")])
    assert (named.adapter, named.adapter_version, named.adapter_fallback) == ("plant-a", 2, False)
    engine.clear_site_adapter("line-a")
    [cleared] = engine.infer([ask("line-a", None)])
    assert (cleared.adapter, cleared.adapter_version) == (BASE, None)
    assert cleared.p_pass == pytest.approx(base.p_pass, abs=1e-6)
    assert not [n for n in engine.adapters() if n.startswith("plant-a")]


def test_a_tampered_adapter_file_is_refused_and_the_site_keeps_its_version(
    engine: PhiEngine, make_site_adapter: MakeAdapter, tmp_path: Path
) -> None:
    v1 = make_site_adapter("plant-a", 7)
    engine.load_site_adapter("line-a", AdapterRef("plant-a", 1, adapter_sha256(v1)), v1)
    [before] = engine.infer([ask("line-a", None)])
    tampered = tmp_path / "tampered"
    shutil.copytree(make_site_adapter("plant-a", 9), tampered)
    registered = adapter_sha256(tampered)
    weights = tampered / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of one weight flipped
    with pytest.raises(AdapterRefused) as refused:
        engine.load_site_adapter("line-a", AdapterRef("plant-a", 2, registered), tampered)
    assert refused.value.code is Code.ADAPTER_CHECKSUM_MISMATCH
    assert "plant-a@2" in refused.value.reason
    [after] = engine.infer([ask("line-a", None)])
    assert (after.adapter, after.adapter_version) == ("plant-a", 1)
    assert after.p_pass == pytest.approx(before.p_pass, abs=1e-6)
    with pytest.raises(AdapterRefused) as missing:
        engine.load_site_adapter(
            "line-a", AdapterRef("plant-a", 3, registered), tmp_path / "nowhere"
        )
    assert missing.value.code is Code.ADAPTER_LOAD_FAILED
    assert engine.site_adapters()["line-a"].tag == "plant-a@1"


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
