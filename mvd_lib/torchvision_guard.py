"""Keep `import timm` working when torchvision's compiled ops cannot load.

The pinned pair torch==2.13.0 (a CPU build) + torchvision==0.28.0 (a CUDA build) installs cleanly, but
torchvision's `_C` extension then fails to load. torchvision swallows that failure, yet its
`_meta_registrations.py` still registers fake kernels for `torchvision::nms` and `torchvision::qnms`,
which raises "operator torchvision::nms does not exist" and breaks every `import torchvision` (and
therefore `import timm`).

`install()` runs once, just before the first `import torchvision` of a process that imported mvd_lib (the
package arms an import hook for it, so importing mvd_lib alone loads no torch):
- torchvision not installed, already imported, or its ops already registered: nothing to do;
- its `_C` extension loads (the same `torch.ops.load_library` call torchvision makes on import):
  nothing else is done, so a working torchvision behaves exactly as without this module;
- otherwise: only the two missing op *schemas* are defined, so the registrations succeed. Detection
  ops (nms, roi_align, ...) stay unavailable, which mvd_lib never uses.

`STATUS` records which path was taken: "absent", "imported", "native" or "patched".
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Callable

import torch

# Schemas as torchvision declares them (torchvision/csrc/ops/nms.cpp).
SCHEMAS: dict[str, str] = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

STATUS: str = "not run"
_LIBRARIES: list[torch.library.Library] = []  # keep definitions alive for the process lifetime


def op_exists(namespace: str, name: str) -> bool:
    """True if the schema `namespace::name` is registered with the dispatcher."""
    try:
        torch._C._dispatch_find_schema_or_throw(f"{namespace}::{name}", "")
        return True
    except RuntimeError:
        return False


def _torchvision_extension() -> Path | None:
    """Path of torchvision's compiled `_C` library, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = pkg / f"_C{suffix}"
        if candidate.exists():
            return candidate
    return None


def _load_extension() -> bool:
    path = _torchvision_extension()
    if path is None:
        return False
    try:
        torch.ops.load_library(str(path))
        return True
    except (OSError, RuntimeError):
        return False


def define_schemas(namespace: str = "torchvision") -> list[str]:
    """Define the op schemas in SCHEMAS under `namespace` (only those not yet defined); returns their names."""
    lib = torch.library.Library(namespace, "FRAGMENT")
    defined = []
    for name, schema in SCHEMAS.items():
        if not op_exists(namespace, name):
            lib.define(name + schema)
            defined.append(f"{namespace}::{name}")
    _LIBRARIES.append(lib)
    return defined


def install(
    namespace: str = "torchvision",
    load_extension: Callable[[], bool] = _load_extension,
    torchvision_installed: Callable[[], bool] = lambda: importlib.util.find_spec("torchvision") is not None,
) -> str:
    """Make torchvision importable; returns the path taken (see module docstring). Idempotent."""
    global STATUS
    if not torchvision_installed():
        STATUS = "absent"
    elif namespace == "torchvision" and "torchvision" in sys.modules:
        STATUS = "imported"
    elif all(op_exists(namespace, n) for n in SCHEMAS):
        STATUS = "native" if STATUS != "patched" else STATUS
    elif load_extension() and all(op_exists(namespace, n) for n in SCHEMAS):
        STATUS = "native"
    else:
        define_schemas(namespace)
        STATUS = "patched"
    return STATUS
