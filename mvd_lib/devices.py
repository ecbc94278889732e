"""Device selection, mixed precision and memory readings, shared by training and benchmarks.

"auto" picks cuda, then mps, then cpu. On a GPU the default compute dtype is bfloat16 autocast (no grad
scaler needed); on CPU it is float32 (bfloat16 gave no speed-up on the 2-core CPUs we target).
"""
from __future__ import annotations

import contextlib
import os
import resource
import sys

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) used for MFU; matched against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS: dict[str, float] = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity where the OS reports one (a lane of `lanes.run_jobs`, a
    container's cpuset), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; otherwise the named device (checked to exist)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("--device mps was requested but MPS is not available")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 autocast on GPUs, float32 on CPU."""
    return torch.bfloat16 if device.type in ("cuda", "mps") else torch.float32


def describe(device: torch.device) -> str:
    """The GPU's name, or e.g. "cpu (2 threads)"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def parse_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """'fp32' | 'bf16' | 'fp16' -> the dtype; None or 'auto' -> `default_dtype(device)`."""
    if name in (None, "auto"):
        return default_dtype(device)
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)} or 'auto', got {name!r}")
    return table[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """torch.autocast for reduced precision; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of the current GPU if known (for MFU), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory in GiB: allocated GPU memory since the last reset on CUDA, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
