"""Linear probes on frozen encoder features: a cheap, less noisy evaluation that the paper lacks.

The paper scores every encoder by full finetuning (mvd_reference.md section 6), which at laptop scale is slow
and noisy. A linear probe asks a simpler question of the same frozen encoder: how linearly decodable is the
task from its output tokens? It is the evaluation the training issue asks for (issue 4, run type `probe`).

    video [B, C, T, H, W] -> frozen encoder (eval, no grad, after its final norm)   tokens [B, N, D]
      -> pooling "mean": mean over all N tokens                                      [B, D]
         pooling "time": mean over each time slice, concatenated in time order        [B, T' * D]
      -> standardize (mean/std of the training part) -> multinomial logistic regression (L2)

"time" pooling exists because a plain mean is blind to order: a clip and its time-reverse give the same mean
of per-slice features, and the temporal (motion) task of the synthetic benchmark is built so that only order
tells its classes apart. Pooling "tokens" keeps every token ([B, N, D], float16 by default to halve memory) for
the attentive probe of probe_protocols.py; the same forward pass serves every pooling. `layer` reads the output
of one encoder block instead of the final output (a forward hook; the model code is untouched), and
`save_features` / `load_features` keep extracted features on disk as .npy arrays with a JSON description.

The L2 strength C is chosen on a stratified held-out part of the TRAINING split; the test split is touched
only once, by the final model refitted on the whole training split with the chosen C. A random-init encoder
goes through exactly the same path and gives the floor every table shows.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from torch import nn

from mvd_lib import devices
from mvd_lib.atomic import atomic_write, write_json
from mvd_lib.evaluate import clip_batches, place_model, topk_accuracy
from mvd_lib.mae import ImageViT
from mvd_lib.teachers import FrozenTeacher, ImageTeacher
from mvd_lib.vit import VideoViT

Pooling = Literal["mean", "time", "tokens"]
POOLINGS: tuple[Pooling, ...] = ("mean", "time")  # pooled features (the default extraction)
TOKENS: Pooling = "tokens"  # every token kept, [N, L, D] (for the attentive probe)
ALL_POOLINGS: tuple[Pooling, ...] = (*POOLINGS, TOKENS)
TOKEN_DTYPES: dict[str, np.dtype] = {"float16": np.dtype(np.float16), "float32": np.dtype(np.float32)}
# Label sets a dataset item may carry: "label" (real datasets), "appearance" / "motion" (synthetic benchmark).
LABEL_KEYS: tuple[str, ...] = ("label", "appearance", "motion")
# Inverse L2 strengths tried on the held-out part of the training split (features are standardized first).
DEFAULT_C_GRID: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


# ---------------------------------------------------------------------------------------------- encoder
def _unwrap(model: nn.Module) -> tuple[nn.Module, int]:
    """The encoder inside wrappers (DDP `.module`, teachers' `.model`, VideoMAEPretrain's `.encoder`) and the
    frame stride an image encoder reads clips with (the image teacher's tubelet size; 1 for a bare ImageViT)."""
    stride = 1
    while True:
        if isinstance(model, (VideoViT, ImageViT)):
            return model, stride
        if isinstance(model, ImageTeacher):
            stride = model.tubelet_size
        if isinstance(model, FrozenTeacher):
            model = model.model
        elif isinstance(getattr(model, "module", None), nn.Module):  # DistributedDataParallel
            model = model.module
        elif isinstance(getattr(model, "encoder", None), (VideoViT, ImageViT)):  # VideoMAEPretrain
            model = model.encoder
        else:
            raise TypeError(f"cannot find a video or image ViT encoder in {type(model).__name__}; "
                            "probe a VideoViT (or subclass), a teacher, or a VideoMAEPretrain")


class _LayerReached(Exception):
    """Raised by the block hook once the chosen layer has run, so the deeper blocks are skipped."""


def _block_index(enc: nn.Module, layer: int) -> int:
    depth = len(enc.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"layer {layer} is out of range for an encoder of {depth} blocks "
                         f"(use 0..{depth - 1}, or a negative index from the end)")
    return layer % depth


def _run_to_layer(enc: nn.Module, forward: Any, layer: int | None) -> torch.Tensor:
    """forward() if layer is None, else the output of enc.blocks[layer] during forward() (a forward hook that
    stops the pass there; the model code is unchanged)."""
    if layer is None:
        return forward()
    caught: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        caught["x"] = output
        raise _LayerReached

    handle = enc.blocks[_block_index(enc, layer)].register_forward_hook(hook)
    try:
        forward()
    except _LayerReached:
        pass
    finally:
        handle.remove()
    if "x" not in caught:
        raise RuntimeError(f"block {layer} of {type(enc).__name__} never ran during the forward pass")
    return caught["x"]


def _encode(model: nn.Module, video: torch.Tensor,
            layer: int | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(tokens [B, N, D], token grid (T', H', W')) of the frozen encoder in `model`: its final output (after
    the final norm), or with `layer` the raw output of block `layer` (before any norm)."""
    enc, stride = _unwrap(model)
    if isinstance(enc, VideoViT):
        # The encoder path of any subclass (MVDStudent, TokenDistillStudent, VideoClassifier, ...): all tokens,
        # after the final norm (Identity in VideoClassifier, whose fc_norm comes after pooling).
        return _run_to_layer(enc, lambda: VideoViT.forward(enc, video), layer), enc.grid
    # An image encoder reads the clip frame by frame (every `stride`-th frame, as the image teacher does).
    B, C = video.shape[:2]
    frames = video[:, :, ::stride]  # [B, C, T', H, W]
    t = frames.shape[2]
    images = frames.transpose(1, 2).reshape(B * t, C, *frames.shape[3:])  # [(B T'), C, H, W]
    tokens = _run_to_layer(enc, lambda: enc.encode(images), layer)[:, 1:]  # [(B T'), L, D], cls dropped
    return tokens.reshape(B, t * tokens.shape[1], tokens.shape[2]), (t, enc.grid_size, enc.grid_size)


def encoder_tokens(model: nn.Module, video: torch.Tensor, layer: int | None = None) -> torch.Tensor:
    """The frozen encoder's output tokens. video: [B, C, T, H, W] -> [B, N, D], (t, h, w) row-major order.

    VideoViT and subclasses: `VideoViT.forward(model, video)` (no mask, after the final norm; decoders and
    classifier heads are skipped). Teachers and VideoMAEPretrain are unwrapped to their encoder; an image
    encoder (ImageViT / ImageTeacher) encodes the frames one by one and its tokens are concatenated in time.
    layer: None for the final output; i for the raw output of encoder block i (negative: from the end; -1 is
    the last block before the final norm). Blocks after it are not run."""
    return _encode(model, video, layer)[0]


def token_grid(model: nn.Module, num_frames: int) -> tuple[int, int, int]:
    """The (T', H', W') grid of `encoder_tokens` for clips of `num_frames` frames."""
    enc, stride = _unwrap(model)
    if isinstance(enc, VideoViT):
        return enc.grid
    return (len(range(0, num_frames, stride)), enc.grid_size, enc.grid_size)


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int, int], pooling: str) -> torch.Tensor:
    """Pool encoder tokens [B, N, D] into features [B, F].

    "mean": the mean over all N tokens (F = D). "time": the mean over each time slice's H'*W' tokens,
    concatenated in time order (F = T' * D), so the order of events survives. "tokens": no pooling, the
    tokens themselves [B, N, D]."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [B, N, D], got shape {tuple(tokens.shape)}")
    B, N, D = tokens.shape
    t, h, w = grid
    if N != t * h * w:
        raise ValueError(f"{N} tokens do not fill the grid {grid} ({t * h * w} tokens); pool unmasked tokens")
    if pooling == "mean":
        return tokens.mean(dim=1)  # [B, D]
    if pooling == "time":
        return tokens.reshape(B, t, h * w, D).mean(dim=2).reshape(B, t * D)  # [B, T' D]
    if pooling == TOKENS:
        return tokens
    raise ValueError(f"unknown pooling {pooling!r}; use one of {ALL_POOLINGS}")


# ---------------------------------------------------------------------------------------------- features
@dataclass
class Features:
    """Frozen-encoder features of a dataset, one row per clip, with every label set found in its items.

    Pooled features ("mean", "time") are x [N, F] float32; token features ("tokens") are x [N, L, D], float16
    or float32 (float16 is kept as given, to halve the memory of N * L * D values)."""

    x: np.ndarray  # [N, F] float32 pooled features, or [N, L, D] float16/float32 tokens (pooling "tokens")
    y: np.ndarray  # [N] int64 labels of the task named by `label`
    index: np.ndarray  # [N] int64 dataset "index" of each row (its position when items have none)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # label set name -> [N] int64 (all found)
    label: str = "label"  # which label set `y` holds
    pooling: str = "mean"  # how tokens were pooled ("mean", "time" or "tokens")
    grid: tuple[int, int, int] | None = None  # encoder token grid (T', H', W'), when extracted from a model
    layer: int | None = None  # encoder block the tokens came from (None: the final output, after the norm)

    def __post_init__(self) -> None:
        keep16 = self.pooling == TOKENS and np.asarray(self.x).dtype == np.float16
        self.x = np.asarray(self.x, dtype=np.float16 if keep16 else np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.index = np.asarray(self.index, dtype=np.int64)
        if self.pooling == TOKENS:
            if self.x.ndim != 3:
                raise ValueError(f"token features must be [N, L, D], got shape {self.x.shape}")
        elif self.x.ndim != 2:
            raise ValueError(f"x must be [N, F], got shape {self.x.shape} (pooling {self.pooling!r})")
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.index.shape != (n,):
            raise ValueError(f"y and index must be [N] = [{n}], got {self.y.shape} and {self.index.shape}")
        if self.grid is not None:
            self.grid = tuple(int(v) for v in self.grid)
        if not self.labels:
            self.labels = {self.label: self.y}

    def select(self, label: str) -> "Features":
        """The same features with `y` set to another label set (e.g. "appearance" or "motion")."""
        if label not in self.labels:
            raise KeyError(f"no label set {label!r}; this dataset has {sorted(self.labels)}")
        return Features(x=self.x, y=self.labels[label], index=self.index, labels=self.labels, label=label,
                        pooling=self.pooling, grid=self.grid, layer=self.layer)

    def subset(self, rows: np.ndarray) -> "Features":
        """The rows `rows` (indices into this set), every label set kept."""
        rows = np.asarray(rows, dtype=np.int64)
        return Features(x=self.x[rows], y=self.y[rows], index=self.index[rows],
                        labels={k: v[rows] for k, v in self.labels.items()}, label=self.label,
                        pooling=self.pooling, grid=self.grid, layer=self.layer)


class _TokenBuffer:
    """Token rows [N, L, D] written batch by batch into one preallocated array when the dataset length is
    known (no second copy at the end), else gathered and concatenated."""

    def __init__(self, total: int | None, dtype: np.dtype):
        self.total, self.dtype = total, dtype
        self.array: np.ndarray | None = None
        self.parts: list[np.ndarray] = []
        self.filled = 0

    def add(self, tokens: torch.Tensor) -> None:  # tokens [B, L, D]
        part = tokens.cpu().numpy().astype(self.dtype, copy=False)
        if self.total is None:
            self.parts.append(part)
            return
        if self.array is None:
            self.array = np.empty((self.total, *part.shape[1:]), dtype=self.dtype)
        if self.filled + len(part) > self.total:
            raise ValueError(f"the dataset yielded more than its length ({self.total}) clips")
        self.array[self.filled:self.filled + len(part)] = part
        self.filled += len(part)

    def result(self) -> np.ndarray:
        if self.total is None:
            return np.concatenate(self.parts)
        assert self.array is not None
        return self.array[:self.filled]


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Any, poolings: Sequence[str] = POOLINGS, batch_size: int = 16,
                     device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                     progress: bool = True, label_keys: Sequence[str] = LABEL_KEYS,
                     num_workers: int = 0, layer: int | None = None,
                     token_dtype: str = "float16") -> dict[str, Features]:
    """Frozen-encoder features of every clip: {pooling: Features}.

    One forward pass per clip serves every pooling: "mean" and "time" (pooled, [N, F] float32) and "tokens"
    (every token, [N, L, D] in `token_dtype`; a laptop-benchmark clip of 512 tokens x 128 dims takes 128 KiB
    in float16). The model runs in eval mode without grad (its mode is restored afterwards); device None keeps
    it where it is. layer: None reads the final output (after the final norm), i the raw output of encoder
    block i (see `encoder_tokens`). Every label set in `label_keys` that the items carry is kept
    (Features.labels), so one extraction serves both synthetic tasks; `y` holds "label" if present, else the
    first label set found. Items of a multi-view set are one row each; items marked "replaced" (a bad video
    served by another in its place, video_data.py) are dropped."""
    for p in poolings:
        if p not in ALL_POOLINGS:
            raise ValueError(f"unknown pooling {p!r}; use one of {ALL_POOLINGS}")
    if not poolings:
        raise ValueError("give at least one pooling")
    if token_dtype not in TOKEN_DTYPES:
        raise ValueError(f"unknown token_dtype {token_dtype!r}; use one of {tuple(TOKEN_DTYPES)}")
    if layer is not None:  # fail before any forward pass; record the block index counted from 0
        layer = _block_index(_unwrap(model)[0], layer)
    dev, dt = place_model(model, device, dtype)
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {p: [] for p in poolings if p != TOKENS}
    try:
        total: int | None = len(dataset)
    except TypeError:  # an iterable dataset without a length
        total = None
    token_rows = _TokenBuffer(total, TOKEN_DTYPES[token_dtype])
    labels: dict[str, list[torch.Tensor]] = {}
    index: list[torch.Tensor] = []
    replaced: list[torch.Tensor] = []
    grid = None
    try:
        for batch in clip_batches(dataset, batch_size, ("index", "replaced", *label_keys), num_workers, progress,
                                  "features"):
            with devices.autocast(dev, dt):
                tokens, grid = _encode(model, batch["video"].to(dev), layer)
            tokens = tokens.float()  # [B, N, D]
            for p in feats:
                feats[p].append(pool_tokens(tokens, grid, p).cpu())
            if TOKENS in poolings:
                token_rows.add(tokens)
            for key in label_keys:
                if key in batch:
                    labels.setdefault(key, []).append(batch[key])
            index.append(batch.get("index", batch["position"]))
            if "replaced" in batch:
                replaced.append(batch["replaced"])
    finally:
        model.train(was_training)
    if not index:
        raise ValueError("the dataset is empty")
    if not labels:
        raise KeyError(f"dataset items carry none of the label keys {tuple(label_keys)}")
    label_arrays = {k: torch.cat(v).numpy() for k, v in labels.items()}
    main = "label" if "label" in label_arrays else next(iter(label_arrays))
    idx = torch.cat(index).numpy()
    xs = {p: torch.cat(v).numpy() for p, v in feats.items()}
    if TOKENS in poolings:
        xs[TOKENS] = token_rows.result()
    if replaced:  # a view whose video could not be read (video_data serves another video in its place) is dropped
        keep = torch.cat(replaced).numpy() == 0
        xs = {p: x[keep] for p, x in xs.items()}
        label_arrays = {k: v[keep] for k, v in label_arrays.items()}
        idx = idx[keep]
    return {p: Features(x=xs[p], y=label_arrays[main], index=idx, labels=label_arrays, label=main, pooling=p,
                        grid=grid, layer=layer) for p in poolings}


# ---------------------------------------------------------------------------------------------- on disk
FEATURES_JSON = "features.json"


def save_features(features: Features | Mapping[str, Features], folder: str | Path,
                  meta: Mapping[str, Any] | None = None) -> Path:
    """Write features to `folder`/<pooling>/: x.npy ([N, F] or [N, L, D]), index.npy ([N]), one
    label_<name>.npy ([N]) per label set, and features.json (pooling, grid, layer, label sets, shape, dtype,
    plus `meta`, e.g. the encoder and the video list). Every file is written atomically. Returns `folder`."""
    by_pooling = {features.pooling: features} if isinstance(features, Features) else dict(features)
    if not by_pooling:
        raise ValueError("no features to save")
    folder = Path(folder)
    for pooling, f in by_pooling.items():
        if pooling != f.pooling:
            raise ValueError(f"features under key {pooling!r} have pooling {f.pooling!r}")
        sub = folder / pooling
        arrays = {"x": f.x, "index": f.index, **{f"label_{k}": v for k, v in f.labels.items()}}
        for name, array in arrays.items():
            atomic_write(sub / f"{name}.npy", lambda fh, a=array: np.save(fh, a, allow_pickle=False))
        write_json(sub / FEATURES_JSON, {
            "pooling": f.pooling, "grid": list(f.grid) if f.grid is not None else None, "layer": f.layer,
            "label": f.label, "label_sets": sorted(f.labels), "num_clips": int(f.x.shape[0]),
            "shape": list(f.x.shape), "dtype": str(f.x.dtype), "meta": dict(meta or {}),
        })
    return folder


def load_features(folder: str | Path, poolings: Sequence[str] | None = None,
                  mmap: bool = False) -> dict[str, Features]:
    """Features written by `save_features`: {pooling: Features}, every pooling found under `folder` (or only
    `poolings`). mmap: map x.npy read-only instead of reading it (large token arrays)."""
    folder = Path(folder)
    found = sorted(p.parent.name for p in folder.glob(f"*/{FEATURES_JSON}"))
    if not found:
        raise FileNotFoundError(f"no saved features under {folder} (expected <pooling>/{FEATURES_JSON})")
    wanted = found if poolings is None else list(poolings)
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise FileNotFoundError(f"no saved {missing} features under {folder}; found {found}")
    out = {}
    for pooling in wanted:
        sub = folder / pooling
        info = json.loads((sub / FEATURES_JSON).read_text())
        labels = {k: np.load(sub / f"label_{k}.npy") for k in info["label_sets"]}
        x = np.load(sub / "x.npy", mmap_mode="r" if mmap else None)
        if list(x.shape) != info["shape"]:
            raise ValueError(f"{sub / 'x.npy'} has shape {list(x.shape)} but {FEATURES_JSON} says {info['shape']}")
        out[pooling] = Features(x=x, y=labels[info["label"]], index=np.load(sub / "index.npy"), labels=labels,
                                label=info["label"], pooling=info["pooling"],
                                grid=tuple(info["grid"]) if info["grid"] is not None else None,
                                layer=info["layer"])
    return out


# ---------------------------------------------------------------------------------------------- probe
@dataclass
class ProbeResult:
    """A fitted linear probe: test accuracy and how its L2 strength was chosen; `to_dict()` for JSON."""

    top1: float  # test top-1 accuracy, percent
    top5: float | None  # test top-5 accuracy, percent (None with 5 classes or fewer)
    train_top1: float  # accuracy on the full training split, percent
    c: float  # chosen inverse L2 strength (sklearn's C)
    c_grid: list[float]  # C values tried, ascending
    holdout_top1: list[float]  # held-out accuracy (percent) for each C in c_grid
    num_train: int  # training clips
    num_holdout: int  # of which held out to choose C
    num_test: int  # test clips
    num_features: int  # F
    num_classes: int  # classes in the training split
    chance: float  # 100 / num_classes, percent
    converged: bool  # every logistic-regression fit converged within max_iter
    seed: int  # seed of the held-out split
    label: str = "label"  # label set probed
    pooling: str = ""  # pooling of the features ("" when unknown)
    seconds: float = 0.0  # wall time of the fits
    test_pred: np.ndarray | None = field(default=None, repr=False)  # [N_test] int64 predicted class per test clip
    protocol: str = "linear"  # evaluation protocol (see probe_protocols.PROTOCOLS)

    @property
    def chosen(self) -> dict[str, float]:
        """The chosen hyper-parameters, by name (as in the other protocols' results)."""
        return {"c": self.c}

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "test_pred"}
        out["test_pred"] = None if self.test_pred is None else self.test_pred.tolist()
        return out


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices of `y` into (fit, held-out), holding out round(fraction * n_c) rows of every class c
    but always leaving at least one row of each class to fit on. Deterministic in `seed`; both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(len(rows))]
        n_held = min(int(round(fraction * len(rows))), len(rows) - 1)
        held.append(rows[:n_held])
        fit.append(rows[n_held:])
    fit_idx, held_idx = np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))
    if len(held_idx) == 0:
        raise ValueError(f"holding out {fraction:.0%} of {len(y)} training clips leaves no held-out clips; "
                         "use more training clips or a larger holdout_fraction")
    return fit_idx, held_idx


def holdout_split(y: np.ndarray, fraction: float | None, seed: int,
                  grid: Sequence) -> tuple[np.ndarray, np.ndarray] | None:
    """The stratified (fit, held-out) rows of the training split on which a probe chooses among `grid`, or None
    (no choice): with fraction None, or with a grid of one setting, where there is nothing to choose and the
    held-out fits would be wasted. Every probe protocol chooses its setting through this rule."""
    if fraction is None and len(grid) != 1:
        raise ValueError(f"holdout_fraction=None fits a single setting without a held-out choice; got {list(grid)}")
    if fraction is None or len(grid) == 1:
        return None
    return stratified_holdout(y, fraction, seed)


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of x [N, F] (std floored so constant features stay finite)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    return mean, np.where(std > 1e-8, std, 1.0)


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, init: Any = None) -> tuple[Any, bool]:
    """Multinomial L2 logistic regression (lbfgs); returns (model, converged)."""
    clf = LogisticRegression(C=c, max_iter=max_iter, tol=1e-4, solver="lbfgs", warm_start=init is not None)
    if init is not None:
        clf.coef_, clf.intercept_ = init.coef_.copy(), init.intercept_.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    return clf, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _accuracy(clf: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(100.0 * np.mean(clf.predict(x) == y))


def fit_probe(train: Features, test: Features, c_grid: Sequence[float] = DEFAULT_C_GRID,
              holdout_fraction: float | None = 0.2, seed: int = 0, max_iter: int = 1000,
              threads: int | None = 1) -> ProbeResult:
    """Fit a linear probe on `train` and score it once on `test`.

    1. Hold out a stratified `holdout_fraction` of the TRAINING split (by `seed`); for each C in `c_grid`
       (ascending, warm-started) fit on the rest, standardized with the rest's mean/std, and score the
       held-out part. The best C wins; ties go to the smaller C (stronger regularization).
    2. Refit on the whole training split (standardized with its mean/std) with that C; report test top-1,
       top-5 (more than 5 classes) and train top-1. The test split plays no part in step 1.
    A `c_grid` of one C skips step 1 (nothing to choose; `holdout_split`); so does holdout_fraction None, which
    needs a single C (for training sets too small to hold anything out, e.g. one clip per class).
    Deterministic: the same inputs and seed give the same result.

    threads: BLAS/OpenMP threads for the fits. 1 (default) is the fastest for probe-sized problems (a few
    thousand clips x ~1000 features: about a second for the whole C grid) and far faster on a shared CPU,
    where multi-threaded BLAS can be 10-30x slower; None keeps the libraries' own setting."""
    if threads is None:
        return _fit_probe(train, test, c_grid, holdout_fraction, seed, max_iter)
    with threadpool_limits(limits=threads):
        return _fit_probe(train, test, c_grid, holdout_fraction, seed, max_iter)


def check_splits(train: Features, test: Features, protocol: str = "linear probe",
                 pooled: bool = True) -> np.ndarray:
    """Validate a (train, test) pair for a protocol and return the training classes (sorted).

    Raises on mismatched feature shapes, empty splits, NaN/inf features, a single training class, or (with
    `pooled`) token features, which need pooling first."""
    if pooled and (train.x.ndim != 2 or test.x.ndim != 2):
        raise ValueError(f"the {protocol} needs pooled features [N, F] ('mean' or 'time'), got pooling "
                         f"{train.pooling!r} with shape {train.x.shape}")
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ValueError(f"train features have shape {train.x.shape[1:]} per clip but test features "
                         f"{test.x.shape[1:]}")
    if len(train.y) == 0 or len(test.y) == 0:
        raise ValueError("empty training or test features")
    if not np.all(np.isfinite(train.x)) or not np.all(np.isfinite(test.x)):
        raise ValueError("features contain NaN or inf (a diverged encoder?)")
    classes = np.unique(train.y)
    if len(classes) < 2:
        raise ValueError(f"the training split has a single class ({classes.tolist()}); a probe needs two or more")
    return classes


def score_predictions(scores: np.ndarray, classes: np.ndarray,
                      y: np.ndarray) -> tuple[float, float | None, np.ndarray]:
    """(top-1, top-5 or None, predicted class per row) of class scores [M, K] whose columns are the training
    `classes` [K] (sorted), against labels y [M]. A label never seen in training counts as an error (with a
    warning); top-5 is None with 5 classes or fewer."""
    col = {int(c): i for i, c in enumerate(classes)}
    unseen = sorted({int(v) for v in y} - set(col))
    if unseen:
        warnings.warn(f"test labels {unseen[:10]} never occur in the training split; they count as errors",
                      stacklevel=4)
    y_col = np.array([col.get(int(v), -1) for v in y])
    known = y_col >= 0
    acc = {1: 0.0, 5: 0.0}
    if known.any():
        acc = topk_accuracy(scores[known], y_col[known], ks=(1, 5))
        acc = {k: v * known.mean() for k, v in acc.items()}
    pred = np.asarray(classes)[np.asarray(scores).argmax(axis=1)].astype(np.int64)
    return float(acc[1]), float(acc[5]) if len(classes) > 5 else None, pred


def _fit_probe(train: Features, test: Features, c_grid: Sequence[float], holdout_fraction: float | None,
               seed: int, max_iter: int) -> ProbeResult:
    classes = check_splits(train, test)
    grid = sorted({float(c) for c in c_grid})
    if not grid or grid[0] <= 0:
        raise ValueError(f"c_grid must hold positive values, got {list(c_grid)}")
    split = holdout_split(train.y, holdout_fraction, seed, grid)
    start = time.perf_counter()

    # 1. choose C on a held-out part of the training split
    held_acc, converged, num_holdout = [], True, 0
    if split is None:
        best = grid[0]
    else:
        fit_idx, held_idx = split
        mean, std = _standardizer(train.x[fit_idx])
        x_fit = (train.x[fit_idx] - mean) / std
        x_held = (train.x[held_idx] - mean) / std
        prev = None
        for c in grid:
            prev, ok = _fit_logreg(x_fit, train.y[fit_idx], c, max_iter, init=prev)
            converged &= ok
            held_acc.append(_accuracy(prev, x_held, train.y[held_idx]))
        best = grid[int(np.argmax(held_acc))]  # argmax takes the first (smallest) C among ties
        num_holdout = len(held_idx)

    # 2. refit on the full training split, score the test split once
    mean, std = _standardizer(train.x)
    x_train = (train.x - mean) / std
    x_test = (test.x - mean) / std
    clf, ok = _fit_logreg(x_train, train.y, best, max_iter)
    converged &= ok
    scores = clf.predict_proba(x_test)  # [N_test, K_train], columns in clf.classes_ order (= sorted classes)
    top1, top5, pred = score_predictions(scores, clf.classes_, test.y)
    return ProbeResult(
        top1=top1, top5=top5, train_top1=_accuracy(clf, x_train, train.y), c=best, c_grid=grid,
        holdout_top1=held_acc, num_train=len(train.y), num_holdout=num_holdout, num_test=len(test.y),
        num_features=train.x.shape[1], num_classes=len(classes), chance=100.0 / len(classes),
        converged=bool(converged), seed=seed, label=train.label,
        pooling=train.pooling if train.pooling == test.pooling else "",
        seconds=time.perf_counter() - start, test_pred=pred,
    )


def linear_probe(model: nn.Module, train_ds: Any, test_ds: Any, pooling: str = "time", label: str = "label",
                 c_grid: Sequence[float] = DEFAULT_C_GRID, holdout_fraction: float = 0.2, seed: int = 0,
                 batch_size: int = 16, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 progress: bool = True) -> ProbeResult:
    """Extract `pooling` features of both splits with the frozen `model` and fit a probe on label set `label`.

    Works the same for a trained or a random-init encoder (the floor). For several poolings or label sets from
    one extraction, call `extract_features` once and `fit_probe` on `Features.select(label)`."""
    train = extract_features(model, train_ds, (pooling,), batch_size, device, dtype, progress)[pooling]
    test = extract_features(model, test_ds, (pooling,), batch_size, device, dtype, progress)[pooling]
    return fit_probe(train.select(label), test.select(label), c_grid, holdout_fraction, seed)
