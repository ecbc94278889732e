"""Video tensor transforms shared by the datasets: normalization, resizing, crops and flips.

Mirrors the spatial parts of the reference's `transforms.py` (GroupMultiScaleTwoResizedCrop, GroupNormalize)
and `video_transforms.py` (random_resized_crop, uniform_crop, horizontal_flip), mvd_reference.md sections 5-6,
as plain functions. Layouts:

- decoded frames: uint8 `[T, H, W, C]` (what decord returns);
- spatial work happens on float frames `frames: [T, C, H, W]` in [0, 1], so one `interpolate` call resizes a
  whole clip;
- datasets hand out `video: [C, T, H, W]` normalized with ImageNet mean/std (`normalize`, channel dim 0).

Every random choice takes a numpy `Generator`; nothing touches a global RNG. Resizing is bilinear with
antialiasing when shrinking (close to the PIL resize the reference's pretraining crop uses).
Finetuning's RandAugment, random erasing and mixup are not here: the training engine adds them.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PRETRAIN_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # GroupMultiScaleTwoResizedCrop's scales

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels


# ----------------------------------------------------------------------------------------------------------
# layout and value range
# ----------------------------------------------------------------------------------------------------------
def frames_to_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 `frames: [T, H, W, C]` -> float `[T, C, H, W]` in [0, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.dim() != 4:
        raise ValueError(f"expected frames [T, H, W, C], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {x.dtype}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def to_cthw(frames: torch.Tensor) -> torch.Tensor:
    """`frames: [T, C, H, W]` -> `video: [C, T, H, W]` (the paper's clip layout), contiguous."""
    return frames.permute(1, 0, 2, 3).contiguous()


def _stats(like: torch.Tensor, values: Sequence[float], channel_dim: int) -> torch.Tensor:
    shape = [1] * like.dim()
    shape[channel_dim] = len(values)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              channel_dim: int = 0) -> torch.Tensor:
    """(x - mean) / std per channel. `x` in [0, 1], e.g. `video: [C, T, H, W]` or `image: [C, H, W]`."""
    if x.shape[channel_dim] != len(mean):
        raise ValueError(f"channel dim {channel_dim} has size {x.shape[channel_dim]}, expected {len(mean)}")
    return (x - _stats(x, mean, channel_dim)) / _stats(x, std, channel_dim)


def denormalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                channel_dim: int = 0) -> torch.Tensor:
    """Inverse of `normalize`: back to [0, 1] (not clamped)."""
    return x * _stats(x, std, channel_dim) + _stats(x, mean, channel_dim)


# ----------------------------------------------------------------------------------------------------------
# resizing and deterministic crops
# ----------------------------------------------------------------------------------------------------------
def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of `frames: [T, C, H, W]` to `[T, C, size[0], size[1]]` (antialiased when shrinking)."""
    h, w = frames.shape[-2:]
    if (h, w) == tuple(size):
        return frames
    shrink = size[0] < h or size[1] < w
    return F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side equal to `size`, aspect kept (long side floored, as in the reference)."""
    if height <= width:
        return size, max(size, int(math.floor(width * size / height)))
    return max(size, int(math.floor(height * size / width))), size


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`frames: [T, C, H, W]` -> short side `size`, aspect kept."""
    return resize(frames, short_side_size(frames.shape[-2], frames.shape[-1], size))


def crop(frames: torch.Tensor, box: Box) -> torch.Tensor:
    """`frames[..., top:top+h, left:left+w]` for `box = (top, left, h, w)`."""
    top, left, h, w = box
    H, W = frames.shape[-2:]
    if top < 0 or left < 0 or h <= 0 or w <= 0 or top + h > H or left + w > W:
        raise ValueError(f"crop box {box} does not fit in a {H}x{W} frame")
    return frames[..., top:top + h, left:left + w]


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Central `size x size` crop of `frames: [..., H, W]` (offsets rounded up, as the reference's uniform_crop)."""
    H, W = frames.shape[-2:]
    if size > H or size > W:
        raise ValueError(f"center crop {size} is larger than the {H}x{W} frame")
    return crop(frames, (int(math.ceil((H - size) / 2)), int(math.ceil((W - size) / 2)), size, size))


def long_side_crop_box(height: int, width: int, size: int, index: int, num_crops: int = 3) -> Box:
    """Box of test crop `index` of `num_crops` square crops spaced evenly along the long side.

    Same offsets as the reference's test mode: step = (long - size) / (num_crops - 1), start = int(index * step),
    short side centred (it equals `size` after `resize_short_side(frames, size)`)."""
    if not 0 <= index < num_crops:
        raise ValueError(f"crop index {index} outside [0, {num_crops})")
    if size > height or size > width:
        raise ValueError(f"crop {size} is larger than the {height}x{width} frame")
    long_side = max(height, width)
    step = (long_side - size) / (num_crops - 1) if num_crops > 1 else 0.0
    start = int(index * step) if num_crops > 1 else (long_side - size) // 2
    if height >= width:
        return start, (width - size) // 2, size, size
    return (height - size) // 2, start, size, size


# ----------------------------------------------------------------------------------------------------------
# random crops and flips (finetuning train mode)
# ----------------------------------------------------------------------------------------------------------
def crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
             uniform: Callable[[float, float], float], randint: Callable[[int, int], int], attempts: int = 10) -> Box:
    """Inception-style box (top, left, h, w): area fraction ~ U(scale), aspect ratio log-uniform in `ratio`,
    `attempts` tries, then a central crop clamped to `ratio` (the reference's `_get_param_spatial_crop`).
    `uniform(lo, hi)` and `randint(lo, hi)` (both ends included) supply the randomness, so numpy- and
    torch-seeded callers share this one sampler."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = uniform(scale[0], scale[1]) * area
        aspect = math.exp(uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return randint(0, height - h), randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> Box:
    """`crop_box` drawing from a numpy Generator."""
    return crop_box(height, width, scale, ratio, lambda lo, hi: float(rng.uniform(lo, hi)),
                    lambda lo, hi: int(rng.integers(lo, hi + 1)), attempts)


def random_resized_crop(frames: torch.Tensor, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """One random resized crop shared by all frames: `[T, C, H, W]` -> `[T, C, size, size]`."""
    box = random_resized_crop_box(frames.shape[-2], frames.shape[-1], rng, scale, ratio)
    return resize(crop(frames, box), (size, size))


def hflip(frames: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (last dim). Note: this swaps left/right motion classes, which is why the reference
    does not flip SSv2 and the synthetic benchmark is never flipped."""
    return frames.flip(-1)


def random_hflip(frames: torch.Tensor, rng: np.random.Generator, p: float = 0.5) -> torch.Tensor:
    """`hflip` with probability `p` (one draw for the whole clip)."""
    return hflip(frames) if rng.uniform() < p else frames


# ----------------------------------------------------------------------------------------------------------
# pretraining: multi-scale crop at fixed offsets, one crop resized for the student and for the teacher
# ----------------------------------------------------------------------------------------------------------
def fixed_crop_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int,
                       more_fix_crop: bool = True) -> list[tuple[int, int]]:
    """(x, y) offsets of the reference's fixed crops: 4 corners + centre, and with `more_fix_crop` the 4 edge
    centres and 4 quarter points (13 in all), on a grid of step (image - crop) // 4."""
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    if more_fix_crop:
        offsets += [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
                    (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]
    return offsets


def multi_scale_crop_box(height: int, width: int, input_size: int, rng: np.random.Generator,
                         scales: Sequence[float] = PRETRAIN_SCALES, max_distort: int = 1,
                         more_fix_crop: bool = True) -> Box:
    """Crop box of GroupMultiScaleCrop: side lengths int(short_side * s) for s in `scales` (snapped to
    `input_size` when within 3 px), a (w, h) pair whose scale indices differ by at most `max_distort`, placed
    at one of the fixed offsets."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    offsets = fixed_crop_offsets(width, height, crop_w, crop_h, more_fix_crop)
    x, y = offsets[int(rng.integers(len(offsets)))]
    return y, x, crop_h, crop_w


def two_view_multi_scale_crop(frames: torch.Tensor, student_size: int, teacher_size: int,
                              rng: np.random.Generator, scales: Sequence[float] = PRETRAIN_SCALES
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining crop (GroupMultiScaleTwoResizedCrop): ONE multi-scale crop of `frames: [T, C, H, W]`,
    resized to `[T, C, student_size, student_size]` and to `[T, C, teacher_size, teacher_size]`. No flip."""
    box = multi_scale_crop_box(frames.shape[-2], frames.shape[-1], student_size, rng, scales)
    region = crop(frames, box)
    return resize(region, (student_size, student_size)), resize(region, (teacher_size, teacher_size))
