"""Finetuning augmentations: presets, per-op correctness and frame consistency, determinism per
(seed, epoch, index) independent of DataLoader workers, repeated augmentation, mixup / cutmix targets."""
from __future__ import annotations

import dataclasses
import random
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import mvd_lib  # noqa: F401  (installs the torchvision guard before anything else)
from mvd_lib import augment as A
from mvd_lib.augment import (LIGHT, NONE, RAND_OPS, REFERENCE, REFERENCE_SSV2, AugmentConfig, AugmentedClips,
                             MixParams, MixupCutmix, augment_clip, augment_config, clip_generator, cube_erase,
                             hflip, rand_augment, random_resized_crop, smoothed_targets, soft_target_cross_entropy)
from mvd_lib.rng import generator


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Augmentation runs in DataLoader workers with one thread each; on a shared 2-core machine intra-op threads
    only add contention to these small tensors."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clip(seed: int = 0, t: int = 16, size: int = 32) -> torch.Tensor:
    """A normalized-looking clip [3, T, H, W] with distinct frames."""
    return torch.randn(3, t, size, size, generator=generator(seed))


def _static_clip(seed: int = 0, t: int = 8, size: int = 32) -> torch.Tensor:
    """A clip whose T frames are all the same frame, with pixels inside the valid [0, 1] range."""
    frame = torch.rand(3, 1, size, size, generator=generator(seed))
    mean = torch.tensor(A.IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(A.IMAGENET_STD)[:, None, None, None]
    return ((frame - mean) / std).expand(3, t, size, size).contiguous()


def _frames_identical(clip: torch.Tensor) -> bool:
    return bool((clip == clip[:, :1]).all())


class _Clips(Dataset):
    """Deterministic (clip, label) pairs."""

    def __init__(self, n: int = 12, t: int = 16, size: int = 32):
        self.n, self.t, self.size = n, t, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return _clip(1000 + i, self.t, self.size), i % 5


# ------------------------------------------------------------------------------------------- config


def test_reference_presets_follow_the_paper():
    r = REFERENCE
    assert (r.rand_augment_magnitude, r.rand_augment_ops, r.rand_augment_mstd) == (7.0, 4, 0.5)
    assert r.crop_scale == (0.08, 1.0) and r.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (r.flip_prob, r.erase_prob, r.erase_mode) == (0.5, 0.25, "pixel")
    assert (r.mixup_alpha, r.cutmix_alpha, r.mix_prob, r.switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert (r.label_smoothing, r.repeated_aug) == (0.1, 2) and r.mixing
    assert REFERENCE_SSV2 == dataclasses.replace(REFERENCE, flip_prob=0.0)
    assert A.LIGHT_MOTION.flip_prob == 0.0 and LIGHT.erase_prob == 0.0 and LIGHT.crop_scale == (0.5, 1.0)
    assert not NONE.mixing and NONE.rand_augment_ops == 0 and NONE.crop_scale is None


def test_overrides_are_checked():
    assert augment_config("light", flip_prob=0.0).flip_prob == 0.0
    assert augment_config(REFERENCE, crop_scale=[0.2, 1.0]).crop_scale == (0.2, 1.0)  # lists from JSON
    with pytest.raises(ValueError, match="unknown AugmentConfig field"):
        augment_config("reference", flip=0.0)
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        augment_config("heavy")
    with pytest.raises(ValueError):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(erase_mode="noise")
    with pytest.raises(ValueError, match="repeated_aug must be an int"):  # a ConfigError, like every range check
        AugmentConfig(repeated_aug=2.0)


# ------------------------------------------------------------------------------------------- clip ops


@pytest.mark.parametrize("name", RAND_OPS)
def test_every_op_keeps_shape_dtype_and_frames_consistent(name):
    clip = _static_clip(3)
    for dtype in (torch.float32, torch.float64):
        out = A.apply_op(clip.to(dtype), name, magnitude=7.0, sign=-1.0)
        assert out.shape == clip.shape and out.dtype == dtype and torch.isfinite(out).all()
        assert _frames_identical(out)
    if name not in ("AutoContrast", "Equalize"):  # these may be no-ops on some frames
        assert not torch.allclose(A.apply_op(clip, name, 7.0), clip, atol=1e-3)


def test_ops_match_pil_on_a_frame():
    """Parity with the reference's PIL ops (colour ops to 8-bit rounding, geometric ones up to the bicubic
    kernel: PIL's a=-0.5 against grid_sample's a=-0.75)."""
    Image = pytest.importorskip("PIL.Image")
    ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
    ImageOps = pytest.importorskip("PIL.ImageOps")
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)).resize((32, 32), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255  # [T=1, C, H, W]
    kw = dict(resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    m, f = 7.0, 1.0 + 0.9 * 0.7
    cases = [  # (op, sign, PIL result, max level error)
        ("AutoContrast", 1, ImageOps.autocontrast(img), 0.5),
        ("Equalize", 1, ImageOps.equalize(img), 0.5),
        ("Posterize", 1, ImageOps.posterize(img, 4 - int(0.7 * 4)), 0.5),
        ("Solarize", 1, ImageOps.solarize(img, 256 - int(0.7 * 256)), 0.5),
        ("Invert", 1, ImageOps.invert(img), 0.5),
        ("Color", 1, ImageEnhance.Color(img).enhance(f), 2),
        ("Contrast", 1, ImageEnhance.Contrast(img).enhance(f), 2),
        ("Brightness", -1, ImageEnhance.Brightness(img).enhance(2 - f), 2),
        ("Sharpness", 1, ImageEnhance.Sharpness(img).enhance(f), 2),
        ("Rotate", 1, img.rotate(0.7 * 30, **kw), 10),
        ("ShearX", 1, img.transform(img.size, Image.AFFINE, (1, 0.21, 0, 0, 1, 0), **kw), 10),
        ("ShearY", -1, img.transform(img.size, Image.AFFINE, (1, 0, 0, -0.21, 1, 0), **kw), 10),
        ("TranslateX", 1, img.transform(img.size, Image.AFFINE, (1, 0, 0.315 * 32, 0, 1, 0), **kw), 10),
        ("TranslateY", -1, img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, -0.315 * 32), **kw), 10),
    ]
    for name, sign, pil, tol in cases:
        ours = A._pixel_op(x, name, m, float(sign))[0].permute(1, 2, 0).numpy() * 255
        err = np.abs(ours - np.asarray(pil, dtype=np.float64))
        assert err.max() <= tol and err.mean() <= 2.5, (name, err.max(), err.mean())


def test_rand_augment_same_ops_on_all_frames_and_seeded():
    clip = _static_clip(5)
    changed = 0
    for s in range(40):
        out = rand_augment(clip, 4, 7.0, 0.5, generator(s))
        assert out.shape == clip.shape and out.dtype == clip.dtype and _frames_identical(out)
        assert torch.equal(out, rand_augment(clip, 4, 7.0, 0.5, generator(s)))
        changed += not torch.equal(out, clip)
    assert changed >= 30  # P(no op fires) = 1/16
    assert rand_augment(clip, 0, 7.0, 0.5, generator(0)) is clip


def test_random_resized_crop_shapes_bounds_and_identity():
    clip = _clip(0, t=4, size=40)
    for s in range(50):
        top, left, h, w = A.crop_params(40, 48, (0.08, 1.0), (3 / 4, 4 / 3), generator(s))
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 48 and h > 0 and w > 0
    out = random_resized_crop(clip, 24, (0.08, 1.0), (3 / 4, 4 / 3), generator(1))
    assert out.shape == (3, 4, 24, 24) and out.dtype == clip.dtype
    assert torch.equal(random_resized_crop(clip, 40, (1.0, 1.0), (1.0, 1.0), generator(2)), clip)


def test_flip_probability_zero_never_flips():
    clip = _clip(1)
    assert all(hflip(clip, 0.0, generator(s)) is clip for s in range(100))
    assert torch.equal(hflip(clip, 1.0, generator(0)), clip.flip(-1))
    flips = sum(torch.equal(hflip(clip, 0.5, generator(s)), clip.flip(-1)) for s in range(200))
    assert 70 < flips < 130
    # through the whole pipeline: NONE with flip 0 is the identity, whatever the seed
    assert all(torch.equal(augment_clip(clip, NONE, generator(s)), clip) for s in range(20))


def test_cube_erase_same_box_on_every_frame():
    clip = _clip(2)
    erased = 0
    for s in range(30):
        out = cube_erase(clip, 1.0, generator(s), mode="pixel")
        diff = out != clip  # [C, T, H, W]
        if not diff.any():
            continue
        erased += 1
        box = diff.any(0)  # [T, H, W]
        assert (box == box[:1]).all()  # the same box on every frame
        rows, cols = box[0].any(1).nonzero().flatten(), box[0].any(0).nonzero().flatten()
        assert box[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
        area = box[0].float().mean()
        assert 0.015 <= area <= 0.36
        region = out[:, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert not torch.equal(region[:, 0], region[:, 1])  # pixel mode: fresh N(0,1) per frame
    assert erased == 30
    const = cube_erase(clip, 1.0, generator(0), mode="const")
    assert ((const == 0) | (const == clip)).all() and (const == 0).any()
    assert cube_erase(clip, 0.0, generator(0)) is clip
    rate = sum(not torch.equal(cube_erase(clip, 0.25, generator(s)), clip) for s in range(200)) / 200
    assert 0.15 < rate < 0.35


def test_pipeline_keeps_frames_consistent():
    clip = _static_clip(7)
    cfg = dataclasses.replace(REFERENCE, erase_mode="const", erase_prob=0.5)
    for s in range(20):
        out = augment_clip(clip, cfg, generator(s), out_size=24)
        assert out.shape == (3, 8, 24, 24) and _frames_identical(out)


def test_global_rngs_untouched():
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    augment_clip(_clip(0), REFERENCE, generator(0))
    MixupCutmix(REFERENCE, 5)(torch.randn(4, 3, 2, 8, 8, generator=generator(2)), torch.arange(4), generator(1))
    assert torch.equal(before[0], torch.get_rng_state())
    assert (before[1] == np.random.get_state()[1]).all() and before[2] == random.getstate()


# ------------------------------------------------------------------------------------------- dataset wrapper


def test_same_seed_epoch_index_same_clip_and_other_epochs_differ():
    data = AugmentedClips(_Clips(), REFERENCE, seed=3)
    a, la = data[4]
    b, lb = data[4]
    assert torch.equal(a, b) and torch.equal(la, lb)
    data.set_epoch(1)
    c, _ = data[4]
    assert not torch.equal(a, c)
    other_seed = AugmentedClips(_Clips(), REFERENCE, seed=4)
    assert not torch.equal(a, other_seed[4][0])
    assert torch.equal(A.clip_generator(3, 0, 4).get_state(), clip_generator(3, 0, 4).get_state())


def test_repeated_augmentation_shapes_and_collate():
    data = AugmentedClips(_Clips(), REFERENCE, seed=0, out_size=24)
    video, labels = data[2]
    assert video.shape == (2, 3, 16, 24, 24) and labels.tolist() == [2, 2]  # video [r, C, T, H, W], labels [r]
    assert not torch.equal(video[0], video[1])  # two independent augmentations
    videos, flat_labels = data.collate([data[0], data[1], data[2]])
    assert videos.shape == (6, 3, 16, 24, 24) and flat_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(videos[4], video[0]) and torch.equal(videos[5], video[1])

    class Dicts(_Clips):
        def __getitem__(self, i):
            clip, label = super().__getitem__(i)
            return {"video": clip, "label": label, "name": f"clip{i}"}

    ddata = AugmentedClips(Dicts(), REFERENCE, seed=0, out_size=24)
    batch = ddata.collate([ddata[0], ddata[1]])
    assert batch["video"].shape == (4, 3, 16, 24, 24) and batch["label"].tolist() == [0, 0, 1, 1]
    assert batch["name"] == ["clip0", "clip0", "clip1", "clip1"]
    assert torch.equal(batch["video"][2:], data[1][0])  # same stream whatever the item layout
    class Tensors(_Clips):
        def __getitem__(self, i):
            return super().__getitem__(i)[0]

    tdata = AugmentedClips(Tensors(), REFERENCE, seed=0, out_size=24)
    assert torch.equal(tdata.collate([tdata[1], tdata[2]]), torch.cat([data[1][0], data[2][0]]))
    single = AugmentedClips(_Clips(), LIGHT, seed=0)
    v, label = single[1]
    assert v.shape == (3, 16, 32, 32) and label == 1


def test_independent_of_dataloader_workers():
    def epoch_batches(num_workers):
        data = AugmentedClips(_Clips(n=8, t=4, size=16), REFERENCE, seed=11)
        data.set_epoch(2)
        loader = DataLoader(data, batch_size=2, shuffle=False, num_workers=num_workers, collate_fn=data.collate)
        return [b for b in loader]

    serial, parallel = epoch_batches(0), epoch_batches(2)
    assert len(serial) == len(parallel) == 4
    for (v0, l0), (v2, l2) in zip(serial, parallel):
        assert v0.shape == (4, 3, 4, 16, 16) and torch.equal(v0, v2) and torch.equal(l0, l2)


# ------------------------------------------------------------------------------------------- mixup, targets


def test_label_smoothing_values():
    t = smoothed_targets(torch.tensor([2, 0]), 5, 0.1)
    assert t.shape == (2, 5) and t.dtype == torch.float32
    assert t[0, 2].item() == pytest.approx(1 - 0.1 + 0.1 / 5) and t[0, 0].item() == pytest.approx(0.1 / 5)
    assert torch.allclose(t.sum(1), torch.ones(2))
    logits = torch.randn(2, 5, generator=generator(0))
    expected = F.cross_entropy(logits, torch.tensor([2, 0]), label_smoothing=0.1)
    assert soft_target_cross_entropy(logits, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_mixup_matches_hand_computation():
    k, lam = 4, 0.7
    videos = torch.randn(4, 3, 2, 8, 8, generator=generator(0))
    labels = torch.tensor([0, 1, 2, 3])
    mix = MixupCutmix(REFERENCE, k)
    keep = videos.clone()
    out, targets = mix.apply(videos, labels, MixParams(lam))
    assert torch.equal(videos, keep)  # input untouched
    assert torch.allclose(out, lam * videos + (1 - lam) * videos.flip(0))
    off, on = 0.1 / k, 1 - 0.1 + 0.1 / k
    hand = torch.full((4, k), off)
    for i in range(4):
        hand[i, labels[i]] += lam * (on - off)
        hand[i, labels[3 - i]] += (1 - lam) * (on - off)
    assert torch.allclose(targets, hand) and torch.allclose(targets.sum(1), torch.ones(4))


def test_cutmix_box_is_the_same_on_all_frames_and_lambda_is_its_area():
    videos = torch.randn(4, 3, 5, 16, 16, generator=generator(1))
    labels = torch.tensor([0, 1, 2, 3])
    cut_only = dataclasses.replace(REFERENCE, mixup_alpha=0.0)
    mix = MixupCutmix(cut_only, 4)
    params = mix.sample((16, 16), generator(5))
    assert params.box is not None
    y0, y1, x0, x1 = params.box
    assert params.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 256)
    out, targets = mix.apply(videos, labels, params)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(out[..., inside], videos.flip(0)[..., inside])  # every frame, same box
    assert torch.equal(out[..., ~inside], videos[..., ~inside])
    assert torch.allclose(targets.sum(1), torch.ones(4))


def test_mixup_draws_are_seeded_and_both_modes_occur():
    videos, labels = torch.randn(6, 3, 2, 8, 8, generator=generator(0)), torch.arange(6) % 3
    mix = MixupCutmix(REFERENCE, 3)
    a = mix(videos, labels, A.batch_generator(0, 1, 7))
    b = mix(videos, labels, A.batch_generator(0, 1, 7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    draws = [mix.sample((8, 8), generator(s)) for s in range(200)]
    cutmix = sum(d.box is not None for d in draws)
    assert 70 < cutmix < 130  # switch_prob 0.5
    assert all(0.0 <= d.lam <= 1.0 for d in draws)
    plain = MixupCutmix(NONE, 3)
    v, t = plain(videos, labels, generator(0))
    assert v is videos and torch.equal(t, F.one_hot(labels, 3).float())


# ------------------------------------------------------------------------------------------- speed


def test_throughput_on_laptop_clips():
    """Clips/s of the per-clip pipeline on 16x32x32 clips (one thread, as in a DataLoader worker). Printed, not
    asserted; run with -s to see it."""
    data = _Clips(n=64)
    clips = [data[i][0] for i in range(len(data))]
    for name, cfg, n in (("LIGHT", LIGHT, 64), ("REFERENCE", REFERENCE, 32)):
        wrapped = AugmentedClips(data, cfg, seed=0)
        wrapped[0]  # warm-up
        t0 = time.perf_counter()
        for i in range(n):
            wrapped.augment(clips[i], clip_generator(0, 0, i))
        dt = time.perf_counter() - t0
        print(f"\n{name}: {n / dt:.0f} source clips/s, {n * cfg.repeated_aug / dt:.0f} augmented clips/s "
              f"(16x32x32, 1 thread, repeated_aug={cfg.repeated_aug})")
