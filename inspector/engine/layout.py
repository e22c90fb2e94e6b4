"""What a model directory holds, read without loading it: its layout, its shards, its manifest.

Two layouts of Phi-4-multimodal-instruct exist. The repository's main branch, which `hf
download microsoft/Phi-4-multimodal-instruct` fetches, is the remote-code layout
(`model_type: phi4mm`, LoRA-wrapped projections with the vision and speech LoRAs inline).
Workers load transformers' native layout (`model_type: phi4_multimodal`, with `vision-lora/`
and `speech-lora/` beside the weights); `inspector model import` writes it from a download.

Nothing here imports torch: the doctor and the command line read a directory with it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

NATIVE_MODEL_TYPE = "phi4_multimodal"
REMOTE_MODEL_TYPE = "phi4mm"
MANIFEST_FILE = "inspector-manifest.json"
MANIFEST_FORMAT = 1
_HASH_CHUNK = 1 << 20
# A safetensors file starts with the byte length of its JSON header (little-endian u64).
_HEADER_LENGTH = struct.Struct("<Q")
_MAX_HEADER_BYTES = 100_000_000


class Layout(StrEnum):
    """The kinds of directory model.path may point at."""

    MISSING = "missing"
    NOT_A_DIRECTORY = "not a directory"
    NATIVE = "native"
    REMOTE_CODE = "remote-code"
    UNKNOWN = "unknown"


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def detect_layout(path: Path) -> Layout:
    """Which layout `path` holds, from its config.json's model_type."""
    if not path.exists():
        return Layout.MISSING
    if not path.is_dir():
        return Layout.NOT_A_DIRECTORY
    config = read_json_object(path / "config.json") or {}
    model_type = config.get("model_type")
    if model_type == NATIVE_MODEL_TYPE:
        return Layout.NATIVE
    if model_type == REMOTE_MODEL_TYPE:
        return Layout.REMOTE_CODE
    return Layout.UNKNOWN


def import_target(source: Path) -> Path:
    """The new directory beside a download that the suggested import writes."""
    return source.with_name(f"{source.name}-native")


def import_command(source: Path) -> str:
    """The command that converts a download at `source` into a new directory beside it."""
    return f"inspector model import {source} {import_target(source)}"


def needs_import_message(path: Path) -> str:
    """What to do with a download in the remote-code layout that model.path points at."""
    target = import_target(path)
    return (
        f"{path} holds microsoft/Phi-4-multimodal-instruct as downloaded (the remote-code "
        f"layout, model_type {REMOTE_MODEL_TYPE!r}); convert it once into a new directory with "
        f"`{import_command(path)}` and set model.path (INSPECTOR_MODEL__PATH) to {target}"
    )


# --- safetensors headers ---------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]


class HeaderError(ValueError):
    """A safetensors file whose header is missing, malformed or promises more than the file."""


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors a safetensors file holds, checked against the file's size.

    A download cut short keeps its header, which still lists every tensor: the data the
    header promises is compared with the bytes actually there.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(_HEADER_LENGTH.size)
            if len(prefix) < _HEADER_LENGTH.size:
                raise HeaderError(f"{path.name} is {size} bytes, too short for a header")
            (length,) = _HEADER_LENGTH.unpack(prefix)
            if length > _MAX_HEADER_BYTES or _HEADER_LENGTH.size + length > size:
                raise HeaderError(
                    f"{path.name} is cut short: its header alone would be {length} bytes, "
                    f"the file holds {size}"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise HeaderError(f"{path.name} cannot be read: {exc.strerror}") from None
    try:
        header = json.loads(raw)
    except ValueError:
        raise HeaderError(f"{path.name} has no valid safetensors header") from None
    if not isinstance(header, dict):
        raise HeaderError(f"{path.name} has no valid safetensors header")
    tensors: dict[str, TensorInfo] = {}
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = entry["data_offsets"]
            tensors[name] = TensorInfo(str(entry["dtype"]), tuple(int(d) for d in entry["shape"]))
        except (KeyError, TypeError, ValueError):
            raise HeaderError(f"{path.name} describes tensor {name!r} badly") from None
        end = max(end, int(stop), int(start))
    promised = _HEADER_LENGTH.size + length + end
    if size < promised:
        raise HeaderError(
            f"{path.name} is cut short: its header promises {promised} bytes, the file holds {size}"
        )
    return tensors


# --- the manifest of an imported directory ---------------------------------------------------


def file_digest(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, source: dict[str, Any]) -> dict[str, Any]:
    """Record every file under `directory` with its size and sha256, and where it came from."""
    files = {
        str(path.relative_to(directory)): {
            "bytes": path.stat().st_size,
            "sha256": file_digest(path),
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    manifest = {"format": MANIFEST_FORMAT, "source": source, "files": files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_manifest(directory: Path, hashes: bool) -> list[str]:
    """What differs from the manifest (missing files, sizes, with `hashes` the sha256s)."""
    manifest = read_json_object(directory / MANIFEST_FILE)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return [f"{MANIFEST_FILE} is missing or unreadable"]
    problems: list[str] = []
    for name, entry in sorted(manifest["files"].items()):
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry.get("bytes"):
            problems.append(
                f"{name} is {path.stat().st_size} bytes, the manifest says {entry.get('bytes')}"
            )
        elif hashes and file_digest(path) != entry.get("sha256"):
            problems.append(f"{name} does not match its sha256 in the manifest")
    return problems
