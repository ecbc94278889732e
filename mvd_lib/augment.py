"""Finetuning augmentations (mvd_reference.md section 6): RandAugment, random resized crop, flip, cube random
erasing, repeated augmentation, and batch-level mixup / cutmix with label smoothing.

Mirrors the reference's `kinetics.py` / `ssv2.py` (`_aug_frame`), `rand_augment.py`, `random_erasing.py`,
`video_transforms.py` (`random_resized_crop`, `horizontal_flip`), `mixup.py` and `multiple_samples_collate`.
Per clip, in the reference's order:

    RandAugment (same ops on every frame) -> random resized crop -> horizontal flip -> cube random erasing

then, per batch, mixup or cutmix with the batch flipped (one lambda per batch) and label-smoothed soft
targets for `soft_target_cross_entropy`. The reference recipe is `rand-m7-n4-mstd0.5-inc1`, crop scale
(0.08, 1), flip 0.5 (not for SSv2), erasing 0.25 in `pixel` mode, mixup 0.8 / cutmix 1.0, smoothing 0.1,
two augmented copies of every clip.

What differs from the reference, on purpose:
- Every random choice comes from an explicit `torch.Generator`. `AugmentedClips` seeds one per
  (seed, epoch, index), so a clip's augmentation does not depend on the DataLoader's worker count or
  order, and a resumed run sees exactly the augmentations of an uninterrupted one. (The reference draws
  from Python's and numpy's global generators, which differ per worker and are not checkpointed.)
- Everything works on float tensors: clips are `[C, T, H, W]`, normalized with ImageNet mean/std (the
  layout of every mvd_lib dataset). RandAugment un-normalizes to [0, 1] pixels, runs all its ops on the
  frames as one batch `[T, C, H, W]` (so every frame gets the same op with the same magnitude, as the
  reference's list-of-PIL-frames call does) and normalizes again. PIL works on uint8; here pixels stay
  float and are quantized to 8 bits only where an op is defined on levels (Posterize, Solarize,
  SolarizeAdd thresholds, Equalize). Geometric ops resample bicubically with `grid_sample` (Keys a=-0.75,
  PIL uses a=-0.5) and fill with grey 128/255, the reference's fill.

RandAugment op set: all 15 ops of the reference's increasing (`inc1`) list, with its magnitude maps on the
0..10 scale: AutoContrast, Equalize, Invert, Rotate (+-30 deg at 10), Posterize (keep 4 -> 0 bits),
Solarize (threshold 256 -> 0), SolarizeAdd (+0..110 below 128), Color / Contrast / Brightness / Sharpness
(factor 1 +- 0.9 m/10), ShearX / ShearY (+-0.3 m/10), TranslateX / TranslateY (+-0.45 m/10 of the frame).
n ops are drawn uniformly with replacement; each is applied with probability 0.5 at magnitude
N(m, mstd) clipped to [0, 10]. AutoContrast, Equalize and Contrast use per-frame statistics, as PIL does
on each frame in the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from mvd_lib import transforms as T
from mvd_lib.config import (AUGMENT_RECIPES, ERASE_MODES, LIGHT, LIGHT_MOTION, MAX_MAGNITUDE, NONE,  # noqa: F401
                            REFERENCE, REFERENCE_SSV2, AugmentConfig, augment_config)
from mvd_lib.losses import IMAGENET_MEAN, IMAGENET_STD

# The recipe dataclass and the named recipes live in config.py (no torch there).

# --------------------------------------------------------------------------------------------- randomness

_CLIP_STREAM = 0x636C6970  # "clip": keeps per-clip streams apart from per-batch ones and other seeds
_BATCH_STREAM = 0x6D6978  # "mix"


def derive_seed(*keys: int) -> int:
    """A 64-bit seed from non-negative integer keys through numpy's SeedSequence (well mixed, no collisions
    between nearby keys such as (seed, epoch, index) and (seed, epoch, index + 1))."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0])


def clip_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator that augments item `index` of `epoch`: a pure function of its arguments."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, epoch, index, _CLIP_STREAM))
    return g


def batch_generator(seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator for the mixup / cutmix draw of optimizer `step` (and process `rank` under DDP)."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, epoch, step, rank, _BATCH_STREAM))
    return g


def _rand(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _rand(g)


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi], both ends included (Python's random.randint)."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def _beta(g: torch.Generator, alpha: float) -> float:
    """A Beta(alpha, alpha) draw from a numpy generator seeded by `g` (torch has no seeded Beta sampler)."""
    seed = int(torch.randint(0, 2**62, (), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


# --------------------------------------------------------------------------------------------- RandAugment

_FILL = 128 / 255  # grey fill of the geometric ops (the reference's default `img_mean` (128, 128, 128))

RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")
_SIGNED = {"Rotate", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"}


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)[:, None, None, None]  # [C, 1, 1, 1]


def _to_frames01(clip: torch.Tensor, mean, std) -> torch.Tensor:
    """[C, T, H, W] normalized -> [T, C, H, W] float32 pixels in [0, 1]."""
    x = clip.float() * _channel_view(std, clip.float()) + _channel_view(mean, clip.float())
    return x.permute(1, 0, 2, 3).clamp(0, 1)


def _from_frames01(frames: torch.Tensor, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """[T, C, H, W] pixels -> [C, T, H, W] normalized, in `dtype`."""
    x = frames.permute(1, 0, 2, 3)
    return ((x - _channel_view(mean, x)) / _channel_view(std, x)).to(dtype).contiguous()


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> 8-bit levels 0..255 (as float)."""
    return (x * 255).round().clamp(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (PIL's "L" conversion). [T, 3, H, W] -> [T, 1, H, W]."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ImageEnhance: degenerate + factor * (x - degenerate), clipped."""
    return (degenerate + factor * (x - degenerate)).clamp(0, 1)


def _affine(x: torch.Tensor, m: tuple[float, float, float, float, float, float]) -> torch.Tensor:
    """PIL `Image.transform(AFFINE, m)`: output pixel (x, y) samples the input at (a x + b y + c, d x + e y + f),
    pixel centres at +0.5; bicubic (edge-replicated), grey
    fill where the source point falls outside the frame. x: [T, C, H, W]."""
    a, b, c, d, e, f = m
    t, _, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype, device=x.device) + 0.5
    xs = torch.arange(w, dtype=x.dtype, device=x.device) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xin, yin = a * xx + b * yy + c, d * xx + e * yy + f
    grid = torch.stack([2 * xin / w - 1, 2 * yin / h - 1], dim=-1).expand(t, h, w, 2)  # [T, H, W, 2]
    out = F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)  # PIL fills where the source point is outside
    return torch.where(inside, out, torch.full_like(out, _FILL)).clamp(0, 1)


def _rotation(degrees: float, h: int, w: int) -> tuple[float, ...]:
    """PIL `Image.rotate(degrees)` (counter-clockwise about the frame centre) as an affine map."""
    angle = -math.radians(degrees)
    a, b, d, e = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
    cx, cy = w / 2, h / 2
    return (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL `ImageOps.equalize` per frame and channel on 8-bit levels. x: [T, C, H, W] in [0, 1]."""
    t, c, h, w = x.shape
    lv = _levels(x).long().reshape(t * c, h * w)  # [TC, HW]
    offsets = 256 * torch.arange(t * c, device=x.device)[:, None]
    hist = torch.bincount((lv + offsets).flatten(), minlength=256 * t * c).reshape(t * c, 256)
    last = 255 - (hist > 0).flip(1).long().argmax(1, keepdim=True)  # highest level present
    step = (h * w - hist.gather(1, last)) // 255  # [TC, 1]
    before = hist.cumsum(1) - hist  # pixels below each level
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand_as(lut))  # step 0: identity
    return (lut.gather(1, lv).reshape(t, c, h, w).to(x.dtype) / 255)


def _sharpness_degenerate(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) inside, original pixels on the 1-px border."""
    t, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13
    smooth = F.conv2d(x.reshape(t * c, 1, h, w), kernel[None, None]).reshape(t, c, h - 2, w - 2)
    out = x.clone()
    out[..., 1:-1, 1:-1] = smooth
    return out


def _pixel_op(x: torch.Tensor, name: str, level: float, sign: float) -> torch.Tensor:
    """One RandAugment op at `level` (0..10) with `sign` (+-1) on frames `[T, C, H, W]` in [0, 1]."""
    frac = level / MAX_MAGNITUDE
    h, w = x.shape[-2:]
    if name == "AutoContrast":
        lo = x.amin(dim=(-2, -1), keepdim=True)
        hi = x.amax(dim=(-2, -1), keepdim=True)
        span = hi - lo
        return torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), x)
    if name == "Equalize":
        return _equalize(x)
    if name == "Invert":
        return 1 - x
    if name == "Rotate":
        return _affine(x, _rotation(sign * 30.0 * frac, h, w))
    if name == "Posterize":
        bits = 4 - int(frac * 4)  # keep 4 bits at level 0, none at level 10
        q = 2 ** (8 - bits)
        return torch.div(_levels(x), q, rounding_mode="floor") * q / 255
    if name == "Solarize":
        thresh = 256 - int(frac * 256)  # levels >= thresh are inverted
        return torch.where(_levels(x) >= thresh, 1 - x, x)
    if name == "SolarizeAdd":
        add = int(frac * 110)
        return torch.where(_levels(x) < 128, (x + add / 255).clamp(max=1), x)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = 1.0 + sign * 0.9 * frac
        if name == "Color":
            return _blend(_gray(x), x, factor)
        if name == "Contrast":
            return _blend(_gray(x).mean(dim=(-3, -2, -1), keepdim=True), x, factor)
        if name == "Brightness":
            return (x * factor).clamp(0, 1)
        return _blend(_sharpness_degenerate(x), x, factor)
    if name in ("ShearX", "ShearY"):
        s = sign * 0.3 * frac
        return _affine(x, (1, s, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, s, 1, 0))
    if name in ("TranslateX", "TranslateY"):
        pct = sign * 0.45 * frac
        return _affine(x, (1, 0, pct * w, 0, 1, 0) if name == "TranslateX" else (1, 0, 0, 0, 1, pct * h))
    raise ValueError(f"unknown RandAugment op {name!r}; ops: {RAND_OPS}")


def apply_op(clip: torch.Tensor, name: str, magnitude: float, sign: float = 1.0,
             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """One named RandAugment op at a fixed `magnitude` (0..10) and `sign`, on every frame of a normalized
    clip `[C, T, H, W]` (for figures and tests; `rand_augment` draws ops and magnitudes)."""
    frames = _pixel_op(_to_frames01(clip, mean, std), name, float(magnitude), float(sign))
    return _from_frames01(frames, mean, std, clip.dtype)


def rand_augment(clip: torch.Tensor, num_ops: int, magnitude: float, mstd: float, generator: torch.Generator,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 ops: Sequence[str] = RAND_OPS) -> torch.Tensor:
    """RandAugment (reference `rand-m{magnitude}-n{num_ops}-mstd{mstd}-inc1`) with the same ops, magnitudes and
    signs on every frame. clip: [C, T, H, W] normalized -> same shape and dtype.

    Draws `num_ops` ops uniformly with replacement; each is applied with probability 0.5 at magnitude
    N(magnitude, mstd) clipped to [0, 10], with a random sign for signed ops. A clip no op touches is returned
    unchanged (no un-normalize / clamp round trip)."""
    if clip.dim() != 4 or clip.shape[0] != 3:
        raise ValueError(f"rand_augment expects an RGB clip [3, T, H, W], got {tuple(clip.shape)}")
    frames = None
    for _ in range(num_ops):
        name = ops[_randint(generator, 0, len(ops) - 1)]
        if _rand(generator) >= 0.5:  # each op fires with probability 0.5
            continue
        level = magnitude
        if mstd > 0:
            level = magnitude + mstd * float(torch.randn((), generator=generator))
        level = min(MAX_MAGNITUDE, max(0.0, level))
        sign = -1.0 if (name in _SIGNED and _rand(generator) < 0.5) else 1.0
        if frames is None:
            frames = _to_frames01(clip, mean, std)
        frames = _pixel_op(frames, name, level, sign)
    return clip if frames is None else _from_frames01(frames, mean, std, clip.dtype)


# --------------------------------------------------------------------------------------------- crop, flip, erase

def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def crop_params(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                generator: torch.Generator) -> tuple[int, int, int, int]:
    """Inception-style crop box (top, left, h, w) drawn from a torch Generator (transforms.crop_box)."""
    return T.crop_box(height, width, scale, ratio, lambda lo, hi: _uniform(generator, lo, hi),
                      lambda lo, hi: _randint(generator, lo, hi))


def resize(clip: torch.Tensor, out_size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear resize of every frame (align_corners False, no antialias, as the reference). [C, T, H, W]."""
    size = _size2(out_size)
    if tuple(clip.shape[-2:]) == size:
        return clip
    return F.interpolate(clip.float(), size=size, mode="bilinear", align_corners=False).to(clip.dtype)


def random_resized_crop(clip: torch.Tensor, out_size: int | Sequence[int], scale: Sequence[float],
                        ratio: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """One random box for the whole clip, resized to `out_size`. [C, T, H, W] -> [C, T, out_h, out_w]."""
    top, left, h, w = crop_params(clip.shape[-2], clip.shape[-1], scale, ratio, generator)
    return resize(clip[..., top:top + h, left:left + w], out_size)


def hflip(clip: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror every frame left-right with probability `prob` (one draw per clip). [C, T, H, W]."""
    if prob > 0 and _rand(generator) < prob:
        return clip.flip(-1)
    return clip


def cube_erase(clip: torch.Tensor, prob: float, generator: torch.Generator, mode: str = "pixel",
               min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3) -> torch.Tensor:
    """Cube random erasing (the reference's `RandomErasing(cube=True)`, count 1): with probability `prob`, one box
    of area U(min_area, max_area) * H W and log-uniform aspect in (min_aspect, 1/min_aspect), at the same place
    on every frame, is filled in normalized space: "pixel" fresh N(0, 1) per pixel and frame (the reference's
    `remode pixel`), "rand" one N(0, 1) colour per channel and frame, "const" zeros (the mean colour).
    Up to 100 tries for a box strictly inside the frame; none found = nothing erased. [C, T, H, W]."""
    if mode not in ERASE_MODES:
        raise ValueError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")
    if prob <= 0 or _rand(generator) >= prob:
        return clip
    c, t, height, width = clip.shape
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(100):
        target_area = _uniform(generator, min_area, max_area) * height * width
        aspect = math.exp(_uniform(generator, *log_aspect))
        h = int(round(math.sqrt(target_area * aspect)))
        w = int(round(math.sqrt(target_area / aspect)))
        if w < width and h < height:
            top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
            shape = (c, t, h, w) if mode == "pixel" else (c, t, 1, 1)
            if mode == "const":
                fill = torch.zeros(shape)
            else:
                fill = torch.randn(shape, generator=generator)
            out = clip.clone()
            out[..., top:top + h, left:left + w] = fill.to(clip.dtype).to(clip.device)
            return out
    return clip


def augment_clip(clip: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                 out_size: int | Sequence[int] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """The whole per-clip pipeline, in the reference's order: RandAugment -> random resized crop (or a plain
    resize when `cfg.crop_scale` is None) -> flip -> cube erasing. [C, T, H, W] -> [C, T, out_h, out_w]
    (`out_size` None keeps H, W)."""
    out_size = tuple(clip.shape[-2:]) if out_size is None else _size2(out_size)
    if cfg.rand_augment_ops > 0:
        clip = rand_augment(clip, cfg.rand_augment_ops, cfg.rand_augment_magnitude, cfg.rand_augment_mstd,
                            generator, mean, std)
    if cfg.crop_scale is not None:
        clip = random_resized_crop(clip, out_size, cfg.crop_scale, cfg.crop_ratio, generator)
    else:
        clip = resize(clip, out_size)
    clip = hflip(clip, cfg.flip_prob, generator)
    return cube_erase(clip, cfg.erase_prob, generator, cfg.erase_mode)


# --------------------------------------------------------------------------------------------- dataset wrapper

def _repeat_field(value: Any, r: int) -> Any:
    """A non-video field repeated for r copies: tensors and numbers -> tensor [r, ...], others -> list of r."""
    if isinstance(value, torch.Tensor):
        return value.unsqueeze(0).expand(r, *value.shape).clone()
    if isinstance(value, (bool, int, float, np.number)):
        return torch.tensor([value] * r)
    return [value] * r


def _take(value: Any, k: int) -> Any:
    return value[k]


def flatten_repeats(batch: Sequence[Any]) -> Any:
    """Collate items that each hold r augmented copies (video `[r, C, T, H, W]`, other fields `[r]`) into one
    flat batch of B * r samples, copies of a clip adjacent (the reference's `multiple_samples_collate`)."""
    samples = []
    for item in batch:
        if isinstance(item, torch.Tensor):
            samples.extend(item.unbind(0))
        elif isinstance(item, Mapping):
            r = len(next(iter(item.values())))
            samples.extend({key: _take(v, k) for key, v in item.items()} for k in range(r))
        else:
            for k in range(len(item[0])):
                fields = [_take(v, k) for v in item]
                samples.append(tuple(fields) if isinstance(item, tuple) else fields)
    return default_collate(samples)


class AugmentedClips(Dataset):
    """Training-time augmentation around a clip dataset, deterministic per (seed, epoch, index).

    The wrapped dataset's item may be a clip tensor `[C, T, H, W]`, a tuple / list whose first element is the
    clip (e.g. `(video, label)`), or a mapping holding it under `video_key`; the other fields pass through.
    With `cfg.repeated_aug` r = 1 the item keeps its structure with the clip augmented; with r > 1 the clip
    becomes `[r, C, T, H, W]` (r independent augmentations) and every other field is repeated, numbers and
    tensors as a tensor `[r, ...]` (labels: `[r]`). Pass `self.collate` to the DataLoader: it flattens the r
    copies into the batch (B items -> B * r samples).

    Call `set_epoch(e)` before building each epoch's DataLoader (workers receive a copy of the dataset
    then; with persistent workers a later set_epoch would not reach them).
    """

    def __init__(self, dataset: Dataset, cfg: AugmentConfig = REFERENCE, seed: int = 0,
                 out_size: int | Sequence[int] | None = None, video_key: str = "video",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.dataset, self.cfg, self.seed, self.out_size = dataset, cfg, int(seed), out_size
        self.video_key, self.mean, self.std = video_key, tuple(mean), tuple(std)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def augment(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """r augmented copies of one clip: `[C, T, H, W]` -> `[C, T, h, w]` (r = 1) or `[r, C, T, h, w]`."""
        copies = [augment_clip(clip, self.cfg, generator, self.out_size, self.mean, self.std)
                  for _ in range(self.cfg.repeated_aug)]
        return copies[0] if self.cfg.repeated_aug == 1 else torch.stack(copies)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        g = clip_generator(self.seed, self.epoch, index)
        r = self.cfg.repeated_aug
        if isinstance(item, torch.Tensor):
            return self.augment(item, g)
        if isinstance(item, Mapping):
            out = {k: (v if r == 1 else _repeat_field(v, r)) for k, v in item.items()}
            out[self.video_key] = self.augment(item[self.video_key], g)
            return out
        if isinstance(item, (tuple, list)):
            rest = [v if r == 1 else _repeat_field(v, r) for v in item[1:]]
            fields = [self.augment(item[0], g), *rest]
            return tuple(fields) if isinstance(item, tuple) else fields
        raise TypeError(f"dataset items must be a clip tensor, a tuple/list or a mapping, got {type(item)}")

    def collate(self, batch: Sequence[Any]) -> Any:
        """DataLoader collate_fn: `flatten_repeats` when r > 1, else torch's default collate."""
        return flatten_repeats(batch) if self.cfg.repeated_aug > 1 else default_collate(batch)


# --------------------------------------------------------------------------------------------- mixup, cutmix, targets

def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing: 1 - s + s/K on the true class, s/K elsewhere. [B] -> [B, K] float32."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(logits)_k (timm's SoftTargetCrossEntropy), in float32."""
    return torch.sum(-soft_targets.float() * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


@dataclass(frozen=True)
class MixParams:
    """One batch's mixing draw: weight `lam` of the batch itself (1 = no mixing); `box` (y0, y1, x0, x1) = cutmix
    region taken from the flipped batch (lam then equals 1 - box area / frame area), None = mixup."""

    lam: float
    box: tuple[int, int, int, int] | None = None


class MixupCutmix:
    """Batch-mode mixup / cutmix (the reference's `Mixup(mode="batch")`): one draw per batch; sample i is mixed
    with sample B-1-i (the batch flipped); a cutmix box is the same on every frame; label smoothing is folded
    into the soft targets. Train with `soft_target_cross_entropy`."""

    def __init__(self, cfg: AugmentConfig, num_classes: int):
        self.cfg, self.num_classes = cfg, int(num_classes)

    def sample(self, frame_size: tuple[int, int], generator: torch.Generator) -> MixParams:
        """Draw lam (and a cutmix box) for frames of `frame_size` (H, W), in the reference's order."""
        cfg = self.cfg
        if not cfg.mixing or _rand(generator) >= cfg.mix_prob:
            return MixParams(1.0)
        if cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0:
            use_cutmix = _rand(generator) < cfg.switch_prob
        else:
            use_cutmix = cfg.cutmix_alpha > 0
        lam = _beta(generator, cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha)
        if not use_cutmix:
            return MixParams(lam)
        h, w = frame_size
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * cut), int(w * cut)
        cy, cx = _randint(generator, 0, h - 1), _randint(generator, 0, w - 1)
        y0, y1 = min(max(cy - cut_h // 2, 0), h), min(max(cy + cut_h // 2, 0), h)
        x0, x1 = min(max(cx - cut_w // 2, 0), w), min(max(cx + cut_w // 2, 0), w)
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)  # corrected for clipping at the border
        return MixParams(lam, (y0, y1, x0, x1))

    def apply(self, videos: torch.Tensor, labels: torch.Tensor, params: MixParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix `videos` [B, C, T, H, W] with their flip along the batch; soft targets [B, K] (float32).
        The input is not modified."""
        targets = smoothed_targets(labels, self.num_classes, self.cfg.label_smoothing)
        lam = params.lam
        if lam >= 1.0:
            return videos, targets
        flipped = videos.flip(0)
        if params.box is not None:
            y0, y1, x0, x1 = params.box
            videos = videos.clone()
            videos[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        else:
            videos = videos * lam + flipped * (1.0 - lam)
        return videos, targets * lam + targets.flip(0) * (1.0 - lam)

    def __call__(self, videos: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """videos [B, C, T, H, W], labels [B] -> (mixed videos, soft targets [B, num_classes])."""
        if videos.dim() != 5 or labels.shape != videos.shape[:1]:
            raise ValueError(f"expected videos [B, C, T, H, W] and labels [B], got {tuple(videos.shape)}, "
                             f"{tuple(labels.shape)}")
        return self.apply(videos, labels, self.sample(tuple(videos.shape[-2:]), generator))


__all__ = [
    "AugmentConfig", "REFERENCE", "REFERENCE_SSV2", "LIGHT", "LIGHT_MOTION", "NONE", "AUGMENT_RECIPES", "augment_config",
    "RAND_OPS", "ERASE_MODES", "derive_seed", "clip_generator", "batch_generator", "apply_op", "rand_augment",
    "crop_params", "resize", "random_resized_crop", "hflip", "cube_erase", "augment_clip", "AugmentedClips",
    "flatten_repeats", "smoothed_targets", "soft_target_cross_entropy", "MixParams", "MixupCutmix",
]
