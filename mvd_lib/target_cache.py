"""Teacher-target cache: each clip's teacher features computed once, kept on disk as memory-mapped float16.

MVD's teachers are frozen (paper Sec. 3.2; `engine_for_pretraining.py` runs them under `torch.no_grad()` on
every step). When a dataset item is a deterministic function of its index (the procedural benchmark: clips
depend only on (seed, split, index)), the teacher's input for that item never changes, so neither do its
targets: they can be computed in one pass and reused across epochs and across every student distilled from
the same teacher. A laptop distillation run then spends its time on the student alone.

Layout: one cache per (teacher, dataset configuration, view, compute dtype), in `root/key/`:

    targets.f16.npy   float16 [num_items, N, D]   (`np.lib.format.open_memmap`; rows are read on demand)
    done.npy          bool    [num_items]         row i is complete and may be read
    meta.json         shape, dtype, key parts, creation time (written last: its presence marks a usable cache)

Safety against a run killed mid-fill: `put` writes the rows, flushes them to disk, and only then sets and
flushes their done flags. A row whose flag is unset is never read and is simply recomputed by the next
`fill`, so a torn write costs one batch of recomputation, never a wrong target. One writer at a time: under
DDP, fill on the main process, synchronise, then open the same caches with `fill=False` on the others.

Precision: float16 keeps 11 significant bits (relative rounding <= 2**-11 ~ 4.9e-4), so the distillation
loss computed from cached targets matches the on-the-fly loss to about 1e-3 relative
(tests/test_target_cache.py checks this with both teachers).

Public API:
- `teacher_fingerprint(teacher)`, `dataset_fingerprint(config)`: short stable hashes used in cache keys;
- `TargetCache`: the on-disk array (`get`, `put`, `missing`, `complete`);
- `fill(cache, teacher, dataset, ...)`: computes the missing rows only (resumable); `fill_many` does the same
  for several caches in one pass over the data (each clip read once for all teachers);
- `CachedTargets`: one cache per teacher branch, filled on construction; `cached(batch["index"])` returns
  `{branch: [B, N, D]}` in place of `distill.teacher_targets(teachers, video, teacher_video)`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from mvd_lib import devices
from mvd_lib.atomic import atomic_write

View = Literal["video", "teacher_video"]
VIEWS: tuple[str, ...] = ("video", "teacher_video")
FORMAT_VERSION = 1  # bump when the on-disk layout changes
TARGETS_FILE, DONE_FILE, META_FILE = "targets.f16.npy", "done.npy", "meta.json"
FP16_MAX = float(np.finfo(np.float16).max)  # 65504


class NonDeterministicDatasetError(ValueError):
    """The dataset does not declare `deterministic = True`, so its items cannot be cached by index."""


class CacheMissError(LookupError):
    """Rows were requested that have not been computed yet."""


class StaleCacheError(RuntimeError):
    """A cached row differs from the teacher's output recomputed now (`CachedTargets(verify=True)`)."""


# ----------------------------------------------------------------------------------------------- fingerprints
def _short_hash(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c.encode() if isinstance(c, str) else c)
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """A JSON-able form of a config value (dataclasses, tuples, dtypes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _module_config(module: nn.Module) -> list[Any]:
    """Every submodule's class, its dataclass `cfg` if it has one, and its plain scalar attributes."""
    out = []
    for name, m in module.named_modules():
        attrs = {k: v for k, v in vars(m).items()
                 if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple))}
        cfg = getattr(m, "cfg", None)
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            attrs["cfg"] = cfg
        out.append([name, f"{type(m).__module__}.{type(m).__qualname__}", _plain(attrs)])
    return out


def teacher_fingerprint(teacher: nn.Module) -> str:
    """16 hex characters identifying a teacher: its classes, configs and the bytes of its state dict.

    The same weights give the same key on any device; a different checkpoint, architecture, clip geometry or
    parameter dtype gives another key."""
    h = hashlib.sha256()
    h.update(json.dumps(_module_config(teacher), sort_keys=True).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"\x00{name}|{t.dtype}|{tuple(t.shape)}\x00".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, no copy
    return h.hexdigest()[:16]


def dataset_fingerprint(config: str | Mapping[str, Any] | Any) -> str:
    """16 hex characters for a dataset configuration given as a string, a dict or a dataclass.

    Give everything that decides the clips (name, seed, split, size, resolution, transforms); dict key order
    does not matter."""
    if isinstance(config, str):
        return _short_hash("str", config)
    return _short_hash("json", json.dumps(_plain(config), sort_keys=True))


def require_deterministic(dataset: Any) -> None:
    """Raise NonDeterministicDatasetError unless `dataset.deterministic is True`."""
    if getattr(dataset, "deterministic", None) is not True:
        raise NonDeterministicDatasetError(
            f"{type(dataset).__name__} does not declare `deterministic = True`: its items may change from one "
            f"epoch to the next (random crops, flips, sampled frames), so teacher targets cannot be cached by "
            f"index. Compute them on the fly (distill.teacher_targets), or use a dataset whose items depend only "
            f"on their index and set `deterministic = True` on it.")


# ----------------------------------------------------------------------------------------------- the cache
def _as_index_array(indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"indices must be a 1-D sequence of integers, got shape {idx.shape} dtype {idx.dtype}")
    return idx.astype(np.int64)


def _name_some(idx: np.ndarray, limit: int = 20) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")


class TargetCache:
    """Teacher targets of `num_items` clips, float16 [num_items, num_tokens, dim], memory-mapped from `root/key/`.

    Creates the files if `root/key/meta.json` does not exist; otherwise opens them, and raises ValueError if the
    stored shape differs from the one given. `key_parts` (free-form, JSON-able) is recorded in meta.json.
    Rows are only read for the indices asked for: the array is never loaded into memory as a whole."""

    def __init__(self, root: str | os.PathLike, key: str, num_items: int, num_tokens: int, dim: int,
                 key_parts: Mapping[str, Any] | None = None):
        if min(num_items, num_tokens, dim) < 1:
            raise ValueError(f"cache shape must be positive, got ({num_items}, {num_tokens}, {dim})")
        if not key or os.sep in key or key in (".", ".."):
            raise ValueError(f"cache key must be a plain folder name, got {key!r}")
        self.root, self.key = Path(root), key
        self.dir = self.root / key
        self.shape = (int(num_items), int(num_tokens), int(dim))
        if (self.dir / META_FILE).exists():
            self.meta = self._open_existing()
        else:
            self.meta = self._create(dict(key_parts or {}))

    @classmethod
    def open(cls, root: str | os.PathLike, key: str) -> "TargetCache":
        """Open an existing cache with the shape stored in its meta.json."""
        meta_path = Path(root) / key / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"no target cache at {meta_path.parent} (meta.json missing)")
        n, t, d = json.loads(meta_path.read_text())["shape"]
        return cls(root, key, n, t, d)

    # -- files
    def _create(self, key_parts: dict[str, Any]) -> dict[str, Any]:
        """Create the arrays, then meta.json last (a folder without meta.json is an unfinished creation)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        targets = np.lib.format.open_memmap(self.dir / TARGETS_FILE, mode="w+", dtype=np.float16, shape=self.shape)
        targets.flush()
        del targets
        atomic_write(self.dir / DONE_FILE, lambda f: np.save(f, np.zeros(self.shape[0], dtype=bool)))
        meta = {"format": FORMAT_VERSION, "shape": list(self.shape), "dtype": "float16",
                "layout": "[item, token (t, h, w order), channel]", "key": self.key,
                "key_parts": _plain(key_parts), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.dir / META_FILE, lambda f: f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n"), "w")
        self._map()
        return meta

    def _open_existing(self) -> dict[str, Any]:
        meta = json.loads((self.dir / META_FILE).read_text())
        stored = tuple(meta.get("shape", ()))
        if stored != self.shape:
            raise ValueError(f"target cache {self.dir} holds shape {stored} [items, tokens, dim], but shape "
                             f"{self.shape} was requested; a different dataset size or teacher geometry needs its "
                             f"own key (or delete the folder)")
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"target cache {self.dir} has format {meta.get('format')}, this code reads "
                             f"{FORMAT_VERSION}; delete the folder to rebuild it")
        self._map()
        return meta

    def _map(self) -> None:
        self._targets = np.load(self.dir / TARGETS_FILE, mmap_mode="r+")
        self._done = np.load(self.dir / DONE_FILE, mmap_mode="r+")
        if self._targets.dtype != np.float16 or self._targets.shape != self.shape:
            raise ValueError(f"{self.dir / TARGETS_FILE} holds {self._targets.dtype} {self._targets.shape}, "
                             f"expected float16 {self.shape}")
        if self._done.dtype != np.bool_ or self._done.shape != self.shape[:1]:
            raise ValueError(f"{self.dir / DONE_FILE} holds {self._done.dtype} {self._done.shape}, "
                             f"expected bool {self.shape[:1]}")

    # -- queries
    @property
    def num_items(self) -> int:
        return self.shape[0]

    @property
    def array(self) -> np.memmap:
        """The float16 [num_items, N, D] memory map itself (read only what you index)."""
        return self._targets

    @property
    def done(self) -> np.memmap:
        """bool [num_items] flags: row i is computed (read only; `put` sets them)."""
        return self._done

    def missing(self) -> np.ndarray:
        """Indices (int64, ascending) of the rows not yet computed."""
        return np.flatnonzero(~np.asarray(self._done)).astype(np.int64)

    @property
    def complete(self) -> bool:
        return bool(np.asarray(self._done).all())

    def _check_range(self, idx: np.ndarray) -> None:
        bad = idx[(idx < 0) | (idx >= self.num_items)]
        if bad.size:
            raise IndexError(f"indices out of range for a cache of {self.num_items} items: {_name_some(bad)}")

    def get(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows `indices` as float32 [B, N, D] (CPU). Raises CacheMissError naming rows not yet computed."""
        idx = _as_index_array(indices)
        self._check_range(idx)
        absent = np.unique(idx[~self._done[idx]])
        if absent.size:
            raise CacheMissError(f"target cache {self.dir}: items not computed yet: {_name_some(absent)} "
                                 f"(run target_cache.fill first)")
        rows = np.array(self._targets[idx])  # reads these B rows from the memory map; [B, N, D] float16
        return torch.from_numpy(rows).float()

    # -- writes
    def put(self, indices: Sequence[int] | np.ndarray | torch.Tensor, targets: torch.Tensor) -> None:
        """Store targets [B, N, D] for `indices` (float16 on disk): rows written and flushed, then flags set."""
        idx = _as_index_array(indices)
        self._check_range(idx)
        expected = (len(idx),) + self.shape[1:]
        if tuple(targets.shape) != expected:
            raise ValueError(f"targets of shape {tuple(targets.shape)} do not fit {len(idx)} rows of a cache of "
                             f"shape {self.shape}: expected {expected}")
        values = targets.detach().float().cpu()
        if not torch.isfinite(values).all():
            raise ValueError(f"non-finite teacher targets for items {_name_some(idx)}; nothing was written")
        peak = float(values.abs().max()) if values.numel() else 0.0
        if peak > FP16_MAX:
            raise ValueError(f"teacher targets reach |x| = {peak:.4g} for items {_name_some(idx)}, beyond float16's "
                             f"range ({FP16_MAX:.0f}); this teacher cannot be cached in float16")
        self._targets[idx] = values.numpy().astype(np.float16)
        self._targets.flush()  # the rows are on disk before any of them is marked done
        self._done[idx] = True
        self._done.flush()

    def close(self) -> None:
        """Release the memory maps (the object is unusable afterwards)."""
        for name in ("_targets", "_done"):
            arr = getattr(self, name, None)
            if arr is not None:
                arr.flush()
                delattr(self, name)

    def __repr__(self) -> str:
        n_done = self.num_items - len(self.missing()) if hasattr(self, "_done") else "?"
        return f"TargetCache({str(self.dir)!r}, shape={self.shape}, done={n_done}/{self.num_items})"


# ----------------------------------------------------------------------------------------------- filling
def _view(item: Mapping[str, Any], view: str) -> torch.Tensor:
    """The clip [C, T, H, W] a teacher sees: item[view], with "teacher_video" falling back to "video"."""
    if view == "teacher_video" and "teacher_video" in item:
        return item["teacher_video"]
    return item["video"]


class _Views(Dataset):
    """({view: clip [C, T, H, W]}, index) for the views asked for; checks item["index"] == position."""

    def __init__(self, dataset: Dataset, views: Sequence[str]):
        self.dataset, self.views = dataset, tuple(dict.fromkeys(views))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], int]:
        item = self.dataset[i]
        if "index" in item and int(item["index"]) != i:
            raise ValueError(f"dataset item at position {i} reports index {int(item['index'])}; the cache stores "
                             f"row i for position i, so item['index'] must equal its position")
        return {v: _view(item, v) for v in self.views}, i


def _collate(pairs: list[tuple[dict[str, torch.Tensor], int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    views = {v: torch.stack([clips[v] for clips, _ in pairs]) for v in pairs[0][0]}  # {view: [B, C, T, H, W]}
    return views, torch.tensor([i for _, i in pairs], dtype=torch.long)


def _teacher_device(teacher: nn.Module) -> torch.device:
    p = next(iter(teacher.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _run_teacher(teacher: nn.Module, clips: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """teacher(clips [B, C, T, H, W]) -> float32 [B, N, D] on CPU, in eval mode under `dtype` autocast."""
    teacher.eval()
    with devices.autocast(device, dtype):
        out = teacher(clips.to(device, non_blocking=True))
    return out.float().cpu()


@dataclasses.dataclass
class FillJob:
    """One cache to fill: the teacher that computes it and the view it sees."""

    cache: TargetCache
    teacher: nn.Module
    view: View = "video"  # "video" or "teacher_video" (items without it fall back to "video")
    name: str = ""  # label for progress and errors


def fill_many(
    jobs: Sequence[FillJob],
    dataset: Dataset,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    num_workers: int = 0,
    desc: str = "teacher targets",
) -> list[int]:
    """`fill` for several caches over the same dataset in ONE pass: each item is read once and given to every
    teacher whose cache lacks it. Returns the number of items computed per job."""
    require_deterministic(dataset)
    n_items = len(dataset)  # type: ignore[arg-type]
    for job in jobs:
        if job.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {job.view!r}")
        if job.cache.num_items != n_items:
            raise ValueError(f"dataset has {n_items} items but the cache {job.cache.dir} has "
                             f"{job.cache.num_items} rows")
    needed = [~np.asarray(job.cache.done) for job in jobs]  # [num_items] bool per job, read once
    todo = np.flatnonzero(np.logical_or.reduce(needed)) if jobs else np.zeros(0, dtype=np.int64)
    counts = [0] * len(jobs)
    if todo.size == 0:
        return counts
    devs = []
    for job in jobs:
        if device is None:
            devs.append(_teacher_device(job.teacher))
        else:
            devs.append(devices.resolve_device(str(device)))
            job.teacher.to(devs[-1])
    views = _Views(dataset, [job.view for job in jobs])
    loader = DataLoader(Subset(views, todo.tolist()), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=any(d.type == "cuda" for d in devs))
    with tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress, dynamic_ncols=True) as bar:
        for clips, idx in loader:
            for j, job in enumerate(jobs):
                rows = torch.from_numpy(needed[j][idx.numpy()])  # [B] bool: this cache lacks these items
                if rows.any():
                    job.cache.put(idx[rows], _run_teacher(job.teacher, clips[job.view][rows], devs[j], dtype))
                    counts[j] += int(rows.sum())
            bar.update(len(idx))
    return counts


def fill(
    cache: TargetCache,
    teacher: nn.Module,
    dataset: Dataset,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    view: View = "video",
    num_workers: int = 0,
    desc: str = "teacher targets",
) -> int:
    """Compute and store the targets of every item not yet in `cache`; returns how many were computed.

    One pass over the missing items in index order, teacher in eval mode without autograd, `dtype` autocast
    (float32: none). `view` picks the clip the teacher sees: "video", or "teacher_video" (the image teacher's
    view; items without it fall back to "video"). `device`: where the teacher runs (it is moved there); None
    keeps it where it is. Each batch is committed as it is done, so a killed fill resumes where it stopped."""
    return fill_many([FillJob(cache, teacher, view)], dataset, batch_size=batch_size, device=device, dtype=dtype,
                     progress=progress, num_workers=num_workers, desc=desc)[0]


# ----------------------------------------------------------------------------------------------- distillation
def default_view(branch: str) -> View:
    """The view each branch's teacher sees, as in `distill.teacher_targets`: "img" the teacher view, others the clip."""
    return "teacher_video" if branch == "img" else "video"


@dataclasses.dataclass
class _Branch:
    teacher: nn.Module
    cache: TargetCache
    view: View


class CachedTargets:
    """Teacher targets for a deterministic dataset, read from one float16 cache per branch.

    `CachedTargets(teachers, dataset, root, data_config)` opens (or creates) `root/<key>/` for every branch,
    key = teacher fingerprint + `dataset_fingerprint(data_config)` + view + compute dtype, and fills what is
    missing. Then `cached(batch["index"])` gives `{branch: [B, N, D]}` float32 targets, the same (to float16
    rounding) as `distill.teacher_targets(teachers, batch["video"], batch.get("teacher_video"))`, and can be
    passed to `distill.mvd_loss` as `targets`.

    Args:
        teachers: {branch: frozen teacher}, e.g. the second output of `build.build_distillation`.
        dataset: items {"video": [C, T, H, W], "index": int, optional "teacher_video"}; must declare
            `deterministic = True`.
        root: folder holding the caches (shared by every run on the same data).
        data_config: everything that decides the clips (string, dict or dataclass); part of the key.
        views: {branch: "video" | "teacher_video"}; default "teacher_video" for "img", "video" otherwise.
        device, dtype: where and in which precision the teachers run while filling (and verifying); the compute
            dtype is part of the key, since bfloat16 and float32 teachers give different targets.
        fill: compute missing targets now (set False on non-main DDP processes after the main one filled).
        verify: on every lookup, recompute the first item of the batch and compare with the cache (raises
            StaleCacheError); tolerance rtol=atol=`verify_tol`, default 2e-3 for float32 compute (float16
            rounding is <= 4.9e-4 relative), 5e-2 for reduced-precision compute.
    """

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        dataset: Dataset,
        root: str | os.PathLike,
        data_config: str | Mapping[str, Any] | Any,
        *,
        views: Mapping[str, View] | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        fill: bool = True,
        progress: bool = True,
        num_workers: int = 0,
        verify: bool = False,
        verify_tol: float | None = None,
    ):
        require_deterministic(dataset)
        if not teachers:
            raise ValueError("no teachers given")
        self.dataset, self.root = dataset, Path(root)
        self.data_key = dataset_fingerprint(data_config)
        self.dtype = dtype
        self.device = None if device is None else devices.resolve_device(str(device))
        self.verify = verify
        self.verify_tol = verify_tol if verify_tol is not None else (2e-3 if dtype == torch.float32 else 5e-2)
        views = dict(views or {})
        unknown = set(views) - set(teachers)
        if unknown:
            raise ValueError(f"views given for branches without a teacher: {sorted(unknown)}")
        self.branches: dict[str, _Branch] = {}
        self.computed: dict[str, int] = {}  # items computed by this object's fill, per branch
        n_items = len(dataset)  # type: ignore[arg-type]
        for name, teacher in teachers.items():
            view = views.get(name, default_view(name))
            if view not in VIEWS:
                raise ValueError(f"view for branch {name!r} must be one of {VIEWS}, got {view!r}")
            t_key = teacher_fingerprint(teacher)
            dtype_name = str(dtype).removeprefix("torch.")
            key = f"{name}-{view}-{dtype_name}-t{t_key}-d{self.data_key}"
            parts = {"branch": name, "teacher": t_key, "teacher_class": type(teacher).__qualname__,
                     "dataset": self.data_key, "data_config": data_config, "view": view, "compute_dtype": dtype_name}
            if (self.root / key / META_FILE).exists():
                cache = TargetCache.open(self.root, key)
                if cache.num_items != n_items:
                    raise ValueError(f"target cache {cache.dir} has {cache.num_items} rows but the dataset has "
                                     f"{n_items} items under the same configuration key; the data_config given "
                                     f"does not describe this dataset fully")
            else:
                n_tokens, dim = self._probe_shape(teacher, view)
                cache = TargetCache(self.root, key, n_items, n_tokens, dim, key_parts=parts)
            self.branches[name] = _Branch(teacher, cache, view)
        if fill:
            self.fill(batch_size=batch_size, progress=progress, num_workers=num_workers)

    def _probe_shape(self, teacher: nn.Module, view: View) -> tuple[int, int]:
        """(N, D) of the teacher's output on item 0."""
        clip = _view(self.dataset[0], view)
        out = _run_teacher(teacher, clip[None], self._device_for(teacher), self.dtype)
        if out.ndim != 3:
            raise ValueError(f"teacher {type(teacher).__name__} returned shape {tuple(out.shape)}, expected [B, N, D]")
        return int(out.shape[1]), int(out.shape[2])

    def _device_for(self, teacher: nn.Module) -> torch.device:
        if self.device is not None:
            teacher.to(self.device)
            return self.device
        return _teacher_device(teacher)

    def fill(self, batch_size: int = 32, progress: bool = True, num_workers: int = 0) -> dict[str, int]:
        """Compute whatever is missing in every branch's cache (one pass over the data for all branches);
        returns {branch: items computed by this object so far}."""
        names = list(self.branches)
        jobs = [FillJob(b.cache, b.teacher, b.view, name) for name, b in self.branches.items()]
        for b in self.branches.values():
            self._device_for(b.teacher)
        counts = fill_many(jobs, self.dataset, batch_size=batch_size, dtype=self.dtype, progress=progress,
                           num_workers=num_workers, desc=f"teacher targets [{', '.join(names)}]")
        for name, n in zip(names, counts):
            self.computed[name] = self.computed.get(name, 0) + n
        return dict(self.computed)

    @property
    def caches(self) -> dict[str, TargetCache]:
        return {name: b.cache for name, b in self.branches.items()}

    @property
    def complete(self) -> bool:
        return all(b.cache.complete for b in self.branches.values())

    def __call__(self, index: torch.Tensor | Sequence[int], device: str | torch.device | None = None
                 ) -> dict[str, torch.Tensor]:
        """{branch: float32 [B, N, D]} targets of the items `index` ([B] ints), moved to `device` if given."""
        idx = _as_index_array(index)
        if device is None and isinstance(index, torch.Tensor):
            device = index.device
        out = {name: b.cache.get(idx) for name, b in self.branches.items()}
        if self.verify and len(idx):
            self._verify(int(idx[0]), {k: v[0] for k, v in out.items()})
        if device is not None:
            out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
        return out

    def _verify(self, i: int, cached: Mapping[str, torch.Tensor]) -> None:
        """Recompute item `i` with each teacher and compare with its cached row [N, D]."""
        for name, b in self.branches.items():
            clip = _view(self.dataset[i], b.view)
            fresh = _run_teacher(b.teacher, clip[None], self._device_for(b.teacher), self.dtype)[0]
            tol = self.verify_tol
            if not torch.allclose(cached[name], fresh, rtol=tol, atol=tol):
                diff = (cached[name] - fresh).abs().max().item()
                raise StaleCacheError(
                    f"cached targets of item {i}, branch {name!r} ({b.cache.dir}) differ from the teacher's output "
                    f"now (max |diff| {diff:.3g}, tolerance {tol:g}): the dataset is not deterministic, or its "
                    f"configuration changed without changing data_config. Delete the folder to rebuild it.")
