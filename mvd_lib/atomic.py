"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

The content goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the target
(`os.replace` is atomic on POSIX and Windows). A process killed mid-write leaves at most a stray `.tmp` file.
Used for checkpoints, run records, cached teacher features and decoded clips.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call `write(f)` on a temporary file opened with `mode`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (indented; numpy scalars, tensors and paths converted), written atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default) + "\n"), "w")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
