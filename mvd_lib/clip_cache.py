"""Decoded-clip cache: decode a video once, keep its uint8 frames on disk, read them back memory-mapped.

Decoding costs more than a training step on a CPU (0.1-0.2 s a clip here), and the reference decodes every
clip again every epoch (kinetics.py, `loadvideo_decord`). `ClipCache` stores what a decode produced as one
`.npy` file per entry:

- an entry is keyed by the source file's identity (resolved path, byte size, mtime in ns: editing or
  replacing the video invalidates it), the frame indices (or "all"), the stored frame size and any sampling
  parameters the caller adds (`params`), hashed with SHA-256 into the file name;
- reads are `np.load(mmap_mode="r")`: pages come from the OS cache, nothing is copied until used;
- writes are atomic: the array goes to a temporary file in the same folder, then `os.replace` renames it,
  so a killed run or two DataLoader workers writing the same entry never leave a half-written file;
- small JSON metadata (frame count and size of a video) is kept the same way, so a cached video is never
  opened with decord again;
- an entry that cannot be read back is deleted and counts as a miss (decoded again), never an error.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mvd_lib.atomic import atomic_write

CACHE_VERSION = 1  # bump to invalidate every entry when the stored layout changes


def file_identity(path: str | Path) -> dict[str, Any]:
    """{"path", "size", "mtime_ns"} of an existing file (raises FileNotFoundError otherwise)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class ClipCache:
    """On-disk cache of decoded uint8 clips under `root`. `hits` / `misses` count lookups in this process."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    # keys ------------------------------------------------------------------------------------------------
    def key(self, video_path: str | Path, indices: Sequence[int] | None = None,
            size: int | tuple[int, int] | None = None, params: Mapping[str, Any] | None = None) -> str:
        """Hex key of an entry: the file's identity, `indices` (None = all frames), stored `size` (a short side
        or (h, w); None = as decoded) and extra sampling `params` (JSON-serializable)."""
        desc = {
            "version": CACHE_VERSION,
            "file": file_identity(video_path),
            "indices": "all" if indices is None else [int(i) for i in indices],
            "size": list(size) if isinstance(size, tuple) else size,
            "params": dict(sorted((params or {}).items())),
        }
        blob = json.dumps(desc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    # arrays ----------------------------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The stored array (memory-mapped, read-only) or None. An unreadable entry (damaged outside this cache,
        e.g. a disk that filled up while an older version wrote it) is removed and counts as a miss."""
        path = self.entry_path(key)
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            self.misses += 1
            return None
        except (ValueError, EOFError, OSError):
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, key: str, array: np.ndarray) -> np.ndarray:
        """Store `array` atomically and return it memory-mapped from disk."""
        if array.dtype != np.uint8:
            raise TypeError(f"the clip cache stores uint8 frames, got {array.dtype}")
        path = self.entry_path(key)
        atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
        return np.load(path, mmap_mode="r")

    def get_or_create(self, video_path: str | Path, make: Callable[[], np.ndarray],
                      indices: Sequence[int] | None = None, size: int | tuple[int, int] | None = None,
                      params: Mapping[str, Any] | None = None) -> np.ndarray:
        """The cached frames for this (file, indices, size, params), calling `make()` (the decode) only on a miss."""
        key = self.key(video_path, indices, size, params)
        arr = self.get(key)
        return arr if arr is not None else self.put(key, make())

    # per-video metadata --------------------------------------------------------------------------------------
    def _meta_path(self, video_path: str | Path) -> Path:
        key = self.key(video_path, params={"kind": "meta"})
        return self.root / key[:2] / f"{key}.json"

    def get_meta(self, video_path: str | Path) -> dict[str, Any] | None:
        """Stored metadata of a video (e.g. {"num_frames", "height", "width"}) or None."""
        path = self._meta_path(video_path)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # damaged: drop it, the video is inspected again
            path.unlink(missing_ok=True)
            return None

    def put_meta(self, video_path: str | Path, meta: Mapping[str, Any]) -> None:
        text = json.dumps(dict(meta), sort_keys=True)
        atomic_write(self._meta_path(video_path), lambda f: f.write(text), mode="w")

    # housekeeping ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of stored clip entries."""
        return sum(1 for _ in self.root.glob("*/*.npy")) if self.root.exists() else 0

    def nbytes(self) -> int:
        """Bytes on disk used by entries and metadata."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.glob("*/*") if p.is_file())

    def clear(self) -> None:
        """Delete every entry (the root folder itself is removed)."""
        shutil.rmtree(self.root, ignore_errors=True)
