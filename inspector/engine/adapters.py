"""Site LoRA adapters attached next to the checkpoint's own LoRAs, swapped between batches.

A site serves the adapter the registry made active for it, loaded with `load_site`: the
file's sha256 is checked against the registry's before anything is attached, the weights
attached are the bytes that were hashed, and the new version is attached under a key of its
own before the old one is dropped, so a refused or broken file leaves the site on the
version it had. Adapters can also be attached by name (`load`) for evaluations that name
the adapter in each request.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, set_peft_model_state_dict
from safetensors.torch import load as load_safetensors

from inspector.engine.checkpoint import check_adapter_dir
from inspector.engine.lora import LORA_TARGETS, WEIGHTS_FILE, ZERO_ADAPTER, targets_of
from inspector.engine.types import RESERVED_ADAPTERS
from inspector.errors import AdapterRefused, Code, ModelLoadError
from inspector.quality import AdapterRef
from inspector.settings import SLUG


@dataclass(frozen=True)
class SiteAdapter:
    """The adapter version one site serves, and the peft key it is attached under."""

    site: str
    adapter: AdapterRef
    path: Path
    key: str

    @property
    def ref(self) -> str:
        """`name@version`, as the registry names it."""
        return self.adapter.tag


@dataclass(frozen=True)
class Prepared:
    """A site adapter read and verified, ready to attach: nothing in the model changed yet."""

    site: str
    adapter: AdapterRef
    path: Path
    config: LoraConfig
    weights: bytes


def site_key(name: str, version: int) -> str:
    """The peft key of a registry version; "_" never occurs in a slug, so it cannot collide."""
    return f"{name}_v{version}"


def adapter_dir(path: Path) -> Path:
    """The peft adapter directory of a registry path (the directory or its weights file)."""
    return path.parent if path.name == WEIGHTS_FILE else path


class AdapterSet:
    """The site adapters attached to a PeftModel next to its transcription adapter."""

    def __init__(self, model: PeftModel) -> None:
        self._model = model
        self._named: dict[str, Path] = {}  # attached by name (`load`)
        self._sites: dict[str, SiteAdapter] = {}  # served per site (`load_site`)
        self._shadows: dict[str, SiteAdapter] = {}  # each site's shadow (`attach_shadow`)
        # Bumped on every attach and detach: whatever holds adapter weights (captured decode
        # graphs) is stale once it moves.
        self.generation = 0

    def names(self) -> list[str]:
        """Every adapter attached now (peft keys), the transcription adapter included."""
        return sorted(name for name in self._model.peft_config if name != ZERO_ADAPTER)

    def named(self) -> list[str]:
        """The adapters attached by name."""
        return sorted(self._named)

    def sites(self) -> dict[str, SiteAdapter]:
        """The adapter each site serves, by site."""
        return dict(self._sites)

    def shadows(self) -> dict[str, SiteAdapter]:
        """The shadow adapter of each site that has one, by site."""
        return dict(self._shadows)

    # --- by name ---------------------------------------------------------------------

    def load(self, name: str, path: Path) -> None:
        """Attach (or replace) adapter `name` from a peft adapter directory."""
        if not re.match(SLUG, name) or name in RESERVED_ADAPTERS:
            raise ModelLoadError(
                f"adapter name {name!r} must be a slug and not one of {sorted(RESERVED_ADAPTERS)}"
            )
        check_adapter_dir(path, f"adapter {name!r}")
        self._check_shape(name, path, self._config(name, path))
        if name in self._named:
            self.unload(name)
        try:
            # In the model's dtype, like the checkpoint's own LoRAs (see load_checkpoint).
            self._model.load_adapter(str(path), adapter_name=name, autocast_adapter_dtype=False)
        except Exception as exc:  # peft surfaces safetensors and shape errors as they come
            raise ModelLoadError(f"cannot load adapter {name!r} from {path}: {exc}") from None
        self._named[name] = path
        self.generation += 1

    def unload(self, name: str) -> None:
        """Detach adapter `name` attached by name; unknown names are ignored."""
        if name in RESERVED_ADAPTERS:
            raise ModelLoadError(f"the checkpoint's own {name!r} LoRA cannot be unloaded")
        if self._named.pop(name, None) is not None:
            self._model.delete_adapter(name)
            self.generation += 1

    # --- per site --------------------------------------------------------------------

    def prepare(self, site: str, adapter: AdapterRef, path: Path) -> Prepared:
        """Read and verify a registry version; raises AdapterRefused, touches no weights."""
        name, sha256, ref = adapter.name, adapter.sha256, adapter.tag
        if not re.match(SLUG, name) or name in RESERVED_ADAPTERS:
            raise AdapterRefused(
                Code.ADAPTER_LOAD_FAILED,
                f"adapter name {name!r} must be a slug and not one of {sorted(RESERVED_ADAPTERS)}",
            )
        directory = adapter_dir(path)
        try:
            weights = (directory / WEIGHTS_FILE).read_bytes()
        except OSError as exc:
            raise AdapterRefused(
                Code.ADAPTER_LOAD_FAILED, f"cannot read {ref} at {directory}: {exc.strerror}"
            ) from None
        actual = hashlib.sha256(weights).hexdigest()
        if actual != sha256.lower():
            raise AdapterRefused(
                Code.ADAPTER_CHECKSUM_MISMATCH,
                f"{ref}: {directory / WEIGHTS_FILE} has sha256 {actual[:16]}…, the registry "
                f"says {sha256[:16]}…; the file was changed or replaced, so it is not loaded",
            )
        try:
            config = self._config(ref, directory)
            self._check_shape(ref, directory, config)
        except ModelLoadError as exc:
            raise AdapterRefused(Code.ADAPTER_LOAD_FAILED, exc.message) from None
        verified = AdapterRef(name, adapter.version, sha256.lower())
        return Prepared(site, verified, directory, config, weights)

    def attach_site(self, prepared: Prepared) -> SiteAdapter:
        """Serve a prepared version for its site; the version it replaces is detached after."""
        key = site_key(prepared.adapter.name, prepared.adapter.version)
        served = self._sites.get(prepared.site)
        if served is not None and served.key == key and served.adapter == prepared.adapter:
            return served
        if key not in self._in_use():
            self._attach(key, prepared)
        adapter = SiteAdapter(prepared.site, prepared.adapter, prepared.path, key)
        self._sites[prepared.site] = adapter
        if served is not None and served.key != key:
            self._release(served.key)
        return adapter

    def clear_site(self, site: str) -> None:
        """The site serves no site adapter from now on."""
        served = self._sites.pop(site, None)
        if served is not None:
            self._release(served.key)

    def attach_shadow(self, prepared: Prepared) -> SiteAdapter:
        """Judge the site's shadow rows with a prepared version; the one it replaces goes after.

        A version attached already (the site's own, another site's) is shared, not copied.
        """
        key = site_key(prepared.adapter.name, prepared.adapter.version)
        before = self._shadows.get(prepared.site)
        if before is not None and before.key == key and before.adapter == prepared.adapter:
            return before
        if key not in self._in_use():
            self._attach(key, prepared)
        adapter = SiteAdapter(prepared.site, prepared.adapter, prepared.path, key)
        self._shadows[prepared.site] = adapter
        if before is not None and before.key != key:
            self._release(before.key)
        return adapter

    def clear_shadow(self, site: str) -> None:
        """The site has no shadow adapter from now on."""
        before = self._shadows.pop(site, None)
        if before is not None:
            self._release(before.key)

    def _in_use(self) -> set[str]:
        return {a.key for a in (*self._sites.values(), *self._shadows.values())}

    def _attach(self, key: str, prepared: Prepared) -> None:
        ref = prepared.adapter.tag
        config = prepared.config
        config.inference_mode = True
        try:
            state = load_safetensors(prepared.weights)
            # Created empty (no random init of weights about to be replaced), then given the
            # file's tensors, moved to each layer's device and dtype (the model's, like the
            # checkpoint's own LoRAs): this runs between batches, under the batch lock.
            self._model.add_adapter(
                key, config, low_cpu_mem_usage=True, autocast_adapter_dtype=False
            )
        except Exception as exc:  # safetensors and peft raise their own types
            raise AdapterRefused(Code.ADAPTER_LOAD_FAILED, f"cannot load {ref}: {exc}") from None
        try:
            result: Any = set_peft_model_state_dict(
                self._model, state, adapter_name=key, low_cpu_mem_usage=True
            )
            missing = [k for k in result.missing_keys if f".{key}." in k and "lora_" in k]
            unexpected = list(result.unexpected_keys)
            if missing or unexpected:
                raise ValueError(
                    f"{len(missing)} LoRA weight(s) missing, {len(unexpected)} unexpected "
                    f"(e.g. {(missing or unexpected)[0]})"
                )
        except Exception as exc:  # a shape mismatch surfaces as torch's RuntimeError
            self._model.delete_adapter(key)
            raise AdapterRefused(Code.ADAPTER_LOAD_FAILED, f"cannot load {ref}: {exc}") from None
        self.generation += 1

    def _release(self, key: str) -> None:
        if key not in self._in_use() and key in self._model.peft_config:
            if key in self._model.active_adapters:
                # The last batch switched it on; peft would otherwise pick any other one.
                self._model.set_adapter(ZERO_ADAPTER)
            self._model.delete_adapter(key)
            self.generation += 1

    # --- checks ----------------------------------------------------------------------

    def _config(self, name: str, path: Path) -> LoraConfig:
        try:
            config: LoraConfig = LoraConfig.from_pretrained(str(path))
            return config
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"adapter {name!r} at {path} has a bad config: {exc}") from None

    def _check_shape(self, name: str, path: Path, config: LoraConfig) -> None:
        # A site adapter must touch exactly the modules of the LoRA spec (those the
        # checkpoint's own LoRAs touch), so any adapter trained here loads in any worker.
        ours, theirs = LORA_TARGETS, targets_of(config)
        if ours != theirs:
            raise ModelLoadError(
                f"adapter {name!r} at {path} targets {theirs!r}, but site adapters "
                f"must target the LoRA spec's modules {ours!r}"
            )
