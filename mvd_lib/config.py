"""Every configuration dataclass of mvd_lib, in one place that imports no torch.

What a run does is a frozen, typed dataclass; everything here checks its own ranges when built, so the command
line, notebooks and tests get the same one-line `ConfigError` naming the setting, before any compute. Named
instances (architectures, augmentation recipes) live beside their dataclass; profiles and run presets are in
profiles.py.

- architectures (mvd_reference.md sections 1 and 3): `ViTConfig`, `DecoderConfig`, `ARCHITECTURES`
  (ViT-S/B/L/H at 16x224x224 with 2x16x16 tubelets; our laptop sizes `vit_tiny/micro/nano` at 16x32x32),
  and the reference's decoder sizes and teacher pairing;
- the laptop benchmark (synthetic.py renders it): `SyntheticConfig` and its motion and appearance classes;
- finetuning augmentation (augment.py applies it): `AugmentConfig` and `AUGMENT_RECIPES`;
- optimisation (engine.py): `OptimConfig`; the MVD objective's weights (distill.py): `MVDLossConfig`;
- runs: `ModelSpec`, `DataSpec` and one config per run type (`PretrainImageConfig`, ..., `ExtractConfig`);
- overrides: `apply_overrides(cfg, ["optim.lr=1e-3"])` parses text by each field's type and rejects unknown or
  ill-typed keys; `config_dict` and `config_hash` make a run's identity.

Three words, one meaning each: an *architecture* (`vit_micro`) is a model size; a *run preset* (`laptop_img`)
is a named run config (profiles.py); an augmentation *recipe* (`light`) is a named AugmentConfig.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, Union, get_args, get_origin, get_type_hints

from mvd_lib.errors import ConfigError

Dtype = Literal["auto", "fp32", "bf16", "fp16"]
# field metadata key: a field added after runs were recorded; at its default it stays out of config_hash, so the
# runs recorded before it existed are found again (their configs equal the default)
HASH_SILENT_AT_DEFAULT = "hash_silent_at_default"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ================================================================================================ architectures
@dataclass(frozen=True)
class ViTConfig:
    """A plain ViT over tubelets (video) or patches (image, `tubelet_size` unused)."""

    width: int = 768  # embedding dimension D
    depth: int = 12  # number of transformer blocks
    heads: int = 12  # attention heads (head_dim = width / heads)
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * width
    num_frames: int = 16  # frames T per clip
    img_size: int = 224  # frame height = width in pixels
    patch_size: int = 16  # spatial patch size p
    tubelet_size: int = 2  # frames per tubelet (temporal patch size)
    in_chans: int = 3  # input channels
    drop_path: float = 0.0  # stochastic depth, rising linearly from 0 to this over the blocks
    qkv_bias: bool = True  # learnable q and v biases (k has none), as in VideoMAE/MVD
    norm_eps: float = 1e-6  # LayerNorm epsilon

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "num_frames", "img_size", "patch_size", "tubelet_size", "in_chans"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(self.width % self.heads == 0, f"width {self.width} is not divisible by heads {self.heads}")
        _require(self.img_size % self.patch_size == 0,
                 f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        _require(self.num_frames % self.tubelet_size == 0,
                 f"num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}")
        _require(0.0 <= self.drop_path < 1.0, f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T', H', W') = (T / tubelet, H / p, W / p)."""
        g = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet_size, g, g)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def num_patches_2d(self) -> int:
        """Patches per frame (image models): H' * W'."""
        _, h, w = self.grid
        return h * w

    @property
    def tubelet_dim(self) -> int:
        """Pixels per tubelet: tubelet * p * p * C (the VideoMAE pixel-target width)."""
        return self.tubelet_size * self.patch_size**2 * self.in_chans


@dataclass(frozen=True)
class DecoderConfig:
    """A light transformer decoder (MVD feature decoder, VideoMAE / MAE pixel decoder)."""

    width: int = 768  # decoder embedding dimension
    depth: int = 2  # decoder blocks
    heads: int = 12  # decoder attention heads
    mlp_ratio: float = 4.0
    drop_path: float = 0.0  # the reference passes the encoder's drop_path to the MVD decoders too

    def __post_init__(self) -> None:
        _require(min(self.width, self.depth, self.heads) >= 1, "decoder width, depth and heads must be >= 1")
        _require(self.width % self.heads == 0, f"decoder width {self.width} is not divisible by heads {self.heads}")


_PAPER_CLIP = dict(num_frames=16, img_size=224, patch_size=16, tubelet_size=2)
_LAPTOP_CLIP = dict(num_frames=16, img_size=32, patch_size=4, tubelet_size=2)

ARCHITECTURES: dict[str, ViTConfig] = {
    # paper sizes (mvd_reference.md section 1)
    "vit_small": ViTConfig(width=384, depth=12, heads=6, **_PAPER_CLIP),
    "vit_base": ViTConfig(width=768, depth=12, heads=12, **_PAPER_CLIP),
    "vit_large": ViTConfig(width=1024, depth=24, heads=16, **_PAPER_CLIP),
    "vit_huge": ViTConfig(width=1280, depth=32, heads=16, **_PAPER_CLIP),
    # laptop sizes (ours), any geometry through overrides
    "vit_tiny": ViTConfig(width=192, depth=12, heads=3, **_LAPTOP_CLIP),
    "vit_micro": ViTConfig(width=128, depth=6, heads=4, **_LAPTOP_CLIP),
    "vit_nano": ViTConfig(width=64, depth=2, heads=2, **_LAPTOP_CLIP),
}
PAPER_ARCHITECTURES = ("vit_small", "vit_base", "vit_large", "vit_huge")

# MVD student feature decoders (mvd_reference.md section 3): depth 2 at encoder width/heads for S and B
# (and for our laptop sizes); L and H use wider, deeper fixed-size decoders.
_MVD_DECODER_OVERRIDES: dict[str, DecoderConfig] = {
    "vit_large": DecoderConfig(width=512, depth=4, heads=8),
    "vit_huge": DecoderConfig(width=640, depth=8, heads=8),
}

# VideoMAE pixel decoders (VideoMAE's pretrain models: depth 4, half width).
_VIDEOMAE_DECODERS: dict[str, DecoderConfig] = {
    "vit_small": DecoderConfig(width=192, depth=4, heads=3),
    "vit_base": DecoderConfig(width=384, depth=4, heads=6),
    "vit_large": DecoderConfig(width=512, depth=4, heads=8),
    "vit_huge": DecoderConfig(width=640, depth=4, heads=8),
}

# MAE pixel decoders (MAE's `dec512d8b` for every paper size).
_MAE_PAPER_DECODER = DecoderConfig(width=512, depth=8, heads=16)


def _replace(obj: Any, kind: str, overrides: dict) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown {kind} field(s) {unknown}; valid fields: {sorted(names)}")
    return dataclasses.replace(obj, **overrides)


def vit_config(arch: str | ViTConfig, **overrides) -> ViTConfig:
    """The named architecture (or a given config) with `overrides`, e.g. `vit_config("vit_tiny", num_frames=8)`."""
    if isinstance(arch, ViTConfig):
        return _replace(arch, "ViTConfig", overrides)
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return _replace(ARCHITECTURES[arch], "ViTConfig", overrides)


def arch_name(cfg: ViTConfig) -> str | None:
    """Name of the architecture whose (width, depth, heads) `cfg` has, if any."""
    for name, p in ARCHITECTURES.items():
        if (p.width, p.depth, p.heads) == (cfg.width, cfg.depth, cfg.heads):
            return name
    return None


def mvd_decoder_config(student: ViTConfig, **overrides) -> DecoderConfig:
    """The reference feature-decoder size for a student (section 3): the same for both branches."""
    base = _MVD_DECODER_OVERRIDES.get(arch_name(student) or "")
    if base is None:
        base = DecoderConfig(width=student.width, depth=2, heads=student.heads)
    base = dataclasses.replace(base, drop_path=student.drop_path)
    return _replace(base, "DecoderConfig", overrides)


def videomae_decoder_config(encoder: ViTConfig, **overrides) -> DecoderConfig:
    """VideoMAE's pixel-decoder size for an encoder: depth 4 at half width (paper sizes as released)."""
    base = _VIDEOMAE_DECODERS.get(arch_name(encoder) or "")
    if base is None:
        heads = max(1, encoder.heads // 2) if (encoder.width // 2) % max(1, encoder.heads // 2) == 0 else 1
        base = DecoderConfig(width=encoder.width // 2, depth=4, heads=heads)
    return _replace(base, "DecoderConfig", overrides)


def mae_decoder_config(encoder: ViTConfig, **overrides) -> DecoderConfig:
    """MAE's pixel-decoder size: 512 wide, 8 deep for paper sizes; depth 2 at encoder width for laptop sizes."""
    if arch_name(encoder) in ("vit_base", "vit_large", "vit_huge"):
        base = _MAE_PAPER_DECODER
    else:
        base = DecoderConfig(width=encoder.width, depth=2, heads=encoder.heads)
    return _replace(base, "DecoderConfig", overrides)


# Teacher sizes the released runs pair with each student (Table 2 rows "T-B"); laptop students teach-alike.
DEFAULT_TEACHER: dict[str, str] = {
    "vit_small": "vit_base", "vit_base": "vit_base", "vit_large": "vit_large", "vit_huge": "vit_huge",
    "vit_tiny": "vit_tiny", "vit_micro": "vit_micro", "vit_nano": "vit_nano",
}


def image_teacher_config(arch: str, student: ViTConfig, **overrides) -> ViTConfig:
    """The MAE image teacher for `student`: architecture `arch` at a patch size and resolution giving the
    student's spatial grid, so its tokens align with the student's. Paper: B/16 and L/16 at 224 px, H/14 at
    196 px (a 14x14 grid; the reference's `teacher_input_size 196`)."""
    patch = 14 if arch == "vit_huge" and student.patch_size == 16 else student.patch_size
    grid = student.img_size // student.patch_size
    geometry = dict(img_size=grid * patch, patch_size=patch, num_frames=student.num_frames,
                    tubelet_size=student.tubelet_size, drop_path=0.0)
    return vit_config(arch, **{**geometry, **overrides})


def video_teacher_config(arch: str, student: ViTConfig, **overrides) -> ViTConfig:
    """The VideoMAE video teacher for `student`: architecture `arch` at the student's clip geometry."""
    geometry = dict(img_size=student.img_size, patch_size=student.patch_size, num_frames=student.num_frames,
                    tubelet_size=student.tubelet_size, drop_path=0.0)
    return vit_config(arch, **{**geometry, **overrides})


# ================================================================================================ mask counts
def num_masked(num_tokens: int, ratio: float) -> int:
    """Number of masked tokens among `num_tokens` at `ratio`: int(ratio * n), the reference's rounding."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"mask ratio must be in [0, 1), got {ratio}")
    return int(ratio * num_tokens)


def masked_count(grid: tuple[int, int, int], ratio: float, kind: str = "tube") -> int:
    """Masked tokens per clip on a (T', H', W') grid: T' * int(ratio * H'W') for tube masks, int(ratio * N) for
    random ones (8x14x14 at 0.9, tube: 1408, leaving 160 visible)."""
    t, h, w = grid
    if kind == "tube":
        return t * num_masked(h * w, ratio)
    if kind == "random":
        return num_masked(t * h * w, ratio)
    raise ConfigError(f"mask kind must be 'tube' or 'random', got {kind!r}")


# ================================================================================================ the benchmark
@dataclass(frozen=True)
class Motion:
    """One motion class of the benchmark (t' = t - t_mid, frames counted from the clip midpoint):
    - translation moves the object by `direction * speed * profile(t')` pixels;
    - an orbit moves it around a circle, angle `orbit * 2 pi t' / T`, at `speed` pixels per frame;
    - a `factor` motion drives rotation, log-scale or opacity by `sign * total * t' / (T - 1)`."""

    name: str
    twin: str  # the class this one becomes when played backwards
    direction: tuple[float, float] = (0.0, 0.0)  # (dx, dy) per unit of speed, image axes (y points down)
    profile: Literal["linear", "move_stop", "stop_move"] = "linear"  # translation timing
    orbit: int = 0  # +1 clockwise / -1 counter-clockwise circular path (as seen on screen), 0: none
    factor: Literal["", "rotation", "scale", "opacity"] = ""  # the bounded factor this class drives
    sign: int = 0  # +1 / -1 for factor motions


_D = 1 / math.sqrt(2)
MOTIONS: dict[str, Motion] = {m.name: m for m in [
    Motion("right", "left", direction=(1.0, 0.0)),
    Motion("left", "right", direction=(-1.0, 0.0)),
    Motion("down", "up", direction=(0.0, 1.0)),
    Motion("up", "down", direction=(0.0, -1.0)),
    Motion("orbit_cw", "orbit_ccw", orbit=1),  # a full circle per T frames, clockwise on screen
    Motion("orbit_ccw", "orbit_cw", orbit=-1),
    Motion("grow", "shrink", factor="scale", sign=1),
    Motion("shrink", "grow", factor="scale", sign=-1),
    Motion("fade_in", "fade_out", factor="opacity", sign=1),
    Motion("fade_out", "fade_in", factor="opacity", sign=-1),
    # optional classes (not in the default set)
    Motion("rotate_cw", "rotate_ccw", factor="rotation", sign=1),  # spin in place, clockwise on screen
    Motion("rotate_ccw", "rotate_cw", factor="rotation", sign=-1),
    Motion("down_right", "up_left", direction=(_D, _D)),
    Motion("up_left", "down_right", direction=(-_D, -_D)),
    Motion("down_left", "up_right", direction=(-_D, _D)),
    Motion("up_right", "down_left", direction=(_D, -_D)),
    Motion("right_then_stop", "start_then_left", direction=(1.0, 0.0), profile="move_stop"),
    Motion("start_then_left", "right_then_stop", direction=(-1.0, 0.0), profile="stop_move"),
    Motion("left_then_stop", "start_then_right", direction=(-1.0, 0.0), profile="move_stop"),
    Motion("start_then_right", "left_then_stop", direction=(1.0, 0.0), profile="stop_move"),
]}
DEFAULT_MOTIONS: tuple[str, ...] = ("right", "left", "down", "up", "orbit_cw", "orbit_ccw",
                                    "grow", "shrink", "fade_in", "fade_out")

APPEARANCES: tuple[str, ...] = tuple(f"digit_{d}" for d in range(10)) + (
    "L", "F", "arrow", "triangle", "flag", "crescent")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "gradient")
# motions of a path only: every frame, and every time-ordered sequence of per-frame statistics, has the same
# law for all of them; only how consecutive frames relate tells them apart
PATH_MOTIONS: tuple[str, ...] = ("right", "left", "down", "up", "orbit_cw", "orbit_ccw")
# scene classes of the "scene" layout: periodic two-colour patterns filling the frame
SCENES: tuple[str, ...] = ("stripes", "checker", "dots", "grid", "zigzag", "waves", "rings", "blobs", "bricks",
                           "plain")
LAYOUTS: tuple[str, ...] = ("object", "scene")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines the benchmark (synthetic.py). Defaults: 16x32x32 clips, 16 appearance classes,
    10 motion classes, motions large enough for masked reconstruction."""

    frames: int = 16  # T, frames per clip
    height: int = 32  # H, frame height in pixels
    width: int = 32  # W, frame width in pixels
    layout: Literal["object", "scene"] = "object"  # what carries appearance: the moving object's glyph, or
    # a static background scene class (SCENES) with a small unlabeled mover carrying the motion
    num_appearance: int = 16  # appearance classes: the first n of APPEARANCES (object: 10 digits, then 6
    # shapes) or of SCENES (scene)
    motions: tuple[str, ...] = DEFAULT_MOTIONS  # motion classes (names from MOTIONS), label = position here
    speed: float | None = None  # translation speed in px/frame; None: short side / 16 (2 px/frame at 32 px)
    rotation: float = 120.0  # degrees turned over the clip by the optional rotate_cw/ccw (+-60 at the ends)
    growth: float = 2.0  # size ratio last/first frame for grow (shrink: its inverse)
    fade: float = 0.5  # opacity change over the clip for fade_in/out (0.5 -> 1.0 around a 0.75 midpoint)
    object_size: float | None = None  # glyph box side in px at mid-clip; None: short side / 2 (object layout)
    # or / 4 (scene layout's mover)
    drift: float = 0.0  # scene layout: the scene pans at this many px/frame in a random direction
    moving: Literal["object", "scene"] = "object"  # what the motion label moves: the object(s), or (scene
    # layout, path motions only) the whole scene, like a camera that pans or circles; objects then stay put
    scene_frequency: tuple[float, float] = (2.0, 4.0)  # scene layout: pattern cycles per frame side (range)
    num_objects: int = 1  # objects per clip; they share the clip's appearance and motion labels
    bg_amplitude: float = 0.12  # peak deviation of the smooth background from its base colour (0..1 scale)
    noise: float = 0.01  # std of i.i.d. per-pixel Gaussian noise (0..1 scale)
    jitter: float = 0.2  # relative per-clip jitter of translation speed and object size
    heldout_glyphs: bool = True  # val/test draw glyph bitmaps from a pool the other splits never see
    image_variety: float = 1.5  # stills widen the clips' rotation, scale, opacity and background ranges by this
    seed: int = 0  # benchmark seed; a clip is a function of (seed, split, index) only

    def __post_init__(self) -> None:
        object.__setattr__(self, "motions", tuple(self.motions))  # accept lists (e.g. from JSON)
        _require(self.frames >= 1 and self.height >= 8 and self.width >= 8,
                 f"need frames >= 1 and height, width >= 8; got {self.frames}x{self.height}x{self.width}")
        _require(self.layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        classes = APPEARANCES if self.layout == "object" else SCENES
        _require(2 <= self.num_appearance <= len(classes),
                 f"num_appearance must be in [2, {len(classes)}] for the {self.layout} layout, got {self.num_appearance}")
        object.__setattr__(self, "scene_frequency", tuple(float(f) for f in self.scene_frequency))
        lo, hi = self.scene_frequency
        _require(1.0 <= lo <= hi, f"scene_frequency must be a range (lo, hi) with 1 <= lo <= hi, "
                                  f"got {self.scene_frequency}")
        unknown = [m for m in self.motions if m not in MOTIONS]
        _require(not unknown, f"unknown motion(s) {unknown}; choose from {sorted(MOTIONS)}")
        _require(len(set(self.motions)) == len(self.motions) >= 2,
                 f"motions must be at least 2 distinct names, got {self.motions}")
        missing = sorted({MOTIONS[m].twin for m in self.motions} - set(self.motions))
        _require(not missing, f"every motion needs its time-reversed twin in the set; missing {missing}")
        for name in ("rotation", "fade", "bg_amplitude", "noise", "jitter", "drift"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(self.growth >= 1.0, f"growth is a size ratio >= 1 (shrink uses its inverse), got {self.growth}")
        _require(self.speed is None or self.speed >= 0, f"speed must be >= 0, got {self.speed}")
        _require(self.object_size is None or self.object_size > 0, f"object_size must be > 0, got {self.object_size}")
        _require(self.num_objects >= (1 if self.layout == "object" else 0) and self.jitter < 1
                 and self.image_variety >= 1,
                 "need num_objects >= 1 (>= 0 in the scene layout), jitter < 1 and image_variety >= 1")
        _require(self.moving in ("object", "scene"), f"moving must be 'object' or 'scene', got {self.moving!r}")
        factors = [m for m in self.motions if MOTIONS[m].factor]
        _require(self.moving == "object" or (self.layout == "scene" and not factors),
                 f"moving='scene' needs layout='scene' and path motions only (no rotation, scale or opacity "
                 f"classes; got {factors or self.layout})")
        _require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    @property
    def speed_px(self) -> float:
        """Translation speed in pixels per frame."""
        return self.speed if self.speed is not None else min(self.height, self.width) / 16

    @property
    def object_px(self) -> float:
        """Glyph box side in pixels at mid-clip scale."""
        if self.object_size is not None:
            return self.object_size
        return min(self.height, self.width) / (2 if self.layout == "object" else 4)

    @property
    def num_motions(self) -> int:
        return len(self.motions)

    @property
    def appearance_names(self) -> tuple[str, ...]:
        return (APPEARANCES if self.layout == "object" else SCENES)[: self.num_appearance]


def synthetic_config(**overrides) -> SyntheticConfig:
    """`SyntheticConfig` with `overrides`; unknown field names raise."""
    return _replace(SyntheticConfig(), "SyntheticConfig", overrides)


# ================================================================================================ augmentation
ERASE_MODES = ("pixel", "rand", "const")
MAX_MAGNITUDE = 10.0  # top of RandAugment's magnitude scale


@dataclass(frozen=True)
class AugmentConfig:
    """The finetuning augmentation recipe (augment.py). Defaults = the reference (`REFERENCE`)."""

    rand_augment_ops: int = 4  # RandAugment ops drawn per clip (n); 0 turns RandAugment off
    rand_augment_magnitude: float = 7.0  # RandAugment magnitude m on the 0..10 scale
    rand_augment_mstd: float = 0.5  # std of the Gaussian noise on m, drawn per applied op
    crop_scale: tuple[float, float] | None = (0.08, 1.0)  # random resized crop area range; None = no crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio (w/h) range, sampled log-uniformly
    flip_prob: float = 0.5  # horizontal flip probability; 0 for motion (SSv2-like) tasks: a flip reverses motion
    erase_prob: float = 0.25  # probability of cube random erasing (one box, the same on every frame)
    erase_mode: str = "pixel"  # erased values: "pixel" per-pixel N(0,1), "rand" per-channel N(0,1), "const" 0
    mixup_alpha: float = 0.8  # mixup Beta(alpha, alpha); 0 = no mixup
    cutmix_alpha: float = 1.0  # cutmix Beta(alpha, alpha); 0 = no cutmix
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # probability of cutmix rather than mixup when both are on
    label_smoothing: float = 0.1  # label smoothing s: true class 1 - s + s/K, others s/K
    repeated_aug: int = 2  # augmented copies of each clip per epoch (the reference's num_sample)

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio"):  # accept lists (JSON / CLI overrides)
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        for name in ("rand_augment_ops", "repeated_aug"):
            v = getattr(self, name)
            _require(isinstance(v, int) and not isinstance(v, bool), f"{name} must be an int, got {v!r}")
        _require(self.rand_augment_ops >= 0 and self.repeated_aug >= 1,
                 f"need rand_augment_ops >= 0 and repeated_aug >= 1, got {self.rand_augment_ops}, {self.repeated_aug}")
        _require(0 <= self.rand_augment_magnitude <= MAX_MAGNITUDE and self.rand_augment_mstd >= 0,
                 "rand_augment_magnitude must be in [0, 10] and rand_augment_mstd >= 0")
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            _require(0 < lo <= hi <= 1, f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        _require(0 < lo <= hi, f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        for name in ("flip_prob", "erase_prob", "mix_prob", "switch_prob"):
            _require(0 <= getattr(self, name) <= 1, f"{name} must be a probability, got {getattr(self, name)}")
        _require(self.erase_mode in ERASE_MODES, f"erase_mode must be one of {ERASE_MODES}, got {self.erase_mode!r}")
        _require(self.mixup_alpha >= 0 and self.cutmix_alpha >= 0 and 0 <= self.label_smoothing < 1,
                 "need mixup_alpha, cutmix_alpha >= 0 and label_smoothing in [0, 1)")

    @property
    def mixing(self) -> bool:
        """True when batches are mixed (then train with soft targets, as the reference does)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0


REFERENCE = AugmentConfig()  # the paper's recipe (K400, UCF101, HMDB51)
REFERENCE_SSV2 = dataclasses.replace(REFERENCE, flip_prob=0.0)  # the paper's recipe for SSv2: no flip
# A milder recipe for 16x32x32 laptop clips and short runs: at 32 px a 0.08-area crop is a 9x9 patch, and
# four strong ops plus erasing and full mixup drown a small model's signal.
LIGHT = AugmentConfig(rand_augment_ops=2, rand_augment_magnitude=5.0, rand_augment_mstd=0.5, crop_scale=(0.5, 1.0),
                      flip_prob=0.5, erase_prob=0.0, mixup_alpha=0.2, cutmix_alpha=0.0, mix_prob=0.5,
                      label_smoothing=0.1, repeated_aug=1)
LIGHT_MOTION = dataclasses.replace(LIGHT, flip_prob=0.0)  # LIGHT for the motion (temporal) task: no flip
NONE = AugmentConfig(rand_augment_ops=0, crop_scale=None, flip_prob=0.0, erase_prob=0.0, mixup_alpha=0.0,
                     cutmix_alpha=0.0, label_smoothing=0.0, repeated_aug=1)  # identity (resize only)

AUGMENT_RECIPES: dict[str, AugmentConfig] = {
    "reference": REFERENCE, "reference_ssv2": REFERENCE_SSV2, "light": LIGHT, "light_motion": LIGHT_MOTION,
    "none": NONE,
}


def augment_config(recipe: str | AugmentConfig, **overrides: Any) -> AugmentConfig:
    """The named recipe (or a given config) with `overrides`, e.g. `augment_config("light", flip_prob=0.0)`."""
    if isinstance(recipe, str):
        if recipe not in AUGMENT_RECIPES:
            raise ConfigError(f"unknown augmentation recipe {recipe!r}; choose one of {sorted(AUGMENT_RECIPES)}")
        recipe = AUGMENT_RECIPES[recipe]
    return _replace(recipe, "AugmentConfig", overrides)


# ================================================================================================ optimisation
@dataclass(frozen=True)
class OptimConfig:
    """Optimisation recipe (reference defaults: MVD pretraining; engine.py runs it)."""

    epochs: int = 400  # training epochs
    warmup_epochs: int = 40  # linear warmup from 0, in epochs
    batch_size: int = 1024  # TOTAL batch per optimizer step over all processes and accumulation steps
    accum_steps: int = 1  # gradient accumulation steps per optimizer step (the reference's update_freq)
    lr: float = 1.5e-4  # base learning rate (multiplied by batch_size / 256 when scale_lr)
    min_lr: float = 1e-5  # final learning rate of the cosine (scaled the same way)
    scale_lr: bool = True  # the reference's linear scaling rule lr = base * total_batch / 256
    weight_decay: float = 0.05  # AdamW weight decay (decayed groups only)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    layer_decay: float = 1.0  # layer-wise lr decay (finetuning: 0.75); 1.0 = off
    clip_grad: float = 0.0  # max gradient norm; 0 = no clipping (the reference's default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _require(self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}")
        _require(self.batch_size % self.accum_steps == 0,
                 f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}")
        _require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _require(0 <= self.warmup_epochs <= self.epochs,
                 f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        for name in ("lr", "min_lr", "weight_decay", "clip_grad"):
            v = getattr(self, name)
            _require(math.isfinite(v) and v >= 0, f"{name} must be a finite number >= 0, got {v}")
        _require(all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}")
        _require(0 < self.layer_decay <= 1, f"layer_decay must be in (0, 1], got {self.layer_decay}")


@dataclass(frozen=True)
class MVDLossConfig:
    """Weights and options of the MVD objective (distill.mvd_loss; mvd_reference.md section 3)."""

    lambda_img: float = 1.0  # weight of the image-teacher feature loss
    lambda_vid: float = 1.0  # weight of the video-teacher feature loss
    lambda_pix: float = 1.0  # weight of the normalized-pixel loss (paper Table 7)
    beta: float = 1.0  # Smooth L1 beta
    norm_target: bool = False  # LayerNorm (no affine) on teacher features; off in every released run

    def __post_init__(self) -> None:
        for name in ("lambda_img", "lambda_vid", "lambda_pix"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(self.beta > 0, f"beta must be > 0, got {self.beta}")

    def weight(self, branch: str) -> float:
        """The weight of a branch: "img", "vid", "pix"; an EMA teacher's branch ("ema") weighs 1."""
        return {"img": self.lambda_img, "vid": self.lambda_vid, "pix": self.lambda_pix}.get(branch, 1.0)


# ================================================================================================ runs
# Real-video datasets: name -> class count (video_data.py reads their annotation lists).
DATASETS: dict[str, int] = {"k400": 400, "ssv2": 174, "ucf101": 101, "hmdb51": 51}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and clip geometry of a model."""

    arch: str = "vit_micro"  # architecture (config.ARCHITECTURES)
    num_frames: int = 16  # frames per clip
    img_size: int = 32  # frame height = width in pixels
    patch_size: int = 4  # spatial patch size
    tubelet_size: int = 2  # frames per tubelet
    drop_path: float = 0.0  # stochastic depth, rising linearly over the blocks

    def __post_init__(self) -> None:
        _require(self.arch in ARCHITECTURES, f"unknown architecture {self.arch!r}; choose one of {sorted(ARCHITECTURES)}")
        self.vit()  # geometry checks

    def vit(self) -> ViTConfig:
        return vit_config(self.arch, num_frames=self.num_frames, img_size=self.img_size, patch_size=self.patch_size,
                          tubelet_size=self.tubelet_size, drop_path=self.drop_path)


@dataclass(frozen=True)
class DataSpec:
    """Where clips come from. Synthetic geometry (frames, height, width) must match the model's."""

    source: Literal["synthetic", "list"] = "synthetic"  # procedural benchmark or real-video annotation lists
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # the benchmark (source=synthetic)
    num_clips: int = 2000  # synthetic: clips of the training split (pretrain split for pretraining)
    num_val: int = 500  # synthetic: clips of the validation split (choices are made on it)
    num_test: int = 1000  # synthetic: clips of the test split
    num_images: int = 20000  # synthetic: stills for image pretraining
    task: Literal["appearance", "motion", "label"] = "appearance"  # label set: synthetic task, or "label" for lists
    list_dir: str = ""  # folder with train.csv / val.csv / test.csv (source=list)
    root: str = ""  # prefix for relative video paths in the lists
    dataset: str = "k400"  # class registry for lists: k400, ssv2, ucf101, hmdb51
    sampling: Literal["dense", "segment"] = "dense"  # K400-style frames at a stride, or SSv2-style segments
    sampling_rate: int = 4  # frame stride of dense sampling
    test_clips: int = 5  # test views along time (K400 5, SSv2 2)
    test_crops: int = 3  # test views along the long side
    clip_cache: str = ""  # decoded-clip cache folder for real videos ("" = off)
    memory_cache: bool = True  # keep rendered synthetic clips in memory
    num_workers: int = 0  # DataLoader worker processes
    strict: bool = False  # raise on a bad video instead of skipping and reporting it

    def __post_init__(self) -> None:
        for name in ("num_clips", "num_val", "num_test", "num_images", "sampling_rate", "test_clips", "test_crops"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        _require(self.dataset.lower() in DATASETS, f"unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}")


@dataclass(frozen=True)
class RunConfig:
    """Settings every run type has."""

    name: str = "custom"  # run preset name (names the run folder)
    seed: int = 0  # seed of weights, data order, masks and augmentation
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: Dtype = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    checkpointing: bool = False  # activation checkpointing (memory for compute)
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)

    def __post_init__(self) -> None:
        _require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)),
                 f"name {self.name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")
        _require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _require(bool(_DEVICE.match(self.device)), f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        _require(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0 (0: at epoch ends), got {self.checkpoint_every}")
        ratio = getattr(self, "mask_ratio", None)
        if ratio is not None:
            _require(0 < ratio < 1, f"mask_ratio must be in (0, 1), got {ratio}")


@dataclass(frozen=True)
class PretrainImageConfig(RunConfig):
    """MAE pixel pretraining of the image teacher on stills (our ImageNet analogue)."""

    model: ModelSpec = field(default_factory=ModelSpec)  # image ViT: arch, img_size, patch_size
    decoder_width: int = 0  # MAE decoder width (0: config.mae_decoder_config)
    decoder_depth: int = 0  # MAE decoder depth (0: default)
    decoder_heads: int = 0  # MAE decoder heads (0: default)
    mask_ratio: float = 0.75  # MAE random masking ratio
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=20, warmup_epochs=2, batch_size=256,
                                                                   lr=1.5e-4, min_lr=0.0))


@dataclass(frozen=True)
class PretrainVideoConfig(RunConfig):
    """VideoMAE pixel pretraining of the video teacher on unlabeled clips."""

    model: ModelSpec = field(default_factory=ModelSpec)
    decoder_width: int = 0  # VideoMAE decoder width (0: config.videomae_decoder_config)
    decoder_depth: int = 0
    decoder_heads: int = 0
    mask_ratio: float = 0.9  # tube masking ratio
    mask_type: Literal["tube", "random"] = "tube"
    norm_pix_loss: bool = True  # targets: each tubelet's pixels normalized per channel (the reference's
    # --normlize_target, on in every released run); False: the raw pixels in [0, 1]
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=40, warmup_epochs=4, batch_size=64))


@dataclass(frozen=True)
class DistillConfig(RunConfig):
    """MVD: a student predicts frozen teachers' features at masked tubelets (paper Sec. 3)."""

    student: ModelSpec = field(default_factory=ModelSpec)
    image_teacher: str = "pretrain-image"  # run reference, "file:PATH", "random" (control) or "none"
    video_teacher: str = "pretrain-video"  # run reference, "file:PATH", "random" (control) or "none"
    teacher_arch: str = ""  # architecture of "file:" and "random" teachers ("": the reference pairing)
    loss: MVDLossConfig = field(default_factory=MVDLossConfig)  # loss weights and options
    pixel: bool = False  # also reconstruct normalized pixels (paper Table 7)
    mode: Literal["masked", "token"] = "masked"  # masked reconstruction (MVD) or per-token distillation (Table 9)
    ema: bool = False  # bootstrapped teacher: an EMA of the student encoder instead of fixed teachers (Table 8)
    ema_momentum: float = 0.996  # EMA momentum of the bootstrapped teacher
    mask_ratio: float = 0.9  # tube masking ratio
    mask_type: Literal["tube", "random"] = "tube"
    decoder_width: int = 0  # feature-decoder width (0: the reference size for the student)
    decoder_depth: int = 0
    decoder_heads: int = 0
    cache_targets: bool = True  # cache teacher features on disk when the teacher input is deterministic
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=30, warmup_epochs=3, batch_size=64,
                                                                   min_lr=1e-4))

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.ema_momentum <= 1, f"ema_momentum must be in [0, 1], got {self.ema_momentum}")
        _require(not self.teacher_arch or self.teacher_arch in ARCHITECTURES,
                 f"unknown teacher_arch {self.teacher_arch!r}; choose one of {sorted(ARCHITECTURES)}")


@dataclass(frozen=True)
class FinetuneConfig(RunConfig):
    """Supervised finetuning with the reference recipe, then multi-view evaluation on one split (test by default;
    val to choose a setting such as the budget without looking at test)."""

    model: ModelSpec = field(default_factory=lambda: ModelSpec(drop_path=0.1))
    init: str = "distill"  # run reference, "file:PATH", or "random"
    num_classes: int = 0  # 0: from the data (synthetic task or list dataset)
    fc_drop: float = 0.0  # dropout before the head (0.5 for L and H in the reference)
    augment: AugmentConfig = field(default_factory=lambda: LIGHT)  # augmentation recipe (augment.py)
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        epochs=30, warmup_epochs=5, batch_size=64, lr=1e-3, min_lr=1e-6, betas=(0.9, 0.999), layer_decay=0.75))
    split: Literal["val", "test"] = field(default="test", metadata={HASH_SILENT_AT_DEFAULT: True})  # split scored

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.split in ("val", "test"), f"split must be 'val' or 'test', got {self.split!r}")
        _require(self.num_classes >= 0, f"num_classes must be >= 0 (0: from the data), got {self.num_classes}")
        _require(0 <= self.fc_drop < 1, f"fc_drop must be in [0, 1), got {self.fc_drop}")


PROTOCOLS = ("linear", "attentive", "knn")  # evaluation protocols on frozen features (probe_protocols.py)


@dataclass(frozen=True)
class ProbeConfig(RunConfig):
    """Frozen-feature evaluation: linear probes (both poolings), and optionally attentive and k-NN probes."""

    model: ModelSpec = field(default_factory=ModelSpec)  # architecture when `encoder` is "random" or a file
    encoder: str = "distill"  # run reference, "file:PATH", or "random"
    protocols: tuple[str, ...] = ("linear",)  # evaluation protocols (PROTOCOLS)
    poolings: tuple[str, ...] = ("mean", "time")  # feature pooling(s) of the linear and k-NN probes
    tasks: tuple[str, ...] = ("appearance", "motion")  # label sets to probe
    c_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths tried
    attentive_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # attentive-probe peak lrs tried (one: fixed, no choice)
    holdout_fraction: float = 0.2  # part of the TRAINING split used to choose C (and the attentive lr)
    split: Literal["val", "test"] = "test"  # the split scored (choose settings on val, report on test)
    low_shot: tuple[int, ...] = ()  # labelled clips per class of a low-shot curve (linear, time pooling); () = off
    batch_size: int = 64  # clips per forward pass
    data: DataSpec = field(default_factory=DataSpec)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("protocols", "poolings", "tasks", "c_grid", "attentive_lrs", "low_shot"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _require(all(k >= 1 for k in self.low_shot), f"low_shot counts clips per class (>= 1), got {self.low_shot}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        _require(not bad and self.protocols, f"protocols must be some of {PROTOCOLS}, got {self.protocols}")
        bad = [p for p in self.poolings if p not in ("mean", "time")]
        _require(not bad and self.poolings, f"poolings must be some of ('mean', 'time'), got {self.poolings}")
        bad = [t for t in self.tasks if t not in ("appearance", "motion", "label")]
        _require(not bad and self.tasks, f"tasks must be some of ('appearance', 'motion', 'label'), got {self.tasks}")
        _require(bool(self.c_grid) and all(c > 0 for c in self.c_grid), f"c_grid must hold positive values, got {self.c_grid}")
        _require(bool(self.attentive_lrs) and all(lr > 0 for lr in self.attentive_lrs),
                 f"attentive_lrs must hold positive values, got {self.attentive_lrs}")
        _require(0 < self.holdout_fraction < 1, f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class EvaluateConfig(RunConfig):
    """Multi-view evaluation of a finetuned classifier (softmax per view, mean per video, top-1/top-5)."""

    model: ModelSpec = field(default_factory=ModelSpec)  # architecture when `checkpoint` is a file
    checkpoint: str = "finetune"  # finetune run reference or "file:PATH"
    num_classes: int = 0  # 0: from the data
    batch_size: int = 32
    data: DataSpec = field(default_factory=DataSpec)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.num_classes >= 0, f"num_classes must be >= 0 (0: from the data), got {self.num_classes}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ExtractConfig(RunConfig):
    """Frozen features of a chosen layer for every clip of the lists' splits, written as .npy files."""

    model: ModelSpec = field(default_factory=ModelSpec)  # architecture when `encoder` is "random" or a file
    encoder: str = "distill"  # run reference, "file:PATH", or "random"
    layer: int = -1  # encoder block whose output is taken (-1: the final output, after the norm)
    pooling: Literal["mean", "time", "tokens"] = "mean"  # per clip: mean, per time slice, or every token (fp16)
    splits: tuple[str, ...] = ("train", "val", "test")  # splits to extract (missing list files are skipped)
    batch_size: int = 32
    data: DataSpec = field(default_factory=DataSpec)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "splits", tuple(self.splits))
        bad = [s for s in self.splits if s not in ("train", "val", "test")]
        _require(not bad and self.splits, f"splits must be some of ('train', 'val', 'test'), got {self.splits}")
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


VERBS = ("pretrain-image", "pretrain-video", "distill", "finetune", "probe", "evaluate", "extract")
CONFIG_TYPES: dict[str, type] = {
    "pretrain-image": PretrainImageConfig, "pretrain-video": PretrainVideoConfig, "distill": DistillConfig,
    "finetune": FinetuneConfig, "probe": ProbeConfig, "evaluate": EvaluateConfig, "extract": ExtractConfig,
}
# The fields of each run type that name another run, a file, "random" or "none" (profiles.parse_ref).
REFERENCE_FIELDS: dict[str, tuple[str, ...]] = {
    "pretrain-image": (), "pretrain-video": (), "distill": ("image_teacher", "video_teacher"), "finetune": ("init",),
    "probe": ("encoder",), "evaluate": ("checkpoint",), "extract": ("encoder",),
}


def model_spec(cfg: Any) -> ModelSpec:
    """The ModelSpec of any run config (`student` for distill, `model` otherwise)."""
    return cfg.student if isinstance(cfg, DistillConfig) else cfg.model


# ================================================================================================ overrides
def _parse(text: str, tp: Any, key: str) -> Any:
    """Parse `text` as a value of type `tp` (the field's annotation)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}={text!r}: not a valid {tp} ({'; '.join(errors)})")
    if origin is Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ConfigError(f"{key}={text!r}: must be one of {list(args)}")
    if origin is tuple:
        items = [s for s in text.strip("()[] ").split(",") if s.strip() != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(s.strip(), args[0], key) for s in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_parse(s.strip(), a, key) for s, a in zip(items, args))
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a number") from None
    if tp is str:
        return text
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{key} is a group of settings; set its fields, e.g. {key}.<field>=...")
    raise ConfigError(f"{key}: values of type {tp} cannot be set from the command line")


def _check_type(value: Any, tp: Any, key: str) -> None:
    """Type-check a Python value given through the API (overrides as a dict)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        for a in args:
            try:
                _check_type(value, a, key)
                return
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r}: expected {tp}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}={value!r}: expected None")
        return
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r}: must be one of {list(args)}")
        return
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{key}={value!r}: expected a tuple")
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            raise ConfigError(f"{key}={value!r}: expected {len(args)} values")
        for v, a in zip(value, inner):
            _check_type(v, a, key)
        return
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if tp is bool and isinstance(value, bool):
        return
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return
    if tp is str and isinstance(value, str):
        return
    if dataclasses.is_dataclass(tp) and isinstance(value, tp):
        return
    if tp is Any:
        return
    raise ConfigError(f"{key}={value!r}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")


def field_types(cls: type) -> dict[str, Any]:
    """{field name: type annotation} of a dataclass type."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_override(text: str) -> tuple[str, str]:
    """"optim.lr=1e-3" -> ("optim.lr", "1e-3")."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.lr=1e-3)")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def apply_overrides(cfg: Any, overrides: Sequence[str | tuple[str, Any]] | dict[str, Any] | None) -> Any:
    """A copy of the (nested, frozen) dataclass `cfg` with `overrides` applied.

    `overrides`: ["optim.lr=1e-3", "data.num_clips=500"] (strings, parsed by field type), {"optim.lr": 1e-3}
    (values, type-checked), or a list mixing strings and (key, value) pairs. Raises ConfigError on unknown,
    ill-typed or out-of-range values. Overrides of one group of settings are applied together, so their order does
    not matter (["optim.epochs=3", "optim.warmup_epochs=1"] works from a recipe with 5 warmup epochs); the range
    checks judge the result. A key given twice keeps its last value."""
    if not overrides:
        return cfg
    if isinstance(overrides, dict):
        items = [(k, v, False) for k, v in overrides.items()]
    else:
        items = [(*parse_override(o), True) if isinstance(o, str) else (*o, False) for o in overrides]
    tree: dict[str, Any] = {}
    for key, value, is_text in items:
        *groups, leaf = key.split(".")
        node = tree
        for depth, name in enumerate(groups):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key!r} sets a field of {'.'.join(groups[:depth + 1])!r}, which another override "
                                  "sets as a whole")
        if isinstance(node.get(leaf), dict):
            raise ConfigError(f"{key} is a group of settings; set its fields, e.g. {key}.<field>=...")
        node[leaf] = _Leaf(key, value, is_text)
    return _set(cfg, tree, "")


@dataclasses.dataclass(frozen=True)
class _Leaf:
    key: str  # the full override key, e.g. "optim.lr"
    value: Any
    is_text: bool


def _keys(node: Any) -> list[str]:
    """The full override keys under a node of the override tree."""
    return [node.key] if isinstance(node, _Leaf) else [k for child in node.values() for k in _keys(child)]


def _set(obj: Any, tree: dict[str, Any], prefix: str) -> Any:
    """`obj` with every override under `tree` ({field: _Leaf or subtree}) applied in one replace per group."""
    fields = field_types(type(obj))
    changes: dict[str, Any] = {}
    leaves: list[_Leaf] = []
    for name, node in tree.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {_keys(node)[0]!r}: {type(obj).__name__} has {sorted(fields)}")
        if isinstance(node, dict):
            child = getattr(obj, name)
            if not dataclasses.is_dataclass(child):
                raise ConfigError(f"{prefix}{name} is not a group of settings")
            changes[name] = _set(child, node, f"{prefix}{name}.")
            continue
        if node.is_text:
            value = _parse(node.value, fields[name], node.key)
        else:
            _check_type(node.value, fields[name], node.key)
            value = tuple(node.value) if isinstance(node.value, list) else node.value
        changes[name] = value
        leaves.append(dataclasses.replace(node, value=value))
    return _replace_checked(obj, changes, leaves, _keys(tree))


def _replace_checked(obj: Any, changes: dict[str, Any], leaves: list[_Leaf], keys: list[str]) -> Any:
    """dataclasses.replace, its range check's error naming the overrides that caused it."""
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as err:  # the dataclass's own range check: name the override(s) that caused it
        message = str(err)
        named = ", ".join(f"{leaf.key}={leaf.value!r}" for leaf in leaves)
        if named and not any(message.startswith(f"{leaf.key}=") for leaf in leaves):
            message = f"{named}: {message}"
        raise ConfigError(message) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{', '.join(keys)}: {err}") from None


def config_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


HASH_EXCLUDED = ("device",)  # where a run computes, not what: a run made on a GPU is found again on a CPU


def config_hash(cfg: Any, dependencies: dict[str, str] | None = None) -> str:
    """10 hex digits of sha256 over the canonical JSON of a run config, with each field that references another
    run (REFERENCE_FIELDS) replaced by that dependency's fingerprint: the same teacher named two ways is the same
    run, and a changed teacher is another run. `device` stays out (HASH_EXCLUDED); the record names the device
    the run used. A field marked HASH_SILENT_AT_DEFAULT stays out while it holds its default."""
    silent = {f.name for f in dataclasses.fields(cfg) if f.metadata.get(HASH_SILENT_AT_DEFAULT)
              and getattr(cfg, f.name) == f.default}
    data = {k: v for k, v in config_dict(cfg).items() if k not in HASH_EXCLUDED and k not in silent}
    deps = dict(dependencies or {})
    for name in deps:
        if name in data:
            data[name] = deps[name]
    blob = json.dumps({"config": data, "dependencies": deps}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `config_dict` output; unknown keys raise ConfigError."""
    fields = field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {unknown}")
    kwargs = {}
    for name, value in data.items():
        tp = fields[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = config_from_dict(tp, value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)
