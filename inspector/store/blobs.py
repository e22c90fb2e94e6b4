"""Content-addressed blob store on disk: files named by their sha256, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

_SHA = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    """Blobs live at ``root/ab/cd/<sha256>``; paths are built only from validated hashes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this hash lives; refuses anything that is not a sha256."""
        return self.root / self.relative_path(sha256)

    def relative_path(self, sha256: str) -> str:
        """The blob's path below the root, as stored in the media table."""
        if not _SHA.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store bytes (once per content) and return their hash and path."""
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes]) -> list[tuple[str, Path]]:
        """Store several blobs durably, syncing each directory touched once."""
        out: list[tuple[str, Path]] = []
        dirs: set[Path] = set()
        for data in blobs:
            sha = hashlib.sha256(data).hexdigest()
            path = self.path_for(sha)
            out.append((sha, path))
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size == len(data):
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dirs.add(path.parent)
        # A rename is durable only once its directory entry is on disk.
        for directory in dirs:
            _fsync_dir(directory)
        return out

    def remove(self, sha256: str) -> bool:
        """Delete the blob's file; False when it was not there."""
        try:
            self.path_for(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def present(self, sha256: str) -> bool:
        """Whether the blob's file is on disk."""
        return self.path_for(sha256).is_file()

    def get(self, sha256: str) -> bytes:
        """The blob's bytes, verified against its hash."""
        data = self.path_for(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise OSError(f"blob {sha256} is corrupt on disk")
        return data


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
