"""Identity of a run's input files (annotation lists, checkpoints): size, mtime and a content SHA-256.

A run is keyed by its configuration, which names its inputs by path; the files behind those paths can change
between two launches (a list regenerated, a checkpoint downloaded again). `input_identity` records what each
path held, for the run's record; `changed_inputs` compares two records and says, one line per file, what
changed. Only a different content counts: a file touched (new mtime, same bytes) is the same input.

    input_identity({"train_list": "lists/train.csv", "init": "mvd_b.pth"})
      -> {"train_list": {"path": "/abs/lists/train.csv", "size": 1234, "mtime": 1.7e9, "sha256": "..."}, ...}

Hashes are remembered per (path, size, mtime, inode) in this process, so a large checkpoint is read once.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

_HASHES: dict[tuple[str, int, int, int], str] = {}  # (resolved path, size, mtime_ns, inode) -> sha256


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (remembered while the file is unchanged)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """{"path" (resolved), "size" (bytes), "mtime" (seconds), "sha256"}; {"path", "missing": True} if absent."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        return {"path": str(p), "missing": True}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256_file(p)}


def input_identity(paths: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """`file_identity` of each input, keyed by the mapping's names (or by each path as given)."""
    items = paths.items() if isinstance(paths, Mapping) else ((str(p), p) for p in paths)
    return {str(name): file_identity(p) for name, p in items}


def changed_inputs(before: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per input that differs between two `input_identity` records (empty: the same inputs).

    Content (sha256), a different path, a file gone or come back, and inputs added or dropped are changes;
    mtime alone is not."""
    out = []
    for name in sorted(set(before) | set(now)):
        a, b = before.get(name), now.get(name)
        if a is None:
            out.append(f"{name}: new input {b.get('path')}")
        elif b is None:
            out.append(f"{name}: no longer an input (was {a.get('path')})")
        elif a.get("path") != b.get("path"):
            out.append(f"{name}: path changed from {a.get('path')} to {b.get('path')}")
        elif a.get("missing") and not b.get("missing"):
            out.append(f"{name}: {b['path']} exists now (it was missing)")
        elif b.get("missing") and not a.get("missing"):
            out.append(f"{name}: {b['path']} is missing now")
        elif a.get("sha256") != b.get("sha256"):
            out.append(f"{name}: {b['path']} changed content (sha256 {str(a.get('sha256'))[:12]} -> "
                       f"{str(b.get('sha256'))[:12]}, {a.get('size')} -> {b.get('size')} bytes)")
    return out
