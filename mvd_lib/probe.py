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
tells its classes apart.

The L2 strength C is chosen on a stratified held-out part of the TRAINING split; the test split is touched
only once, by the final model refitted on the whole training split with the chosen C. A random-init encoder
goes through exactly the same path and gives the floor every table shows.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from torch import nn

from mvd_lib import devices
from mvd_lib.evaluate import clip_batches, place_model, topk_accuracy
from mvd_lib.mae import ImageViT
from mvd_lib.teachers import FrozenTeacher, ImageTeacher
from mvd_lib.vit import VideoViT

Pooling = Literal["mean", "time"]
POOLINGS: tuple[Pooling, ...] = ("mean", "time")
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


def _encode(model: nn.Module, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(tokens [B, N, D], token grid (T', H', W')) of the frozen encoder in `model`."""
    enc, stride = _unwrap(model)
    if isinstance(enc, VideoViT):
        # The encoder path of any subclass (MVDStudent, TokenDistillStudent, VideoClassifier, ...): all tokens,
        # after the final norm (Identity in VideoClassifier, whose fc_norm comes after pooling).
        return VideoViT.forward(enc, video), enc.grid
    # An image encoder reads the clip frame by frame (every `stride`-th frame, as the image teacher does).
    B, C = video.shape[:2]
    frames = video[:, :, ::stride]  # [B, C, T', H, W]
    t = frames.shape[2]
    images = frames.transpose(1, 2).reshape(B * t, C, *frames.shape[3:])  # [(B T'), C, H, W]
    tokens = enc.encode(images)[:, 1:]  # [(B T'), L, D] after the final norm, cls dropped
    return tokens.reshape(B, t * tokens.shape[1], tokens.shape[2]), (t, enc.grid_size, enc.grid_size)


def encoder_tokens(model: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """The frozen encoder's output tokens. video: [B, C, T, H, W] -> [B, N, D], (t, h, w) row-major order.

    VideoViT and subclasses: `VideoViT.forward(model, video)` (no mask, after the final norm; decoders and
    classifier heads are skipped). Teachers and VideoMAEPretrain are unwrapped to their encoder; an image
    encoder (ImageViT / ImageTeacher) encodes the frames one by one and its tokens are concatenated in time."""
    return _encode(model, video)[0]


def token_grid(model: nn.Module, num_frames: int) -> tuple[int, int, int]:
    """The (T', H', W') grid of `encoder_tokens` for clips of `num_frames` frames."""
    enc, stride = _unwrap(model)
    if isinstance(enc, VideoViT):
        return enc.grid
    return (len(range(0, num_frames, stride)), enc.grid_size, enc.grid_size)


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int, int], pooling: str) -> torch.Tensor:
    """Pool encoder tokens [B, N, D] into features [B, F].

    "mean": the mean over all N tokens (F = D). "time": the mean over each time slice's H'*W' tokens,
    concatenated in time order (F = T' * D), so the order of events survives."""
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
    raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")


# ---------------------------------------------------------------------------------------------- features
@dataclass
class Features:
    """Pooled features of a dataset, one row per clip, with every label set found in its items."""

    x: np.ndarray  # [N, F] float32 pooled encoder features
    y: np.ndarray  # [N] int64 labels of the task named by `label`
    index: np.ndarray  # [N] int64 dataset "index" of each row (its position when items have none)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # label set name -> [N] int64 (all found)
    label: str = "label"  # which label set `y` holds
    pooling: str = "mean"  # how tokens were pooled ("mean" or "time")
    grid: tuple[int, int, int] | None = None  # encoder token grid (T', H', W'), when extracted from a model

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.index = np.asarray(self.index, dtype=np.int64)
        if self.x.ndim != 2:
            raise ValueError(f"x must be [N, F], got shape {self.x.shape}")
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.index.shape != (n,):
            raise ValueError(f"y and index must be [N] = [{n}], got {self.y.shape} and {self.index.shape}")
        if not self.labels:
            self.labels = {self.label: self.y}

    def select(self, label: str) -> "Features":
        """The same features with `y` set to another label set (e.g. "appearance" or "motion")."""
        if label not in self.labels:
            raise KeyError(f"no label set {label!r}; this dataset has {sorted(self.labels)}")
        return Features(x=self.x, y=self.labels[label], index=self.index, labels=self.labels, label=label,
                        pooling=self.pooling, grid=self.grid)


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Any, poolings: Sequence[str] = POOLINGS, batch_size: int = 16,
                     device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                     progress: bool = True, label_keys: Sequence[str] = LABEL_KEYS,
                     num_workers: int = 0) -> dict[str, Features]:
    """Pooled frozen-encoder features of every clip: {pooling: Features}.

    One forward pass per clip serves every pooling. The model runs in eval mode without grad (its mode is
    restored afterwards); device None keeps it where it is. Every label set in `label_keys` that the items
    carry is kept (Features.labels), so one extraction serves both synthetic tasks; `y` holds "label" if
    present, else the first label set found. Items of a multi-view set are one row each."""
    for p in poolings:
        if p not in POOLINGS:
            raise ValueError(f"unknown pooling {p!r}; use one of {POOLINGS}")
    if not poolings:
        raise ValueError("give at least one pooling")
    dev, dt = place_model(model, device, dtype)
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
    labels: dict[str, list[torch.Tensor]] = {}
    index: list[torch.Tensor] = []
    grid = None
    try:
        for batch in clip_batches(dataset, batch_size, ("index", *label_keys), num_workers, progress, "features"):
            with devices.autocast(dev, dt):
                tokens, grid = _encode(model, batch["video"].to(dev))
            tokens = tokens.float()  # [B, N, D]
            for p in poolings:
                feats[p].append(pool_tokens(tokens, grid, p).cpu())
            for key in label_keys:
                if key in batch:
                    labels.setdefault(key, []).append(batch[key])
            index.append(batch.get("index", batch["position"]))
    finally:
        model.train(was_training)
    if not index:
        raise ValueError("the dataset is empty")
    if not labels:
        raise KeyError(f"dataset items carry none of the label keys {tuple(label_keys)}")
    label_arrays = {k: torch.cat(v).numpy() for k, v in labels.items()}
    main = "label" if "label" in label_arrays else next(iter(label_arrays))
    idx = torch.cat(index).numpy()
    return {p: Features(x=torch.cat(feats[p]).numpy(), y=label_arrays[main], index=idx, labels=label_arrays,
                        label=main, pooling=p, grid=grid) for p in poolings}


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
              holdout_fraction: float = 0.2, seed: int = 0, max_iter: int = 1000,
              threads: int | None = 1) -> ProbeResult:
    """Fit a linear probe on `train` and score it once on `test`.

    1. Hold out a stratified `holdout_fraction` of the TRAINING split (by `seed`); for each C in `c_grid`
       (ascending, warm-started) fit on the rest, standardized with the rest's mean/std, and score the
       held-out part. The best C wins; ties go to the smaller C (stronger regularization).
    2. Refit on the whole training split (standardized with its mean/std) with that C; report test top-1,
       top-5 (more than 5 classes) and train top-1. The test split plays no part in step 1.
    Deterministic: the same inputs and seed give the same result.

    threads: BLAS/OpenMP threads for the fits. 1 (default) is the fastest for probe-sized problems (a few
    thousand clips x ~1000 features: about a second for the whole C grid) and far faster on a shared CPU,
    where multi-threaded BLAS can be 10-30x slower; None keeps the libraries' own setting."""
    if threads is None:
        return _fit_probe(train, test, c_grid, holdout_fraction, seed, max_iter)
    with threadpool_limits(limits=threads):
        return _fit_probe(train, test, c_grid, holdout_fraction, seed, max_iter)


def _fit_probe(train: Features, test: Features, c_grid: Sequence[float], holdout_fraction: float, seed: int,
               max_iter: int) -> ProbeResult:
    if train.x.shape[1] != test.x.shape[1]:
        raise ValueError(f"train has {train.x.shape[1]} features but test has {test.x.shape[1]}")
    if len(train.y) == 0 or len(test.y) == 0:
        raise ValueError("empty training or test features")
    if not np.all(np.isfinite(train.x)) or not np.all(np.isfinite(test.x)):
        raise ValueError("features contain NaN or inf (a diverged encoder?)")
    classes = np.unique(train.y)
    if len(classes) < 2:
        raise ValueError(f"the training split has a single class ({classes.tolist()}); a probe needs two or more")
    grid = sorted({float(c) for c in c_grid})
    if not grid or grid[0] <= 0:
        raise ValueError(f"c_grid must hold positive values, got {list(c_grid)}")
    start = time.perf_counter()

    # 1. choose C on a held-out part of the training split
    fit_idx, held_idx = stratified_holdout(train.y, holdout_fraction, seed)
    mean, std = _standardizer(train.x[fit_idx])
    x_fit = (train.x[fit_idx] - mean) / std
    x_held = (train.x[held_idx] - mean) / std
    held_acc, converged, prev = [], True, None
    for c in grid:
        prev, ok = _fit_logreg(x_fit, train.y[fit_idx], c, max_iter, init=prev)
        converged &= ok
        held_acc.append(_accuracy(prev, x_held, train.y[held_idx]))
    best = grid[int(np.argmax(held_acc))]  # argmax takes the first (smallest) C among ties

    # 2. refit on the full training split, score the test split once
    mean, std = _standardizer(train.x)
    x_train = (train.x - mean) / std
    x_test = (test.x - mean) / std
    clf, ok = _fit_logreg(x_train, train.y, best, max_iter)
    converged &= ok
    scores = clf.predict_proba(x_test)  # [N_test, K_train], columns in clf.classes_ order
    # Map test labels onto the probe's columns; a test class never seen in training can never be predicted.
    col = {int(c): i for i, c in enumerate(clf.classes_)}
    unseen = sorted({int(v) for v in test.y} - set(col))
    if unseen:
        warnings.warn(f"test labels {unseen[:10]} never occur in the training split; they count as errors",
                      stacklevel=3)
    y_col = np.array([col.get(int(v), -1) for v in test.y])
    known = y_col >= 0
    acc = {1: 0.0, 5: 0.0}
    if known.any():
        acc = topk_accuracy(scores[known], y_col[known], ks=(1, 5))
        acc = {k: v * known.mean() for k, v in acc.items()}
    return ProbeResult(
        top1=float(acc[1]), top5=float(acc[5]) if len(classes) > 5 else None,
        train_top1=_accuracy(clf, x_train, train.y), c=best, c_grid=grid, holdout_top1=held_acc,
        num_train=len(train.y), num_holdout=len(held_idx), num_test=len(test.y), num_features=train.x.shape[1],
        num_classes=len(classes), chance=100.0 / len(classes), converged=bool(converged), seed=seed,
        label=train.label, pooling=train.pooling if train.pooling == test.pooling else "",
        seconds=time.perf_counter() - start, test_pred=clf.classes_[scores.argmax(axis=1)].astype(np.int64),
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
