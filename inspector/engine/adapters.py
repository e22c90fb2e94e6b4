"""Site LoRA adapters: load, unload and resync with the registry directory between batches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig, PeftModel

from inspector.engine.checkpoint import check_adapter_dir
from inspector.engine.lora import targets_of
from inspector.engine.types import RESERVED_ADAPTERS, VISION_ADAPTER
from inspector.errors import ModelLoadError
from inspector.settings import SLUG


@dataclass(frozen=True)
class _Loaded:
    path: Path
    stamp: float  # mtime of the weights file, so a rewritten adapter is reloaded


class AdapterSet:
    """The site adapters attached to a PeftModel next to its vision and speech LoRAs."""

    def __init__(self, model: PeftModel, registry: Path | None) -> None:
        self._model = model
        self._registry = registry
        self._sites: dict[str, _Loaded] = {}
        # Bumped on every load and unload: whatever holds adapter weights (captured decode
        # graphs) is stale once it moves.
        self.generation = 0

    def names(self) -> list[str]:
        """Every adapter attached now, the checkpoint's own included."""
        return sorted(self._model.peft_config)

    def site_adapters(self) -> list[str]:
        """The site adapters attached now."""
        return sorted(self._sites)

    def load(self, name: str, path: Path) -> None:
        """Attach (or replace) site adapter `name` from a peft adapter directory."""
        if not re.match(SLUG, name) or name in RESERVED_ADAPTERS:
            raise ModelLoadError(
                f"adapter name {name!r} must be a slug and not one of {sorted(RESERVED_ADAPTERS)}"
            )
        check_adapter_dir(path, f"adapter {name!r}")
        self._check_shape(name, path)
        if name in self._sites:
            self.unload(name)
        try:
            # In the model's dtype, like the checkpoint's own LoRAs (see load_checkpoint).
            self._model.load_adapter(str(path), adapter_name=name, autocast_adapter_dtype=False)
        except Exception as exc:  # peft surfaces safetensors and shape errors as they come
            raise ModelLoadError(f"cannot load adapter {name!r} from {path}: {exc}") from None
        self._sites[name] = _Loaded(path, _stamp(path))
        self.generation += 1

    def unload(self, name: str) -> None:
        """Detach site adapter `name`; unknown names are ignored."""
        if name in RESERVED_ADAPTERS:
            raise ModelLoadError(f"the checkpoint's own {name!r} LoRA cannot be unloaded")
        if self._sites.pop(name, None) is not None:
            self._model.delete_adapter(name)
            self.generation += 1

    def refresh(self) -> list[str]:
        """Load new or rewritten adapters found in the registry, unload vanished ones."""
        found: dict[str, Path] = {}
        if self._registry is not None and self._registry.is_dir():
            for entry in sorted(self._registry.iterdir()):
                is_adapter = (entry / "adapter_config.json").is_file()
                if (
                    is_adapter
                    and re.match(SLUG, entry.name)
                    and entry.name not in RESERVED_ADAPTERS
                ):
                    found[entry.name] = entry
        for name in [n for n in self._sites if n not in found]:
            self.unload(name)
        for name, path in found.items():
            loaded = self._sites.get(name)
            if loaded is None or loaded.path != path or loaded.stamp != _stamp(path):
                self.load(name, path)
        return self.site_adapters()

    def _check_shape(self, name: str, path: Path) -> None:
        # A site adapter must touch exactly the modules the vision LoRA touches, so one
        # batch can mix them and the vision LoRA stays a valid fallback for every row.
        try:
            config = LoraConfig.from_pretrained(str(path))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"adapter {name!r} at {path} has a bad config: {exc}") from None
        ours, theirs = targets_of(self._model.peft_config[VISION_ADAPTER]), targets_of(config)
        if ours != theirs:
            raise ModelLoadError(
                f"adapter {name!r} at {path} targets {theirs!r}, but site adapters "
                f"must target the vision LoRA's modules {ours!r}"
            )


def _stamp(path: Path) -> float:
    weights = path / "adapter_model.safetensors"
    return weights.stat().st_mtime if weights.exists() else 0.0
