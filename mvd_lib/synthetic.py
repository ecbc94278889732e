"""A procedural spatial-vs-temporal video benchmark: our laptop-scale stand-in for K400, SSv2 and ImageNet.

The paper's central finding (MVD, Wang et al. CVPR 2023, sections 1 and 4.3): an image teacher helps
spatially heavy tasks (Kinetics-400), a video teacher helps temporally heavy ones (Something-Something v2),
and co-teaching gets both. No dataset can be downloaded here, so this module builds clips in which
"spatial" and "temporal" are separable by construction. Every clip carries two labels, sampled
independently:

- `appearance` (the spatial task, our K400 analogue): which glyph the object is, a handwritten digit from
  scikit-learn's bundled digits or an asymmetric shape (L, F, arrow, triangle, flag, crescent), drawn with
  a random colour, texture (solid, stripes, checker, two-tone gradient), slant, aspect and stroke weight.
  The object is fully visible in every frame, so any one frame gives the appearance;
- `motion` (the temporal task, our SSv2 analogue): translation direction, orbit sense (a clockwise vs
  counter-clockwise circular path), growing vs shrinking, fading in vs out; optional classes add diagonal
  directions, spinning in place and start/stop order (move-then-stop vs stop-then-move).

Design rules that make motion a purely temporal property:
- every motion class has its time-reversed twin as another class (`twin_motion`); a clip played backwards
  is, pixel for pixel, a clip of the twin class with the same appearance (`reverse_clip`);
- motion parameters are centred on the clip midpoint, and the canvas wraps around (a torus), so the
  object's position in any frame is uniform whatever the motion;
- the time-mixture of the per-frame state is the same for every class: when a class does not drive a
  bounded factor (rotation, scale, opacity), the clip holds that factor at a random constant drawn from
  exactly the values the driving class sweeps through (a factor no class drives stays fixed). A randomly
  chosen frame, and therefore any time-averaged per-frame statistic, has the same distribution for all
  motion classes; only the order of the frames tells them apart (tests/test_synthetic.py checks this with
  linear probes);
- backgrounds are smooth and low-amplitude with little pixel noise, so that masked reconstruction is about
  the object, not about unpredictable background (a busy background made a tiny MAE learn nothing about
  appearance in a prototype of this benchmark);
- motions are large (default 2 px/frame at 32 px: a translating object crosses the frame once in 16 frames,
  an orbiting one runs a full circle; the size doubles or halves; opacity goes 0.5 <-> 1.0). 0.7-1.1 px/frame
  was too weak for a laptop-scale video teacher in the prototype; for the same reason spinning in place,
  whose glyph tips move only ~1 px/frame at 120 degrees per clip, is optional rather than a default class.

Everything is deterministic from (seed, split, index) alone: `np.random.default_rng([seed, split_id, index])`,
so teacher features can be cached per clip and splits hold disjoint instances by construction. The
validation and test splits also draw their glyph bitmaps from a held-out pool (`heldout_glyphs`). Stills for
the image teacher ("images" split, our ImageNet analogue) show the same appearance classes with wider
nuisance ranges (`image_variety`) and can be numbered in the hundreds of thousands, generated on the fly.

Layouts: generators return uint8 `[T, H, W, 3]` clips and `[H, W, 3]` stills; the torch datasets return
`video: [C, T, H, W]` / `image: [C, H, W]` floats normalized with ImageNet mean/std.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mvd_lib import transforms as T

from mvd_lib.config import (APPEARANCES, DEFAULT_MOTIONS, LAYOUTS, MOTIONS, PATH_MOTIONS, SCENES,  # noqa: F401
                            TEXTURES, Motion, SyntheticConfig, synthetic_config)

SPLITS: dict[str, int] = {"pretrain": 0, "train": 1, "val": 2, "test": 3, "images": 4}
CLIP_SPLITS = ("pretrain", "train", "val", "test")
EVAL_SPLITS = ("val", "test")  # these draw glyph bitmaps from the held-out pool




def twin_motion(motion: int, cfg: SyntheticConfig = SyntheticConfig()) -> int:
    """Label of the class that motion class `motion` becomes when the clip is played backwards."""
    if not 0 <= motion < cfg.num_motions:
        raise ValueError(f"motion label {motion} outside [0, {cfg.num_motions})")
    return cfg.motions.index(MOTIONS[cfg.motions[motion]].twin)


# ----------------------------------------------------------------------------------------------------------
# glyph bank: digits from scikit-learn, asymmetric shapes rasterized here
# ----------------------------------------------------------------------------------------------------------
GLYPH_RES = 16  # glyph bitmaps are GLYPH_RES x GLYPH_RES, covering the object box
_PAD = 1  # zero ring around each bitmap so bilinear sampling outside the box returns 0
_SHAPE_VARIANTS = 128  # jittered variants per shape class

_POLYGONS: dict[str, list[tuple[float, float]]] = {  # unit box, x right, y down
    "L": [(0.2, 0.1), (0.42, 0.1), (0.42, 0.7), (0.82, 0.7), (0.82, 0.9), (0.2, 0.9)],
    "F": [(0.22, 0.1), (0.8, 0.1), (0.8, 0.28), (0.44, 0.28), (0.44, 0.44), (0.7, 0.44), (0.7, 0.6),
          (0.44, 0.6), (0.44, 0.9), (0.22, 0.9)],
    "arrow": [(0.1, 0.38), (0.52, 0.38), (0.52, 0.15), (0.92, 0.5), (0.52, 0.85), (0.52, 0.62), (0.1, 0.62)],
    "triangle": [(0.14, 0.12), (0.14, 0.88), (0.88, 0.88)],
    "flag": [(0.2, 0.08), (0.34, 0.08), (0.34, 0.12), (0.86, 0.3), (0.34, 0.5), (0.34, 0.92), (0.2, 0.92)],
}


def _raster_polygon(vertices: np.ndarray, res: int, supersample: int = 4) -> np.ndarray:
    """Antialiased [res, res] coverage of a polygon in unit-box coordinates (even-odd rule)."""
    n = res * supersample
    c = (np.arange(n) + 0.5) / n
    px, py = np.meshgrid(c, c)  # [n, n]
    inside = np.zeros((n, n), dtype=bool)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c_, d in zip(x0, y0, x1, y1):
        crosses = (b > py) != (d > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = a + (py - b) * (c_ - a) / (d - b)
        inside ^= crosses & (px < x_at)
    return inside.reshape(res, supersample, res, supersample).mean(axis=(1, 3))


def _raster_crescent(rng: np.random.Generator, res: int, supersample: int = 4) -> np.ndarray:
    n = res * supersample
    c = (np.arange(n) + 0.5) / n
    px, py = np.meshgrid(c, c)
    cx, cy, r = 0.5 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02), 0.4 + rng.normal(0, 0.02)
    bx, by, br = cx + 0.16 + rng.normal(0, 0.03), cy - 0.1 + rng.normal(0, 0.03), r * (0.8 + rng.normal(0, 0.03))
    inside = ((px - cx) ** 2 + (py - cy) ** 2 < r**2) & ((px - bx) ** 2 + (py - by) ** 2 > br**2)
    return inside.reshape(res, supersample, res, supersample).mean(axis=(1, 3))


@dataclass(frozen=True)
class GlyphBank:
    """All glyph bitmaps, padded: `bitmaps: [N, R+2, R+2]` float32 in [0, 1], `labels: [N]` appearance class,
    `heldout: [N]` bool (the pool the val/test splits draw from)."""

    bitmaps: np.ndarray
    labels: np.ndarray
    heldout: np.ndarray

    def pool(self, label: int, heldout: bool | None) -> np.ndarray:
        """Indices of class `label` in the held-out pool (True), the training pool (False) or both (None)."""
        keep = self.labels == label
        if heldout is not None:
            keep &= self.heldout == heldout
        return np.flatnonzero(keep)


@functools.lru_cache(maxsize=1)
def glyph_bank() -> GlyphBank:
    """The glyph bank, built once per process: 1797 digits and 128 jittered variants of each shape; every 5th
    bitmap of each class is held out for the val/test splits. Shape jitter uses a fixed seed: the bank is
    part of the benchmark."""
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    digits = load_digits()
    img = digits.images.astype(np.float32) / 16.0  # [1797, 8, 8]
    up = np.kron(img, np.ones((1, 2, 2), dtype=np.float32))  # [N, 16, 16]
    pad = np.pad(up, ((0, 0), (1, 1), (1, 1)))
    smooth = sum(pad[:, i:i + 16, j:j + 16] for i in range(3) for j in range(3)) / 9.0  # 3x3 box blur
    bitmaps = [np.clip(smooth * 1.3, 0, 1)]
    labels = [digits.target.astype(np.int64)]
    rank = np.zeros(len(img), dtype=np.int64)  # position of each bitmap among those of its class
    for d in range(10):
        rank[digits.target == d] = np.arange(int((digits.target == d).sum()))
    heldout = [rank % 5 == 0]
    rng = np.random.default_rng(20230601)
    for name in APPEARANCES[10:]:
        label = APPEARANCES.index(name)
        variants = []
        for _ in range(_SHAPE_VARIANTS):
            if name == "crescent":
                variants.append(_raster_crescent(rng, GLYPH_RES))
            else:
                v = np.asarray(_POLYGONS[name]) + rng.normal(0, 0.025, size=(len(_POLYGONS[name]), 2))
                variants.append(_raster_polygon(np.clip(v, 0.02, 0.98), GLYPH_RES))
        bitmaps.append(np.stack(variants).astype(np.float32))
        labels.append(np.full(_SHAPE_VARIANTS, label))
        heldout.append(np.arange(_SHAPE_VARIANTS) % 5 == 0)
    bm = np.concatenate(bitmaps)
    bm = np.pad(bm, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
    return GlyphBank(np.ascontiguousarray(bm), np.concatenate(labels), np.concatenate(heldout))


# ----------------------------------------------------------------------------------------------------------
# clip specification: every random number of a clip, drawn from its own generator
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSpec:
    """One object at mid-clip, plus the constants it holds for the bounded factors its class does not drive."""

    glyph: int  # index into glyph_bank()
    center: tuple[float, float]  # (x, y) in px at the clip midpoint; the canvas wraps
    angle: float  # degrees at the midpoint
    log_scale: float  # log of the box-size multiplier at the midpoint
    opacity: float  # opacity at the midpoint
    speed: float  # translation / orbit speed in px/frame
    orbit_phase: float  # radians, where on its circle an orbiting object is at the midpoint
    aspect: float  # width/height stretch of the glyph
    shear: float  # horizontal slant
    threshold: float  # stroke weight: bitmap level mapped to half coverage (lower = bolder)
    colour: tuple[float, float, float]  # main RGB colour in [0, 1]
    colour2: tuple[float, float, float]  # second texture colour
    texture: int  # index into TEXTURES
    texture_freq: float  # cycles per glyph box
    texture_angle: float  # radians
    texture_phase: float  # radians
    hold: tuple[float, float, float]  # (rotation, scale, opacity) offsets held when not driven: on the
    # trajectory's grid in [-0.5, 0.5] for clips, uniform in +-image_variety / 2 for stills; 0 for a factor
    # that no class of cfg.motions drives


@dataclass(frozen=True)
class SceneSpec:
    """The background scene of the "scene" layout: a two-colour pattern of class `kind` (index into SCENES),
    periodic on the canvas (integer wave vectors, torus distances) so that it can pan and wrap."""

    kind: int  # index into SCENES (= the appearance label)
    colour: tuple[float, float, float]  # pattern colour (weight 1)
    colour2: tuple[float, float, float]  # ground colour (weight 0)
    k1: tuple[int, int]  # main wave vector, cycles per frame along (x, y)
    k2: tuple[int, int]  # second wave vector (the lattice's other axis, or the zigzag/wave modulation)
    phase: tuple[float, float]  # phases of the two waves, in cycles
    sharpness: float  # edge steepness of the pattern
    param: float  # family parameter: duty cycle, dot threshold, line width, zigzag depth, ring frequency
    centre: tuple[float, float]  # rings: centre in px
    blob_waves: np.ndarray = field(repr=False)  # blobs: [K, 3] (kx, ky, phase in cycles)
    drift: tuple[float, float] = (0.0, 0.0)  # (dx, dy) px/frame, centred on the clip midpoint
    speed: float = 0.0  # px/frame along the motion class's path (moving="scene")
    orbit_phase: float = 0.0  # radians, where on its circle an orbiting scene is at the midpoint


@dataclass(frozen=True)
class ClipSpec:
    """All parameters of one clip (or still, `frames == 1` and `motion == -1`)."""

    appearance: int  # appearance label
    motion: int  # motion label (position in cfg.motions); -1 for stills
    frames: int  # frames to render
    bg_colour: tuple[float, float, float]  # background base colour
    bg_waves: np.ndarray = field(repr=False)  # [K, 6]: (kx, ky, phase, amp_r, amp_g, amp_b) periodic waves
    objects: tuple[ObjectSpec, ...] = ()
    noise_seed: int = 0  # seed of the pixel-noise generator
    scene: SceneSpec | None = None  # the background scene ("scene" layout); None: the smooth background


def _pick_colours(rng: np.random.Generator, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object colour at least 0.6 from the background (RGB distance), second colour 0.15-0.35 from the first
    and 0.45 from the background. A fixed number of draws keeps the generator's stream aligned."""
    cand = rng.uniform(0.0, 1.0, size=(16, 3))
    ok = np.linalg.norm(cand - bg, axis=1) >= 0.6
    c1 = cand[int(np.argmax(ok))] if ok.any() else np.where(bg > 0.5, 0.05, 0.95)
    cand2 = rng.uniform(0.0, 1.0, size=(16, 3))
    d1, d_bg = np.linalg.norm(cand2 - c1, axis=1), np.linalg.norm(cand2 - bg, axis=1)
    ok2 = (d1 >= 0.15) & (d1 <= 0.35) & (d_bg >= 0.45)
    c2 = cand2[int(np.argmax(ok2))] if ok2.any() else c1
    return c1, c2


def _hold_offset(rng: np.random.Generator, frames: int, still_range: float | None) -> float:
    """Constant offset for an undriven factor: for clips, a value on the driven trajectory's grid
    (k - t_mid) / (T - 1) with k uniform in 0..T-1, so a random frame has the same law for every class;
    for stills, uniform in +-still_range / 2."""
    if still_range is not None:
        return float(rng.uniform(-0.5, 0.5) * still_range)
    if frames == 1:
        return 0.0
    k = int(rng.integers(frames))
    return (k - (frames - 1) / 2) / (frames - 1)


def _wave_vector(rng: np.random.Generator, lo: float, hi: float) -> tuple[int, int]:
    """An integer wave vector (cycles per frame along x, y) of length about uniform(lo, hi), random direction."""
    f, theta = rng.uniform(lo, hi), rng.uniform(0, math.pi)
    k = (int(round(f * math.cos(theta))), int(round(f * math.sin(theta))))
    return k if k != (0, 0) else (1, 0)


def _sample_scene(rng: np.random.Generator, kind: int, cfg: SyntheticConfig, still: bool) -> SceneSpec:
    """Every random number of a scene, in a fixed number of draws whatever the class."""
    lo, hi = cfg.scene_frequency
    cand = rng.uniform(0.0, 1.0, size=(16, 3))
    c1 = cand[0]
    far = np.linalg.norm(cand[1:] - c1, axis=1) >= 0.45  # a visible pattern: colours at least 0.45 apart
    c2 = cand[1 + int(np.argmax(far))] if far.any() else np.where(c1 > 0.5, c1 - 0.5, c1 + 0.5)
    k1 = _wave_vector(rng, lo, hi)
    name = SCENES[kind]
    if name in ("zigzag", "waves"):  # a slow modulation across the stripes
        m = rng.uniform(1.0, 2.0) / math.hypot(*k1)
        k2 = (int(round(-k1[1] * m)), int(round(k1[0] * m)))
        k2 = k2 if k2 != (0, 0) else ((0, 1) if k1[0] else (1, 0))
    else:  # the lattice's other axis: perpendicular, same frequency
        k2 = (-k1[1], k1[0])
    if name == "plain":
        k1 = _wave_vector(rng, 1.0, 1.5)
    else:
        rng.uniform(0, 1)  # keep the stream aligned
    phase = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))
    sharpness = float(rng.uniform(3.0, 8.0))
    u = float(rng.uniform(0, 1))
    param = {"stripes": -0.4 + 0.8 * u, "dots": 0.5 + 0.8 * u, "grid": 0.25 + 0.2 * u, "zigzag": 0.3 + 0.4 * u,
             "waves": 0.3 + 0.4 * u, "rings": lo + (hi - lo) * u, "bricks": 0.2 + 0.15 * u}.get(name, u)
    centre = (float(rng.uniform(0, cfg.width)), float(rng.uniform(0, cfg.height)))
    blob = np.zeros((5, 3))
    for i in range(5):
        blob[i] = (*_wave_vector(rng, 1.0, max(1.0, lo)), rng.uniform(0, 1))
    drift = (0.0, 0.0)
    angle = rng.uniform(0, 2 * math.pi)
    if not still and cfg.drift > 0:
        drift = (cfg.drift * math.cos(angle), cfg.drift * math.sin(angle))
    speed = float(cfg.speed_px * (1 + rng.uniform(-cfg.jitter, cfg.jitter)))
    orbit_phase = float(rng.uniform(0, 2 * math.pi))
    return SceneSpec(kind, tuple(float(c) for c in c1), tuple(float(c) for c in c2), k1, k2, phase, sharpness,
                     param, centre, blob, drift, speed, orbit_phase)


def _sample_object(rng: np.random.Generator, cfg: SyntheticConfig, pool: np.ndarray, c1: np.ndarray,
                   c2: np.ndarray, v: float, still: bool, frames: int, driven: set[str]) -> ObjectSpec:
    """Every random number of one object (the draw order is part of the benchmark)."""
    j = cfg.jitter
    active = [f in driven for f in ("rotation", "scale", "opacity")]
    opacity = 1 - cfg.fade / 2 if "opacity" in driven else 0.97  # so that fading never exceeds 1
    return ObjectSpec(
        glyph=int(pool[rng.integers(len(pool))]),
        center=(float(rng.uniform(0, cfg.width)), float(rng.uniform(0, cfg.height))),
        angle=float(rng.uniform(-10, 10) * v),
        log_scale=float(rng.uniform(-j, j) * 0.75 * v),
        opacity=float(opacity + rng.uniform(-0.03, 0.03)),
        speed=float(cfg.speed_px * (1 + rng.uniform(-j, j))),
        orbit_phase=float(rng.uniform(0, 2 * math.pi)),
        aspect=float(math.exp(rng.uniform(-0.15, 0.15) * v)),
        shear=float(rng.uniform(-0.15, 0.15) * v),
        threshold=float(rng.uniform(0.25, 0.45)),
        colour=tuple(float(c) for c in c1),
        colour2=tuple(float(c) for c in c2),
        texture=int(rng.integers(len(TEXTURES))),
        texture_freq=float(rng.uniform(1.5, 3.0) * (v if still else 1.0)),
        texture_angle=float(rng.uniform(0, math.pi)),
        texture_phase=float(rng.uniform(0, 2 * math.pi)),
        hold=tuple(_hold_offset(rng, frames, v if still else None) * on for on in active),
    )


def _mover_colour(rng: np.random.Generator, scene: SceneSpec) -> np.ndarray:
    """The candidate colour farthest (RGB) from both scene colours, of 16 drawn."""
    cand = rng.uniform(0.0, 1.0, size=(16, 3))
    d = np.minimum(np.linalg.norm(cand - np.asarray(scene.colour), axis=1),
                   np.linalg.norm(cand - np.asarray(scene.colour2), axis=1))
    return cand[int(np.argmax(d))]


def sample_spec(cfg: SyntheticConfig, split: str, index: int) -> ClipSpec:
    """The parameters of clip `index` of `split` ("images": a still). Deterministic in (cfg, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    still = split == "images"
    appearance = int(rng.integers(cfg.num_appearance))  # the two labels are drawn independently
    motion = -1 if still else int(rng.integers(cfg.num_motions))
    frames = 1 if still else cfg.frames
    v = cfg.image_variety if still else 1.0
    scene = _sample_scene(rng, appearance, cfg, still) if cfg.layout == "scene" else None

    bg = rng.uniform(0.15, 0.85, size=3)
    if scene is not None:
        bg = (np.asarray(scene.colour) + np.asarray(scene.colour2)) / 2
    n_waves = 2
    waves = np.zeros((n_waves, 6))
    for k in range(n_waves):
        kx, ky = 0, 0
        while kx == 0 and ky == 0:
            kx, ky = (int(a) for a in rng.integers(-1, 2, size=2))
        amp = rng.uniform(-1, 1, size=3) * cfg.bg_amplitude * (v if still else 1.0) / n_waves
        waves[k] = (kx, ky, rng.uniform(0, 2 * math.pi), *amp)

    driven = {MOTIONS[m].factor for m in cfg.motions}
    if scene is None:  # the object's glyph is the appearance
        heldout = (split in EVAL_SPLITS) if cfg.heldout_glyphs else None
        pool = glyph_bank().pool(appearance, heldout)
    else:  # the mover carries no label: any shape glyph
        pool = np.flatnonzero(glyph_bank().labels >= len(APPEARANCES) - 6)
    objects = []
    for _ in range(cfg.num_objects):
        if scene is None:
            c1, c2 = _pick_colours(rng, bg)
        else:
            c1 = _mover_colour(rng, scene)
            c2 = c1
        obj = _sample_object(rng, cfg, pool, c1, c2, v, still, frames, driven)
        objects.append(obj if scene is None else dataclasses.replace(obj, texture=0))
    return ClipSpec(appearance, motion, frames, tuple(float(c) for c in bg), waves, tuple(objects),
                    noise_seed=int(rng.integers(2**63 - 1)), scene=scene)


# ----------------------------------------------------------------------------------------------------------
# rendering (vectorized numpy over [T, H, W])
# ----------------------------------------------------------------------------------------------------------
def _path(motion: Motion | None, speed: float, orbit_phase: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame offset (dx, dy) in px, each [T], of something following `motion`'s path (translation or
    orbit; zero for factor motions and None), centred on the clip midpoint: a translation passes its mid-clip
    position at the midpoint, an orbit runs a full circle of circumference T * speed around it."""
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2
    dx, dy = np.zeros(frames), np.zeros(frames)
    if motion is None or motion.factor:
        return dx, dy
    if motion.orbit:
        omega = 2 * math.pi / frames  # one full turn per T frames
        radius = speed / omega  # so that the path covers `speed` px per frame (chord ~ arc)
        phi = orbit_phase + motion.orbit * omega * t
        return radius * np.cos(phi), radius * np.sin(phi)
    prof = {"linear": t, "move_stop": np.minimum(t, 0), "stop_move": np.maximum(t, 0)}[motion.profile]
    return motion.direction[0] * speed * prof, motion.direction[1] * speed * prof


def _trajectory(obj: ObjectSpec, motion: Motion | None, cfg: SyntheticConfig, frames: int):
    """Per-frame (cx, cy, angle_rad, box_px, opacity), each [T]."""
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2  # centred on the midpoint
    tau = t / (frames - 1) if frames > 1 else np.zeros(1)  # in [-0.5, 0.5]
    rot, scale, opac = (np.full(frames, h) for h in obj.hold)
    cx = np.full(frames, obj.center[0])
    cy = np.full(frames, obj.center[1])
    if motion is not None:
        if motion.factor:
            driven = motion.sign * tau
            rot, scale, opac = (driven if f == motion.factor else x
                                for f, x in zip(("rotation", "scale", "opacity"), (rot, scale, opac)))
        else:
            dx, dy = _path(motion, obj.speed, obj.orbit_phase, frames)
            cx, cy = cx + dx, cy + dy
    angle = np.deg2rad(obj.angle + cfg.rotation * rot)
    box = cfg.object_px * np.exp(obj.log_scale + math.log(cfg.growth) * scale)
    opacity = np.clip(obj.opacity + cfg.fade * opac, 0.0, 1.0)
    return cx, cy, angle, box, opacity


def _texture(kind: str, u: np.ndarray, v: np.ndarray, obj: ObjectSpec) -> np.ndarray:
    """Texture weight in [0, 1] of the main colour at object coordinates (u, v) in the glyph box [-0.5, 0.5]^2."""
    if kind == "solid":
        return np.ones_like(u)
    a = np.float32(obj.texture_angle)
    s = u * np.cos(a) + v * np.sin(a)
    w = np.float32(2 * math.pi * obj.texture_freq)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(w * s + np.float32(obj.texture_phase))
    if kind == "checker":
        r = -u * np.sin(a) + v * np.cos(a)
        return (np.sin(w * s + np.float32(obj.texture_phase)) * np.sin(w * r) > 0).astype(np.float32)
    return np.clip(s + 0.5, 0.0, 1.0)  # gradient


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def scene_weight(scene: SceneSpec, cfg: SyntheticConfig, frames: int, motion: Motion | None = None) -> np.ndarray:
    """Pattern weight in [0, 1] of the scene colour: `[T, H, W]` (T = 1 for a scene that does not move). The
    scene moves by its drift and, when cfg.moving == "scene", along `motion`'s path."""
    H, W = cfg.height, cfg.width
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2  # centred on the midpoint
    ox, oy = scene.drift[0] * t, scene.drift[1] * t
    if cfg.moving == "scene":
        px, py = _path(motion, scene.speed, scene.orbit_phase, frames)
        ox, oy = ox + px, oy + py
    if not (np.any(ox) or np.any(oy)):
        ox, oy = ox[:1], oy[:1]
    xs = (np.arange(W, dtype=np.float32) + 0.5)[None, None, :] - ox.astype(np.float32)[:, None, None]
    ys = (np.arange(H, dtype=np.float32) + 0.5)[None, :, None] - oy.astype(np.float32)[:, None, None]

    def cycles(k: tuple[int, int], phase: float) -> np.ndarray:  # [T, H, W] position along k, in cycles
        return k[0] * xs / W + k[1] * ys / H + np.float32(phase)

    name, sharp, a = SCENES[scene.kind], np.float32(scene.sharpness), np.float32(scene.param)
    s1, s2 = cycles(scene.k1, scene.phase[0]), cycles(scene.k2, scene.phase[1])
    two_pi = np.float32(2 * math.pi)
    if name == "stripes":
        return _sigmoid(sharp * (np.sin(two_pi * s1) + a))
    if name == "checker":
        return _sigmoid(2 * sharp * np.sin(two_pi * s1) * np.sin(two_pi * s2))
    if name == "dots":
        return _sigmoid(sharp * (np.cos(two_pi * s1) + np.cos(two_pi * s2) - a))
    if name == "grid":
        line = lambda u: _sigmoid(sharp * 3 * (a - np.abs(np.sin(np.float32(math.pi) * u))))  # noqa: E731
        return np.maximum(line(s1), line(s2))
    if name == "zigzag":
        tri = 2 * np.abs(s2 - np.floor(s2) - 0.5)  # triangle wave in [0, 1]
        return _sigmoid(sharp * np.sin(two_pi * (s1 + a * tri)))
    if name == "waves":
        return _sigmoid(sharp * np.sin(two_pi * (s1 + 0.5 * a * np.sin(two_pi * s2))))
    if name == "rings":
        dx = (xs - np.float32(scene.centre[0]) + W / 2) % W - W / 2
        dy = (ys - np.float32(scene.centre[1]) + H / 2) % H - H / 2
        r = np.sqrt(dx * dx + dy * dy) / min(H, W)  # in frame sides
        return _sigmoid(sharp * np.sin(two_pi * (a * r + np.float32(scene.phase[0]))))
    if name == "blobs":
        v = sum(np.sin(two_pi * cycles((int(kx), int(ky)), ph)) for kx, ky, ph in scene.blob_waves)
        return _sigmoid(sharp * 0.6 * v / np.float32(math.sqrt(len(scene.blob_waves))))
    if name == "bricks":
        row = np.floor(s1)
        joint = s2 + 0.5 * row
        line = lambda u: _sigmoid(sharp * 3 * (a - np.abs(np.sin(np.float32(math.pi) * u))))  # noqa: E731
        return np.maximum(line(s1), line(joint))
    return 0.5 + 0.5 * np.sin(two_pi * s1)  # plain: a smooth two-colour gradient


def render(spec: ClipSpec, cfg: SyntheticConfig) -> np.ndarray:
    """Draw a clip: uint8 `[T, H, W, 3]` with T = spec.frames."""
    Tn, H, W = spec.frames, cfg.height, cfg.width
    ys = np.arange(H, dtype=np.float32) + 0.5
    xs = np.arange(W, dtype=np.float32) + 0.5
    # smooth periodic background [H, W, 3]
    bg = np.broadcast_to(np.asarray(spec.bg_colour, dtype=np.float32), (H, W, 3)).copy()
    for kx, ky, ph, ar, ag, ab in spec.bg_waves:
        wave = np.sin(2 * np.pi * (kx * xs[None, :] / W + ky * ys[:, None] / H) + ph).astype(np.float32)
        bg += wave[..., None] * np.asarray([ar, ag, ab], dtype=np.float32)
    motion = MOTIONS[cfg.motions[spec.motion]] if spec.motion >= 0 else None
    if spec.scene is not None:  # the scene replaces the base colour; the smooth waves stay as shading
        sc = spec.scene
        base = np.asarray(sc.colour2, dtype=np.float32)
        weight = scene_weight(sc, cfg, Tn, motion)[..., None]  # [T or 1, H, W, 1]
        bg = bg - np.asarray(spec.bg_colour, dtype=np.float32) + base + weight * (
            np.asarray(sc.colour, dtype=np.float32) - base)
    out = np.broadcast_to(bg, (Tn, H, W, 3)).copy()

    bank = glyph_bank()
    P = GLYPH_RES + 2 * _PAD
    object_motion = motion if cfg.moving == "object" else None  # a moving scene leaves the objects in place
    for obj in spec.objects:
        cx, cy, ang, box, alpha = (a.astype(np.float32) for a in _trajectory(obj, object_motion, cfg, Tn))
        # offsets from the object centre on the torus: dx [T, 1, W], dy [T, H, 1]
        dx = (xs[None, None, :] - cx[:, None, None] + W / 2) % W - W / 2
        dy = (ys[None, :, None] - cy[:, None, None] + H / 2) % H - H / 2
        c, s, b = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None], box[:, None, None]
        xr = (c * dx + s * dy) / b  # rotate by -angle: object coordinates, [T, H, W]
        yr = (c * dy - s * dx) / b
        u = xr / obj.aspect + obj.shear * yr
        v = yr * obj.aspect
        # bilinear lookup in the padded bitmap
        gx = np.clip((u + 0.5) * GLYPH_RES - 0.5 + _PAD, 0, P - 1.001)
        gy = np.clip((v + 0.5) * GLYPH_RES - 0.5 + _PAD, 0, P - 1.001)
        x0, y0 = gx.astype(np.int32), gy.astype(np.int32)
        fx, fy = gx - x0, gy - y0
        flat = bank.bitmaps[obj.glyph].ravel()
        i = y0 * P + x0
        val = ((flat[i] * (1 - fx) + flat[i + 1] * fx) * (1 - fy)
               + (flat[i + P] * (1 - fx) + flat[i + P + 1] * fx) * fy)
        cover = np.clip((val - obj.threshold) / 0.3 + 0.5, 0.0, 1.0) * alpha[:, None, None]  # [T, H, W]
        tex = _texture(TEXTURES[obj.texture], u, v, obj)[..., None]
        colour = (np.asarray(obj.colour2, np.float32) + tex * (np.asarray(obj.colour, np.float32)
                                                              - np.asarray(obj.colour2, np.float32)))
        out += cover[..., None] * (colour - out)
    if cfg.noise > 0:
        out += np.random.default_rng(spec.noise_seed).standard_normal(out.shape, dtype=np.float32) * cfg.noise
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def find_clips(cfg: SyntheticConfig, split: str, count: int = 1, motion: int | None = None,
               appearance: int | None = None, start: int = 0) -> list[int]:
    """The first `count` indices >= `start` of `split` whose labels match (None = any); no rendering."""
    out, index = [], start
    while len(out) < count:
        a, m = item_labels(cfg, split, index)
        if (motion is None or m == motion) and (appearance is None or a == appearance):
            out.append(index)
        index += 1
        if index - start > 10_000 * max(count, 1):
            raise ValueError(f"no clips with motion={motion}, appearance={appearance} in {split}")
    return out


def make_clip(cfg: SyntheticConfig, split: str, index: int) -> tuple[np.ndarray, int, int]:
    """(video uint8 [T, H, W, 3], appearance, motion) for clip `index` of a clip split."""
    if split not in CLIP_SPLITS:
        raise ValueError(f"clip split must be one of {CLIP_SPLITS}, got {split!r}")
    spec = sample_spec(cfg, split, index)
    return render(spec, cfg), spec.appearance, spec.motion


def make_image(cfg: SyntheticConfig, index: int) -> tuple[np.ndarray, int]:
    """(image uint8 [H, W, 3], appearance) for still `index` of the "images" split."""
    spec = sample_spec(cfg, "images", index)
    return render(spec, cfg)[0], spec.appearance


def reverse_clip(video: np.ndarray | torch.Tensor, motion: int, cfg: SyntheticConfig = SyntheticConfig(),
                 time_dim: int | None = None) -> tuple[np.ndarray | torch.Tensor, int]:
    """Play a clip backwards: (reversed video, twin motion label). The appearance label is unchanged.
    `time_dim` defaults to 0 for numpy `[T, H, W, C]` and 1 for torch `[C, T, H, W]`."""
    if time_dim is None:
        time_dim = 1 if isinstance(video, torch.Tensor) else 0
    flipped = video.flip(time_dim) if isinstance(video, torch.Tensor) else np.flip(video, axis=time_dim).copy()
    return flipped, twin_motion(motion, cfg)


def reverse_spec(spec: ClipSpec, cfg: SyntheticConfig) -> ClipSpec:
    """The spec whose rendering (without pixel noise) is `render(spec)` played backwards: same everything, the
    twin motion label (and a drifting scene drifts the other way)."""
    scene = spec.scene
    if scene is not None:
        scene = dataclasses.replace(scene, drift=(-scene.drift[0], -scene.drift[1]))
    return dataclasses.replace(spec, motion=twin_motion(spec.motion, cfg), scene=scene)


# ----------------------------------------------------------------------------------------------------------
# torch datasets
# ----------------------------------------------------------------------------------------------------------
Task = Literal["appearance", "motion"]


class _Memo:
    """Optional in-memory uint8 cache: one preallocated array filled on first access (fills made before a
    DataLoader forks its workers are shared with them)."""

    def __init__(self, n: int, shape: tuple[int, ...]):
        self.data = np.empty((n, *shape), dtype=np.uint8)
        self.labels = np.full((n, 2), -1, dtype=np.int64)
        self.filled = np.zeros(n, dtype=bool)


class SyntheticClips(Dataset):
    """Clips of one split. Item: {"video": [C, T, H, W] normalized, "index", "appearance", "motion"} and, when
    `task` is set, "label" (= the appearance or motion label). `task=None` is the unlabeled pretraining set."""

    def __init__(self, split: str = "train", num_clips: int = 2048, cfg: SyntheticConfig = SyntheticConfig(),
                 task: Task | None = None, cache: bool = False,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if split not in CLIP_SPLITS:
            raise ValueError(f"clip split must be one of {CLIP_SPLITS}, got {split!r}")
        if task not in (None, "appearance", "motion"):
            raise ValueError(f"task must be 'appearance', 'motion' or None, got {task!r}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.split, self.num_clips, self.cfg, self.task, self.transform = split, num_clips, cfg, task, transform
        # an item is a function of (cfg, split, index) alone unless a transform adds randomness: teacher features
        # of such a set can be cached once (target_cache.py)
        self.deterministic = transform is None
        self._memo = _Memo(num_clips, (cfg.frames, cfg.height, cfg.width, 3)) if cache else None

    def __len__(self) -> int:
        return self.num_clips

    @property
    def num_classes(self) -> int | None:
        """Classes of "label": the appearance or motion class count, None without a task."""
        if self.task is None:
            return None
        return self.cfg.num_appearance if self.task == "appearance" else self.cfg.num_motions

    def raw(self, index: int) -> tuple[np.ndarray, int, int]:
        """(uint8 [T, H, W, 3], appearance, motion) of clip `index`, from the cache when enabled."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        m = self._memo
        if m is not None and m.filled[index]:
            return m.data[index], int(m.labels[index, 0]), int(m.labels[index, 1])
        video, a, mo = make_clip(self.cfg, self.split, index)
        if m is not None:
            m.data[index], m.labels[index], m.filled[index] = video, (a, mo), True
        return video, a, mo

    def __getitem__(self, index: int) -> dict:
        video, appearance, motion = self.raw(index)
        x = T.normalize(T.to_cthw(T.frames_to_float(video)))  # [C, T, H, W]
        if self.transform is not None:
            x = self.transform(x)
        item = {"video": x, "index": index, "appearance": appearance, "motion": motion}
        if self.task is not None:
            item["label"] = appearance if self.task == "appearance" else motion
        return item

    def labels(self, kind: Task) -> np.ndarray:
        """[N] appearance or motion labels of every clip (cheap: no rendering)."""
        col = 0 if kind == "appearance" else 1
        out = np.empty(self.num_clips, dtype=np.int64)
        for i in range(self.num_clips):
            if self._memo is not None and self._memo.filled[i]:
                out[i] = self._memo.labels[i, col]
            else:
                out[i] = item_labels(self.cfg, self.split, i)[col]
        return out

    def materialize(self, progress: bool = True) -> "SyntheticClips":
        """Render every clip into the in-memory cache now (enables the cache if it was off)."""
        if self._memo is None:
            self._memo = _Memo(self.num_clips, (self.cfg.frames, self.cfg.height, self.cfg.width, 3))
        for i in tqdm(range(self.num_clips), desc=f"synthetic {self.split}", disable=not progress):
            self.raw(i)
        return self


def item_labels(cfg: SyntheticConfig, split: str, index: int) -> tuple[int, int]:
    """(appearance, motion) of an item without rendering it (motion -1 for stills): the first two draws of its
    generator, exactly as `sample_spec` makes them."""
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    a = int(rng.integers(cfg.num_appearance))
    return a, (-1 if split == "images" else int(rng.integers(cfg.num_motions)))


class SyntheticImages(Dataset):
    """Stills for the image teacher (our ImageNet analogue): {"image": [C, H, W] normalized, "label":
    appearance, "index"}. Same appearance classes as the clips, disjoint instances, wider nuisance ranges;
    any size (100k+) since each still is generated on the fly."""

    def __init__(self, num_images: int = 100_000, cfg: SyntheticConfig = SyntheticConfig(), cache: bool = False,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images, self.cfg, self.transform = num_images, cfg, transform
        self.deterministic = transform is None
        self._memo = _Memo(num_images, (cfg.height, cfg.width, 3)) if cache else None

    def __len__(self) -> int:
        return self.num_images

    @property
    def num_classes(self) -> int:
        return self.cfg.num_appearance

    def raw(self, index: int) -> tuple[np.ndarray, int]:
        """(uint8 [H, W, 3], appearance) of still `index`."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        m = self._memo
        if m is not None and m.filled[index]:
            return m.data[index], int(m.labels[index, 0])
        image, a = make_image(self.cfg, index)
        if m is not None:
            m.data[index], m.labels[index], m.filled[index] = image, (a, -1), True
        return image, a

    def __getitem__(self, index: int) -> dict:
        image, appearance = self.raw(index)
        x = T.normalize(T.frames_to_float(image[None])[0])  # [C, H, W]
        if self.transform is not None:
            x = self.transform(x)
        return {"image": x, "label": appearance, "index": index}


# ----------------------------------------------------------------------------------------------------------
# diagnostics
# ----------------------------------------------------------------------------------------------------------
def frame_features(video: np.ndarray) -> np.ndarray:
    """Generic per-frame statistics of uint8 `video: [T, H, W, 3]` -> `[T, D]` (D = 37): per-channel mean and
    std (6), image-gradient structure tensor (3), magnitudes of the 12 lowest non-constant 2-D Fourier modes
    of the grey frame (12, shift-invariant), and a 4x4 grid of mean grey levels (16). Used by the probes that
    show motion lives in the frame order, not in any frame."""
    x = video.astype(np.float32) / 255.0  # [T, H, W, 3]
    Tn, H, W, _ = x.shape
    if H % 4 or W % 4:
        raise ValueError(f"frame_features needs height and width divisible by 4, got {H}x{W}")
    grey = x.mean(-1)  # [T, H, W]
    mean = x.mean((1, 2))
    std = x.std((1, 2))
    gx = np.roll(grey, -1, 2) - grey
    gy = np.roll(grey, -1, 1) - grey
    tensor = np.stack([(gx * gx).mean((1, 2)), (gy * gy).mean((1, 2)), (gx * gy).mean((1, 2))], 1) * 10
    spec = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True))) / (H * W) * 10  # [T, H, W]
    modes = [(0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (1, 2), (2, 1), (1, -2), (2, -1), (2, 2), (2, -2)]
    fourier = np.stack([spec[:, ky % H, kx % W] for ky, kx in modes], 1)
    grid = grey.reshape(Tn, 4, H // 4, 4, W // 4).mean((2, 4)).reshape(Tn, 16)
    return np.concatenate([mean, std, tensor, fourier, grid], 1).astype(np.float32)


def step_features(video: np.ndarray) -> np.ndarray:
    """Frame-ORDER statistics of uint8 `video: [T, H, W, 3]` -> `[T - 2, 3]`: for each step, the shift (dx, dy)
    in px (torus-wrapped) that best aligns consecutive frame differences D_t = F_{t+1} - F_t and D_{t+1}
    (circular cross-correlation peak: a static scene cancels, a moving object's displacement remains), and the
    turn dx_t dy_{t+1} - dy_t dx_{t+1} between successive shifts. Computed on a shuffled frame order these
    carry no motion; that contrast is what the tests use to show the label lives in the order."""
    x = video.astype(np.float32).mean(-1) / 255.0  # [T, H, W] grey
    Tn, H, W = x.shape
    if Tn < 3:
        raise ValueError(f"step_features needs at least 3 frames, got {Tn}")
    d = np.diff(x, axis=0)  # [T-1, H, W]
    f = np.fft.rfft2(d)
    corr = np.fft.irfft2(f[1:] * np.conj(f[:-1]), s=(H, W))  # [T-2, H, W]: peak at D_{t+1}'s shift from D_t
    peak = corr.reshape(len(corr), -1).argmax(1)
    dy, dx = np.unravel_index(peak, (H, W))
    dy = (dy + H // 2) % H - H // 2
    dx = (dx + W // 2) % W - W // 2
    turn = np.zeros(len(dx), dtype=np.float32)
    turn[:-1] = dx[:-1] * dy[1:] - dy[:-1] * dx[1:]
    return np.stack([dx, dy, turn], 1).astype(np.float32)


def generation_throughput(cfg: SyntheticConfig = SyntheticConfig(), num_clips: int = 300,
                          num_images: int = 2000) -> dict[str, float]:
    """Single-process generation speed: {"clips_per_s", "images_per_s"} (uint8 rendering only), plus
    "items_per_s" for `SyntheticClips` items (rendering + normalization to float tensors)."""
    glyph_bank()  # build outside the timed region
    t0 = time.perf_counter()
    for i in range(num_clips):
        make_clip(cfg, "pretrain", i)
    t1 = time.perf_counter()
    for i in range(num_images):
        make_image(cfg, i)
    t2 = time.perf_counter()
    ds = SyntheticClips("pretrain", num_clips, cfg)
    for i in range(num_clips):
        ds[i]
    t3 = time.perf_counter()
    return {"clips_per_s": num_clips / (t1 - t0), "images_per_s": num_images / (t2 - t1),
            "items_per_s": num_clips / (t3 - t2)}
