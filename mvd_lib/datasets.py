"""The datasets a `DataSpec` names: the synthetic benchmark (synthetic.py) or real-video lists (video_data.py).

    pretrain_clips(data, model)          unlabeled clips for video pretraining and distillation
    labeled_clips(data, model, split)    labeled clips of "train", "val" or "test" (real lists: test views)
    stills(data)                         the image teacher's stills (the synthetic benchmark's ImageNet analogue)
    num_classes_of(data)                 classes of the label set `data.task`
    list_files(data, splits)             the annotation lists a run will read (checked before any compute)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset

from mvd_lib.config import DATASETS, AugmentConfig, DataSpec, ModelSpec
from mvd_lib.synthetic import SyntheticClips, SyntheticImages

SPLITS = ("train", "val", "test")


def _synthetic_count(data: DataSpec, split: str) -> int:
    return {"pretrain": data.num_clips, "train": data.num_clips, "val": data.num_val, "test": data.num_test}[split]


def pretrain_clips(data: DataSpec, model: ModelSpec, teacher_size: int | None = None, seed: int = 0) -> Dataset:
    """Unlabeled clips for video pretraining and distillation: item {"video" [C, T, H, W], "index"} (and
    "teacher_video" when the image teacher takes another resolution)."""
    if data.source == "synthetic":
        return SyntheticClips("pretrain", data.num_clips, data.synthetic, task=None, cache=data.memory_cache)
    from mvd_lib.video_data import VideoPretrainDataset

    return VideoPretrainDataset(Path(data.list_dir) / "train.csv", clip_len=model.num_frames, stride=data.sampling_rate,
                                input_size=model.img_size, teacher_size=teacher_size, root=data.root or None,
                                seed=seed, strict=data.strict, cache=clip_cache(data))


def labeled_clips(data: DataSpec, model: ModelSpec, split: str, seed: int = 0,
                  train_aug: AugmentConfig | None = None) -> Dataset:
    """Labeled clips of `split` ("train", "val" or "test"). Real lists: train clips are randomly sampled (crop
    and flip from `train_aug`), val/test clips are multi-view (test_clips x test_crops views per video)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if data.source == "synthetic":
        return SyntheticClips(split, _synthetic_count(data, split), data.synthetic, task=data.task,
                              cache=data.memory_cache)
    from mvd_lib.video_data import VideoClsDataset

    mode = "train" if split == "train" else "test"
    kwargs: dict[str, Any] = {}
    if train_aug is not None and mode == "train":
        kwargs = dict(flip=train_aug.flip_prob > 0, scale=train_aug.crop_scale or (1.0, 1.0))
    return VideoClsDataset(Path(data.list_dir) / f"{split}.csv", num_classes_of(data), mode=mode,
                           sampling=data.sampling, clip_len=model.num_frames, stride=data.sampling_rate,
                           crop_size=model.img_size, test_clips=data.test_clips, test_crops=data.test_crops,
                           root=data.root or None, seed=seed, strict=data.strict, cache=clip_cache(data), **kwargs)


def stills(data: DataSpec) -> SyntheticImages:
    """The stills of the image teacher's pretraining: {"image" [C, H, W], "label", "index"}."""
    return SyntheticImages(data.num_images, data.synthetic, cache=data.memory_cache)


def clip_cache(data: DataSpec):
    """The decoded-clip cache of `data.clip_cache` (None when off)."""
    if not data.clip_cache:
        return None
    from mvd_lib.clip_cache import ClipCache

    return ClipCache(data.clip_cache)


def num_classes_of(data: DataSpec) -> int:
    """Classes of the label set `data.task` (synthetic) or of the list dataset."""
    if data.source == "synthetic":
        return data.synthetic.num_appearance if data.task == "appearance" else data.synthetic.num_motions
    return DATASETS[data.dataset.lower()]


def list_files(data: DataSpec, splits: Sequence[str]) -> list[Path]:
    """The annotation list files a run of `data` reads for `splits` (empty for the synthetic benchmark)."""
    if data.source != "list":
        return []
    return [Path(data.list_dir) / f"{s}.csv" for s in splits]
