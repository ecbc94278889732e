"""Multi-view evaluation: softmax each view, average the probabilities per video, then top-1 / top-5.

Mirrors the reference's test-time protocol (`final_test` / `merge` in MVD's and VideoMAE's
`engine_for_finetuning.py`; mvd_reference.md section 6): every test video is seen as several views (K400: 5
clips x 3 crops, SSv2: 2 clips x 3 crops); each view's logits go through a softmax, the view probabilities of
a video are averaged, and the video is scored by the averaged probabilities.

    dataset item {"video": [C, T, H, W], "label": int, "index": int, "video_index": int (multi-view sets)}
      -> model(video)            logits [B, K]
      -> softmax                 probs  [V, K]   one row per view        (predict_views)
      -> mean over each video    probs  [M, K]   one row per video       (merge_views)
      -> top-1 / top-5 in percent                                        (topk_accuracy, evaluate)

A multi-view test set yields one item per view and names the video with "video_index" (views are grouped by
that identity, never by their position); when that key is absent every item is its own video (grouped by
"index"). All views of a video must carry the same label (an error otherwise); a video with fewer views than
the others is reported (a warning, and `incomplete_videos`). A view marked "replaced" (its video could not be
read and the dataset served another one, video_data.py) is not scored: its video is skipped as a whole and
reported (a warning naming the videos, `num_skipped` and `skipped_videos`), so the accuracy covers exactly
the videos that were read.
The data loader helpers here are shared with the linear probe (probe.py).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mvd_lib import devices

# Integer keys of a dataset item that travel with the clip through `clip_batches`.
INDEX_KEYS = ("index", "video_index", "replaced")


# ---------------------------------------------------------------------------------------------- data loading
def collate_clips(items: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Stack the clips and the integer `keys` present in the items.

    items: dataset dicts with "video" [C, T, H, W] -> {"video": [B, C, T, H, W], key: int64 [B] for each key
    the first item has}. Other keys (paths, strings, extra tensors) are dropped."""
    if not items:
        raise ValueError("empty batch")
    missing_video = [i for i, it in enumerate(items) if "video" not in it]
    if missing_video:
        raise KeyError(f"dataset items have no 'video' key (keys: {sorted(items[missing_video[0]])})")
    out = {"video": torch.stack([torch.as_tensor(it["video"]) for it in items])}
    for key in keys:
        if key not in items[0]:
            continue
        if any(key not in it for it in items):
            raise KeyError(f"some dataset items have the key {key!r} and some do not")
        out[key] = torch.tensor([int(it[key]) for it in items], dtype=torch.int64)
    return out


def clip_batches(dataset: Any, batch_size: int, keys: Sequence[str], num_workers: int = 0,
                 progress: bool = True, desc: str = "clips") -> Iterator[dict[str, torch.Tensor]]:
    """Batches of `dataset` in order (no shuffling), with a tqdm.auto bar over batches.

    Yields {"video": [B, C, T, H, W], key: int64 [B], "position": int64 [B]} where "position" is each item's
    position in the dataset (the fallback when items carry no "index"). The set of keys must be the same in
    every batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=partial(collate_clips, keys=tuple(keys)))
    seen: set[str] | None = None
    start = 0
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        if seen is None:
            seen = set(batch)
        elif set(batch) != seen:
            raise KeyError(f"dataset items changed keys part-way: {sorted(seen)} then {sorted(batch)}")
        n = batch["video"].shape[0]
        batch["position"] = torch.arange(start, start + n, dtype=torch.int64)
        start += n
        yield batch


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def place_model(model: nn.Module, device: str | torch.device | None,
                dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Resolve (device, compute dtype): None keeps the model where it is; a device (or "auto") moves it there.
    dtype None: bf16 autocast on GPUs, float32 on CPU (devices.default_dtype)."""
    dev = model_device(model) if device is None else devices.resolve_device(str(device))
    model.to(dev)
    return dev, devices.default_dtype(dev) if dtype is None else dtype


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ViewPredictions:
    """Softmax probabilities of every view, with the video each view belongs to."""

    probs: np.ndarray  # [V, K] float32 softmax probabilities, one row per view
    video_index: np.ndarray  # [V] int64 video each view belongs to ("video_index", else "index")
    label: np.ndarray  # [V] int64 ground-truth label of each view
    index: np.ndarray  # [V] int64 dataset "index" of each view (its position when items have none)
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [S] videos not scored

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float32)
        self.video_index = np.asarray(self.video_index, dtype=np.int64)
        self.label = np.asarray(self.label, dtype=np.int64)
        self.index = np.asarray(self.index, dtype=np.int64)
        self.skipped = np.asarray(self.skipped, dtype=np.int64).reshape(-1)
        v = self.probs.shape[0]
        if self.probs.ndim != 2:
            raise ValueError(f"probs must be [V, K], got shape {self.probs.shape}")
        for name in ("video_index", "label", "index"):
            if getattr(self, name).shape != (v,):
                raise ValueError(f"{name} must be [V] = [{v}], got shape {getattr(self, name).shape}")

    @classmethod
    def from_logits(cls, logits: np.ndarray | torch.Tensor, video_index: Sequence[int], label: Sequence[int],
                    index: Sequence[int] | None = None) -> "ViewPredictions":
        """Softmax each view's logits [V, K] (in float32); index defaults to 0..V-1."""
        logits = torch.as_tensor(logits).float()
        probs = torch.softmax(logits, dim=-1).numpy()
        index = np.arange(len(probs)) if index is None else index
        return cls(probs=probs, video_index=np.asarray(video_index), label=np.asarray(label), index=np.asarray(index))


@dataclass
class VideoPredictions:
    """Per-video predictions after averaging the view probabilities."""

    video_index: np.ndarray  # [M] int64 video ids, ascending
    probs: np.ndarray  # [M, K] float32 mean of the views' softmax probabilities
    label: np.ndarray  # [M] int64 ground-truth label (the same for every view of a video)
    num_views: np.ndarray  # [M] int64 views averaged for each video

    @property
    def pred(self) -> np.ndarray:
        """[M] int64 top-1 class of each video."""
        return self.probs.argmax(axis=1).astype(np.int64)


@dataclass
class EvalResult:
    """Multi-view test result (mvd_reference.md section 6); `to_dict()` gives a JSON-ready record."""

    top1: float  # video-level top-1 accuracy, percent
    top5: float | None  # video-level top-5 accuracy, percent (None with 5 classes or fewer: trivially 100)
    num_videos: int  # videos scored
    num_views: int  # views (clips x crops) scored in all
    num_classes: int  # K, the width of the model's output
    views_per_video: int  # the most common number of views per video
    incomplete_videos: list[int]  # video ids with fewer views than `views_per_video` (reported, still scored)
    videos: VideoPredictions = field(repr=False)  # per-video probabilities, labels and view counts
    num_skipped: int = 0  # videos not scored because they could not be read
    skipped_videos: list[dict[str, Any]] = field(default_factory=list)  # [{"video_index", "name"}] of those

    def to_dict(self, include_probs: bool = False) -> dict[str, Any]:
        """Summary plus per-video predictions as plain lists (probabilities only when asked: [M, K] floats)."""
        out: dict[str, Any] = {
            "top1": self.top1, "top5": self.top5, "num_videos": self.num_videos, "num_views": self.num_views,
            "num_classes": self.num_classes, "views_per_video": self.views_per_video,
            "incomplete_videos": list(self.incomplete_videos),
            "num_skipped": self.num_skipped, "skipped_videos": list(self.skipped_videos),
            "video_index": self.videos.video_index.tolist(), "label": self.videos.label.tolist(),
            "pred": self.videos.pred.tolist(), "num_views_per_video": self.videos.num_views.tolist(),
        }
        if include_probs:
            out["probs"] = self.videos.probs.tolist()
        return out


# ---------------------------------------------------------------------------------------------- steps
@torch.no_grad()
def predict_views(model: nn.Module, dataset: Any, batch_size: int = 8, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, progress: bool = True, num_workers: int = 0) -> ViewPredictions:
    """Softmax probabilities of every view of `dataset` under `model` (in eval mode, no grad).

    model(video [B, C, T, H, W]) -> logits [B, K]. device None keeps the model where it is. The model's
    train/eval mode is restored afterwards. Views marked "replaced" are dropped, and so are all views of their
    videos, which are listed in `skipped` instead."""
    dev, dt = place_model(model, device, dtype)
    was_training = model.training
    model.eval()
    probs, vids, labels, index, replaced = [], [], [], [], []
    try:
        for batch in clip_batches(dataset, batch_size, ("label", *INDEX_KEYS), num_workers, progress, "views"):
            if "label" not in batch:
                raise KeyError("evaluation needs a 'label' in every dataset item")
            with devices.autocast(dev, dt):
                logits = model(batch["video"].to(dev))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                got = type(logits).__name__ if not isinstance(logits, torch.Tensor) else f"shape {tuple(logits.shape)}"
                raise ValueError(f"model must return logits [B, K], got {got}")
            probs.append(torch.softmax(logits.float(), dim=-1).cpu())  # softmax per view, in float32
            idx = batch.get("index", batch["position"])
            vids.append(batch.get("video_index", idx))
            labels.append(batch["label"])
            index.append(idx)
            replaced.append(batch.get("replaced", torch.zeros_like(idx)))
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("the dataset is empty")
    video_index = torch.cat(vids).numpy()
    skipped = np.unique(video_index[torch.cat(replaced).numpy() != 0])
    keep = ~np.isin(video_index, skipped)
    return ViewPredictions(probs=torch.cat(probs).numpy()[keep], video_index=video_index[keep],
                           label=torch.cat(labels).numpy()[keep], index=torch.cat(index).numpy()[keep],
                           skipped=skipped)


def merge_views(views: ViewPredictions) -> VideoPredictions:
    """Average the softmax probabilities of all views of each video: [V, K] -> [M, K], videos ascending.

    Raises ValueError if the views of a video disagree on its label."""
    vid, inverse, counts = np.unique(views.video_index, return_inverse=True, return_counts=True)
    m, k = len(vid), views.probs.shape[1]
    sums = np.zeros((m, k), dtype=np.float64)
    np.add.at(sums, inverse, views.probs.astype(np.float64))
    lo = np.full(m, np.iinfo(np.int64).max)
    hi = np.full(m, np.iinfo(np.int64).min)
    np.minimum.at(lo, inverse, views.label)
    np.maximum.at(hi, inverse, views.label)
    bad = np.flatnonzero(lo != hi)
    if len(bad):
        shown = ", ".join(f"video {vid[i]} has labels {sorted(set(views.label[inverse == i].tolist()))}"
                          for i in bad[:5])
        raise ValueError(f"{len(bad)} video(s) have views with different labels: {shown}")
    return VideoPredictions(video_index=vid.astype(np.int64), probs=(sums / counts[:, None]).astype(np.float32),
                            label=lo.astype(np.int64), num_views=counts.astype(np.int64))


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Percent of rows whose label is among the k highest scores, for each k in `ks`.

    probs: [M, K] scores, labels: [M] in 0..K-1. A k >= K counts every row as correct (all K classes are in
    the top k); ties are broken toward the lower class index."""
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"need probs [M, K] and labels [M], got {probs.shape} and {labels.shape}")
    if probs.shape[0] == 0:
        raise ValueError("no predictions to score")
    num_classes = probs.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (the model has {num_classes} outputs), "
                         f"got {labels.min()}..{labels.max()}")
    order = np.argsort(-probs, axis=1, kind="stable")  # [M, K] classes by descending score
    rank = np.argmax(order == labels[:, None], axis=1)  # [M] position of the true label
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out[int(k)] = float(100.0 * np.mean(rank < k))
    return out


def evaluate(model: nn.Module, dataset: Any, batch_size: int = 8, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None, progress: bool = True, num_workers: int = 0) -> EvalResult:
    """The reference test protocol: softmax per view, mean per video, top-1 / top-5 over videos.

    Warns when some videos have fewer views than the most common count (they are still scored; their ids are
    in `incomplete_videos`), and when some could not be read (skipped, named with the dataset's `video_name`
    when it has one)."""
    views = predict_views(model, dataset, batch_size, device, dtype, progress, num_workers)
    return score_views(views, getattr(dataset, "video_name", None))


def score_views(views: ViewPredictions, video_name: Callable[[int], str] | None = None) -> EvalResult:
    """Merge `views` per video and score them (the part of `evaluate` after the forward passes).

    Views of the videos in `views.skipped` are not scored. video_name: names a skipped video id in the report
    (default "video <id>")."""
    name = video_name or (lambda v: f"video {v}")
    skipped_ids = np.unique(views.skipped)
    skipped = [{"video_index": int(v), "name": name(int(v))} for v in skipped_ids]
    if skipped:
        keep = ~np.isin(views.video_index, skipped_ids)
        views = ViewPredictions(probs=views.probs[keep], video_index=views.video_index[keep],
                                label=views.label[keep], index=views.index[keep], skipped=skipped_ids)
        shown = "; ".join(s["name"] for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        total = len(np.unique(views.video_index)) + len(skipped)
        if len(views.video_index) == 0:
            raise ValueError(f"no video could be scored: all {total} videos were unreadable ({shown})")
        warnings.warn(f"{len(skipped)} of {total} videos could not be read and are not scored ({shown}); the "
                      f"accuracy covers the other {total - len(skipped)}", stacklevel=2)
    videos = merge_views(views)
    num_classes = videos.probs.shape[1]
    acc = topk_accuracy(videos.probs, videos.label, ks=(1, 5))
    typical = Counter(videos.num_views.tolist()).most_common(1)[0][0]
    incomplete = videos.video_index[videos.num_views < typical].tolist()
    if incomplete:
        shown = ", ".join(str(v) for v in incomplete[:10]) + (" ..." if len(incomplete) > 10 else "")
        warnings.warn(f"{len(incomplete)} of {len(videos.video_index)} videos have fewer than {typical} views "
                      f"(videos {shown}); they are scored on the views they have", stacklevel=2)
    return EvalResult(top1=acc[1], top5=acc[5] if num_classes > 5 else None, num_videos=len(videos.video_index),
                      num_views=len(views.video_index), num_classes=num_classes, views_per_video=int(typical),
                      incomplete_videos=[int(v) for v in incomplete], videos=videos, num_skipped=len(skipped),
                      skipped_videos=skipped)
