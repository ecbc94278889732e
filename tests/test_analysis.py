"""Analysis arrays: known answers for cross-frame similarity, reconstructions, target maps, attention and curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvd_lib import analysis as A
from mvd_lib.masking import mask_to_pixels
from mvd_lib.build import build_distillation, build_image_teacher, build_mae, build_video_teacher, build_videomae
from mvd_lib.config import vit_config
from mvd_lib.distill import teacher_targets
from mvd_lib.losses import (image_pixel_targets, image_pixel_targets_inverse, patchify_images, patchify_videos,
                            unpatchify_images, unpatchify_videos, video_pixel_targets, video_pixel_targets_inverse)
from mvd_lib.mae import MAEPretrain
from mvd_lib.masking import gather_masked, masked_count, random_mask, tube_mask
from mvd_lib.rng import generator
from mvd_lib.synthetic import SyntheticClips, SyntheticConfig
from mvd_lib.videomae import VideoMAEPretrain
from mvd_lib.vit import VideoViT

NANO = vit_config("vit_nano", num_frames=4, img_size=16)  # grid (2, 4, 4), D = 64, patch 4, tubelet 2
NANO8 = vit_config("vit_nano", num_frames=8, img_size=16)  # grid (4, 4, 4)


def clips(n: int, frames: int = 4, seed: int = 0) -> torch.Tensor:
    """[n, 3, frames, 16, 16] normal noise (ImageNet-normalized-like values)."""
    return torch.randn(n, 3, frames, 16, 16, generator=generator(seed))


# ================================================================================ 1. cross-frame similarity
@pytest.mark.parametrize("form", A.SLOT_FORMS)
def test_identical_slots_have_raw_similarity_one(form):
    g = generator(0)
    feats = torch.randn(5, 1, 16, 8, generator=g).expand(5, 3, 16, 8)  # every slot the same feature map
    sim = A.frame_similarity(feats, form)
    np.testing.assert_allclose(sim.raw, np.ones((3, 3)), atol=1e-12)
    assert sim.num_clips == 5 and sim.form == form


def test_image_teacher_on_a_still_clip_gives_raw_similarity_one():
    teacher = build_image_teacher("vit_nano", NANO8)
    still = clips(3, 1).expand(3, 3, 8, 16, 16)  # one frame repeated: the image teacher sees identical frames
    for source in A.FEATURE_SOURCES:
        sim = A.cross_frame_similarity(teacher, still, source=source)
        assert sim.raw.shape == (4, 4)  # frames 0, 2, 4, 6: the same T' as the video models
        np.testing.assert_allclose(sim.raw, np.ones((4, 4)), atol=1e-5)
    # a video encoder adds a different position to every slot, so the same frames are not the same features
    video_sim = A.cross_frame_similarity(VideoViT(NANO8), still)
    assert video_sim.raw.min() < 0.99


@pytest.mark.parametrize("form", A.SLOT_FORMS)
def test_slot_centring_removes_a_per_slot_offset_exactly(form):
    g = generator(1)
    content = torch.randn(6, 1, 16, 8, generator=g)  # per clip, the same in every slot
    offset = 3.0 * torch.randn(1, 4, 16, 8, generator=g)  # per slot, the same in every clip
    sim = A.frame_similarity(content + offset, form)
    np.testing.assert_allclose(sim.centred, np.ones((4, 4)), atol=1e-12)
    assert sim.raw.min() < 0.9  # the offsets alone make the raw slots look different


def test_a_feature_that_rotates_with_time_gives_a_decaying_matrix():
    t, theta = 6, 0.3
    g = generator(2)
    phase = torch.rand(4, 1, 10, generator=g, dtype=torch.float64) * 2 * math.pi  # per clip and patch
    radius = 0.5 + torch.rand(4, 1, 10, generator=g, dtype=torch.float64)
    angle = phase + theta * torch.arange(t, dtype=torch.float64).reshape(1, t, 1)  # [4, T', P]
    feats = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1)  # [4, T', P, 2]
    raw = A.frame_similarity(feats, "tokens").raw
    lag = np.abs(np.arange(t)[:, None] - np.arange(t)[None])
    np.testing.assert_allclose(raw, np.cos(theta * lag), atol=1e-12)
    assert np.all(np.diff(raw[0]) < 0)  # falls off away from the diagonal


def test_zero_vectors_read_zero_and_bad_form_raises():
    feats = torch.zeros(2, 2, 3, 4)
    assert np.all(A.frame_similarity(feats).raw == 0)
    with pytest.raises(ValueError, match="slot form"):
        A.slot_similarity(feats, "flat")


def test_slot_features_sources_are_what_distillation_consumes():
    video = clips(2)
    image, vid = build_image_teacher("vit_nano", NANO), build_video_teacher("vit_nano", NANO)
    for teacher in (image, vid):
        target = A.slot_features(teacher, video, "target")
        assert target.shape == (2, 2, 16, 64)
        torch.testing.assert_close(target.reshape(2, 32, 64), teacher(video), rtol=0, atol=0)
    enc = VideoViT(NANO)
    with torch.no_grad():
        pre = VideoViT.forward(enc, video, pre_norm=True)
        torch.testing.assert_close(A.slot_features(enc, video, "target").reshape(2, 32, 64), pre)
        torch.testing.assert_close(A.slot_features(enc, video, "encoder").reshape(2, 32, 64), enc.norm(pre))
    with pytest.raises(ValueError, match="feature source"):
        A.slot_features(enc, video, "decoder")
    with pytest.raises(TypeError, match="teacher"):
        A.slot_features(torch.nn.Linear(2, 2), video, "target")


def test_cross_frame_similarity_reads_tensors_datasets_and_iterators_alike():
    cfg = SyntheticConfig(frames=4, height=16, width=16)
    ds = SyntheticClips("train", 5, cfg)
    stacked = torch.stack([ds[i]["video"] for i in range(5)])
    enc = VideoViT(NANO).train()
    a = A.cross_frame_similarity(enc, ds, batch_size=2)
    b = A.cross_frame_similarity(enc, stacked)
    c = A.cross_frame_similarity(enc, iter([stacked[:3], {"video": stacked[3]}, stacked[4]]))
    assert enc.training  # mode restored
    for other in (b, c):
        np.testing.assert_allclose(other.raw, a.raw, atol=1e-6)
        np.testing.assert_allclose(other.centred, a.centred, atol=1e-6)
    assert a.num_clips == 5 and a.raw.shape == (2, 2) and a.source == "encoder"
    np.testing.assert_allclose(np.diag(a.raw), 1.0, atol=1e-6)
    assert A.cross_frame_similarity(enc, ds, max_clips=3, batch_size=2).num_clips == 3
    first3 = A.frame_similarity(A.collect_slot_features(enc, stacked[:3]))
    np.testing.assert_allclose(A.cross_frame_similarity(enc, ds, max_clips=3, batch_size=2).raw, first3.raw, atol=1e-6)


# ================================================================================ 2. masked reconstructions
def test_unpatchify_inverts_patchify():
    g = generator(3)
    images = torch.randn(2, 3, 8, 12, generator=g)  # a non-square 2x3 patch grid
    assert torch.equal(unpatchify_images(patchify_images(images, 4), 4, (2, 3)), images)
    square = torch.randn(2, 3, 16, 16, generator=g)
    assert torch.equal(unpatchify_images(patchify_images(square, 4), 4), square)
    videos = torch.randn(2, 3, 4, 8, 12, generator=g)
    assert torch.equal(unpatchify_videos(patchify_videos(videos, 4, 2), 4, 2, (2, 2, 3)), videos)
    with pytest.raises(ValueError, match="grid"):
        unpatchify_videos(patchify_videos(videos, 4, 2), 4, 2, (2, 2, 2))


def test_undoing_the_pixel_normalization_inverts_it():
    g = generator(4)
    images = torch.randn(2, 3, 16, 16, generator=g)
    back = image_pixel_targets_inverse(image_pixel_targets(images, 4), images, 4)
    torch.testing.assert_close(back, patchify_images(images, 4), atol=1e-5, rtol=1e-5)
    videos = torch.randn(2, 3, 4, 16, 16, generator=g)
    back = video_pixel_targets_inverse(video_pixel_targets(videos, 4, 2), videos, 4, 2)
    torch.testing.assert_close(back, patchify_videos(videos, 4, 2), atol=1e-5, rtol=1e-5)


def pixel_models() -> dict[str, torch.nn.Module]:
    student, _ = build_distillation("vit_nano", branches=("vid",), pixel=True, num_frames=4, img_size=16)
    return {"mae": build_mae("vit_nano", NANO), "videomae": build_videomae("vit_nano", NANO), "student": student}


def model_input(name: str) -> torch.Tensor:
    return clips(2)[:, :, 0] if name == "mae" else clips(2)


@pytest.mark.parametrize("name", ["mae", "videomae", "student"])
def test_reconstruction_with_nothing_masked_is_the_input(name):
    model = pixel_models()[name]
    x = model_input(name)
    n = model.num_patches if name == "mae" else NANO.num_tokens
    assert torch.equal(A.reconstruct(model, x, torch.zeros(2, n, dtype=torch.bool)), x)


@pytest.mark.parametrize("name", ["mae", "videomae", "student"])
def test_reconstruction_keeps_visible_patches_and_fills_masked_ones(name):
    model = pixel_models()[name].train()
    x = model_input(name)
    mask = A.reconstruction_mask(model, 2, 0.75, generator(5))
    out = A.reconstruct(model, x, mask)
    assert model.training and out.shape == x.shape and torch.isfinite(out).all()
    patches = (lambda v: patchify_images(v, 4)) if name == "mae" else (lambda v: patchify_videos(v, 4, 2).flatten(2))
    assert torch.equal(patches(out)[~mask], patches(x)[~mask])  # visible: the input, bit for bit
    assert not torch.allclose(patches(out)[mask], patches(x)[mask], atol=1e-3)  # masked: an untrained guess


class OracleMAE(MAEPretrain):
    """Predicts exactly the normalized-pixel targets."""

    def forward(self, images, mask, all_patches=False):
        return gather_masked(image_pixel_targets(images, self.cfg.patch_size), mask)


class OracleVideoMAE(VideoMAEPretrain):
    def forward(self, video, mask):
        return gather_masked(video_pixel_targets(video, self.cfg.patch_size, self.cfg.tubelet_size), mask)


def test_an_oracle_that_predicts_the_targets_reconstructs_the_input():
    mae = build_mae("vit_nano", NANO)
    oracle = OracleMAE(mae.cfg, mae.decoder_cfg)
    images = clips(2)[:, :, 0]
    mask = A.reconstruction_mask(oracle, 2, 0.9, 0)
    torch.testing.assert_close(A.reconstruct(oracle, images, mask), images, atol=1e-5, rtol=1e-5)
    vm = build_videomae("vit_nano", NANO)
    oracle = OracleVideoMAE(vm.cfg, vm.decoder_cfg)
    video = clips(2)
    mask = A.reconstruction_mask(oracle, 2, 0.9, 0)
    torch.testing.assert_close(A.reconstruct(oracle, video, mask), video, atol=1e-5, rtol=1e-5)
    student = pixel_models()["student"]
    student.decode = lambda name, latent, m: gather_masked(video_pixel_targets(video, 4, 2), m)
    torch.testing.assert_close(A.reconstruct(student, video, mask), video, atol=1e-5, rtol=1e-5)


def test_masked_input_greys_exactly_the_masked_patches():
    video = clips(2)
    mask = tube_mask(2, NANO.grid, 0.5, generator(6))
    view = A.masked_input(video, mask, 4, 2)
    grey = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    pix = mask_to_pixels(mask, NANO.grid, 2, 4).unsqueeze(1)  # [B, 1, T, H, W]
    assert int(pix.sum()) == int(mask.sum()) * 2 * 16
    assert torch.equal(view[pix.expand_as(view)], grey.reshape(1, 3, 1, 1, 1).expand_as(view)[pix.expand_as(view)])
    assert torch.equal(view[~pix.expand_as(view)], video[~pix.expand_as(view)])
    images = video[:, :, 0]
    m2 = random_mask(2, 16, 0.5, generator(7))
    assert int((A.masked_input(images, m2, 4) != images).any(dim=1).sum()) == int(m2.sum()) * 16
    with pytest.raises(ValueError, match="tubelet"):
        A.masked_input(video, mask, 4)


def test_reconstructions_at_ratios_are_seeded():
    model = pixel_models()["videomae"]
    video = clips(1)
    runs = [A.reconstructions(model, video, (0.5, 0.75), seed=3) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.reconstruction, b.reconstruction)
        assert int(a.mask.sum()) == masked_count(NANO.grid, a.ratio)
    mae = pixel_models()["mae"]
    (r,) = A.reconstructions(mae, clips(1)[:, :, 0], (0.75,))
    assert int(r.mask.sum()) == masked_count((1, 4, 4), 0.75, "random") and r.masked.shape == (1, 3, 16, 16)


def test_reconstruction_rejects_a_student_without_pixels_and_wrong_layouts():
    student, _ = build_distillation("vit_nano", branches=("vid",), num_frames=4, img_size=16)
    mask = tube_mask(1, NANO.grid, 0.5, generator(0))
    with pytest.raises(ValueError, match="pixel branch"):
        A.reconstruct(student, clips(1), mask)
    with pytest.raises(ValueError, match="images"):
        A.reconstruct(build_mae("vit_nano", NANO), clips(1), mask)
    with pytest.raises(ValueError, match="videos"):
        A.reconstruct(build_videomae("vit_nano", NANO), clips(1)[:, :, 0], mask)
    with pytest.raises(TypeError, match="MAEPretrain"):
        A.reconstruct(VideoViT(NANO), clips(1), mask)


# ================================================================================ 3. target vs prediction
def test_cosine_error_known_values():
    g = generator(8)
    target = torch.randn(2, 8, 5, generator=g)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    grid = (2, 2, 2)
    same = A.cosine_error(gather_masked(target, mask), target, mask, grid)
    np.testing.assert_allclose(same[:, 0].numpy(), 0.0, atol=1e-12)
    err = A.cosine_error(-gather_masked(target, mask), target, mask, grid)
    assert err.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(err[:, 0].numpy(), 2.0, atol=1e-12)
    assert torch.isnan(err[:, 1]).all()


def test_pca_basis_finds_a_planted_subspace():
    g = generator(9)
    basis = torch.linalg.qr(torch.randn(16, 3, generator=g, dtype=torch.float64))[0].T  # [3, 16] orthonormal
    coeffs = torch.randn(200, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 2.0, 1.0], dtype=torch.float64)
    feats = coeffs @ basis + 7.0
    mean, comps, explained = A.pca_basis(feats)
    np.testing.assert_allclose(explained.sum().item(), 1.0, atol=1e-9)
    assert explained[0] > explained[1] > explained[2]
    np.testing.assert_allclose((comps @ comps.T).numpy(), np.eye(3), atol=1e-9)
    torch.testing.assert_close(basis @ comps.T @ comps, basis)  # the components span the planted subspace
    proj = (feats.double() - mean) @ comps.T
    rgb = A.pca_rgb(feats, mean, comps, proj.min(0).values, proj.max(0).values)
    assert rgb.min() == 0 and rgb.max() == 1


def test_target_maps_shapes_and_an_oracle_student():
    student, teachers = build_distillation("vit_nano", num_frames=4, img_size=16)
    video = clips(2)
    mask = tube_mask(2, NANO.grid, 0.5, generator(10))
    targets = teacher_targets(teachers, video)
    maps = A.target_maps(student, video, mask, targets, "img")
    assert maps.target.shape == maps.prediction.shape == (2, 2, 4, 4, 3) and maps.error.shape == (2, 2, 4, 4)
    m = maps.mask
    assert np.array_equal(m, mask.reshape(2, 2, 4, 4).numpy())
    assert np.array_equal(np.isnan(maps.error), ~m) and np.all(maps.error[m] >= 0)
    np.testing.assert_array_equal(maps.prediction[~m], maps.target[~m])
    assert not np.allclose(maps.prediction[m], maps.target[m])  # an untrained student
    blank = A.target_maps(student, video, mask, targets, "vid", unmasked="blank")
    assert np.all(blank.prediction[~m] == 1.0) and blank.branch == "vid"
    # a student that predicts its teacher exactly: same colours, zero error
    student.decode = lambda name, latent, msk: gather_masked(targets[name], msk)
    oracle = A.target_maps(student, video, mask, targets, "img", unmasked="blank")
    np.testing.assert_allclose(oracle.prediction[m], oracle.target[m], atol=1e-6)
    np.testing.assert_allclose(oracle.error[m], 0.0, atol=1e-6)
    with pytest.raises(KeyError, match="branch"):
        A.target_maps(student, video, mask, targets, "ema")
    with pytest.raises(ValueError, match="every token"):
        A.target_maps(student, video, mask, {"img": gather_masked(targets["img"], mask)}, "img")


# ================================================================================ 4. attention
def test_capturing_attention_leaves_outputs_bit_identical():
    enc = VideoViT(vit_config(NANO, drop_path=0.0)).eval()
    video = clips(2)
    with torch.no_grad():
        plain = enc(video)
        with A.capture_attention(enc) as maps:
            captured = enc(video)
        after = enc(video)
    assert torch.equal(plain, captured) and torch.equal(plain, after)
    assert len(maps) == NANO.depth and all(m.shape == (2, NANO.heads, 32, 32) for m in maps)
    assert not any(blk.attn._forward_pre_hooks for blk in enc.blocks)  # hooks removed


def test_captured_probabilities_reproduce_each_attention_layer():
    enc = VideoViT(NANO).eval()
    video = clips(2)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [blk.attn.register_forward_hook(lambda mod, args, out: seen.append((args[0], out))) for blk in enc.blocks]
    mask = tube_mask(2, NANO.grid, 0.5, generator(11))
    maps = A.attention_maps(enc, video, mask)
    for h in handles:
        h.remove()
    for blk, probs, (x, out) in zip(enc.blocks, maps, seen):
        attn = blk.attn
        B, N, D = x.shape
        assert probs.shape == (2, NANO.heads, 16, 16)  # visible tokens only
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, NANO.heads, 16))
        v = torch.nn.functional.linear(x, attn.qkv.weight, attn.qkv_bias()).reshape(B, N, 3, attn.heads, -1)[:, :, 2]
        mixed = (probs @ v.transpose(1, 2)).transpose(1, 2).reshape(B, N, D)
        torch.testing.assert_close(attn.proj(mixed), out, atol=1e-5, rtol=1e-5)


def test_mean_attention_distance_known_answers():
    grid = (3, 4, 1)
    n = 12
    eye = torch.eye(n).expand(2, 2, n, n)
    d = A.attention_distance([eye, eye], grid)
    assert d.spatial.shape == (2, 2) and np.all(d.spatial == 0) and np.all(d.temporal == 0)
    uniform = torch.full((1, 3, n, n), 1.0 / n)
    d = A.attention_distance([uniform], grid)
    # mean |i - j| over a uniform pair of positions on a line of k points is (k^2 - 1) / (3k)
    np.testing.assert_allclose(d.spatial, (16 - 1) / 12, atol=1e-12)
    np.testing.assert_allclose(d.temporal, (9 - 1) / 9, atol=1e-12)
    d = A.attention_distance([torch.full((1, 1, 4, 4), 0.25)], (1, 2, 2))
    np.testing.assert_allclose(d.spatial, (2 + math.sqrt(2)) / 4, atol=1e-12)
    with pytest.raises(ValueError, match="grid"):
        A.attention_distance([uniform], (2, 2, 2))


def test_attention_rollout_known_answers():
    n = 6
    eye = torch.eye(n).expand(2, 3, n, n)
    torch.testing.assert_close(A.attention_rollout([eye, eye, eye]), torch.eye(n, dtype=torch.float64).expand(2, n, n))
    a = torch.softmax(torch.randn(1, 2, n, n, generator=generator(12)), dim=-1)
    b = torch.softmax(torch.randn(1, 2, n, n, generator=generator(13)), dim=-1)
    step = lambda m: (m.double().mean(1) + torch.eye(n)) / 2  # rows of A sum to 1, so A + I renormalizes by 2
    torch.testing.assert_close(A.attention_rollout([a, b]), step(b) @ step(a))
    r = A.attention_rollout([a, b])
    torch.testing.assert_close(r.sum(-1), torch.ones(1, n, dtype=torch.float64))
    grid = (1, 2, 3)
    assert torch.equal(A.rollout_map(r, grid, query=4), r[:, 4].reshape(1, 1, 2, 3))
    torch.testing.assert_close(A.rollout_map(r, grid).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_attention_on_real_encoders_and_wrappers():
    video = clips(1)
    vm = build_videomae("vit_nano", NANO)
    maps = A.attention_maps(vm, video)
    assert len(maps) == NANO.depth and maps[0].shape == (1, NANO.heads, 32, 32)
    d = A.attention_distance(maps, NANO.grid)
    assert d.spatial.shape == (NANO.depth, NANO.heads) and np.all(d.temporal <= 1.0) and np.all(d.spatial > 0)
    assert len(A.attention_maps(build_video_teacher("vit_nano", NANO), video)) == NANO.depth
    with pytest.raises(TypeError, match="VideoViT"):
        A.attention_maps(build_image_teacher("vit_nano", NANO), video)


# ================================================================================ 5. curves
METRICS = {
    "loss_curve": [4.0, 3.0, 2.0, 1.0, 0.5, 0.25],
    "parts_curve": {"img": [2.0, 1.5, 1.0, 0.5, 0.25, 0.125], "vid": [2.0, 1.5, 1.0, 0.5, 0.25, 0.125]},
    "lr_curve": [1e-4, 2e-4, 3e-4, 3e-4, 2e-4, 1e-4],
    "steps_per_epoch": 2,
    "epoch_metrics": [
        {"epoch": 1, "step": 2, "probe_appearance": 30.0, "probe_motion": 20.0},
        {"epoch": 2, "step": 4},  # a probe-less epoch
        {"epoch": 3, "step": 6, "probe_appearance": 60.0, "probe_motion": 45.0, "note": "x"},
    ],
}


def test_curves_from_a_metrics_dict():
    c = A.Curves.from_metrics(METRICS)
    assert c.step.tolist() == [1, 2, 3, 4, 5, 6] and c.loss.tolist() == METRICS["loss_curve"]
    assert sorted(c.parts) == ["img", "vid"] and c.lr.tolist() == METRICS["lr_curve"]
    assert sorted(c.probes) == ["appearance", "motion"]
    steps, values = c.probes["motion"]
    assert steps.tolist() == [2, 6] and values.tolist() == [20.0, 45.0]
    assert c.epoch.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    s = c.smoothed(2)
    assert s.loss.tolist() == [4.0, 3.5, 2.5, 1.5, 0.75, 0.375] and s.lr.tolist() == c.lr.tolist()
    assert s.parts["img"].tolist() == [2.0, 1.75, 1.25, 0.75, 0.375, 0.1875]
    bare = A.Curves.from_metrics({"loss_curve": [1.0, 2.0]})
    assert bare.probes == {} and bare.lr.size == 0 and bare.steps_per_epoch is None
    with pytest.raises(ValueError, match="steps_per_epoch"):
        bare.epoch
    with pytest.raises(KeyError, match="loss_curve"):
        A.Curves.from_metrics({"lr_curve": [1.0]})
    with pytest.raises(ValueError, match="parts_curve"):
        A.Curves.from_metrics({**METRICS, "parts_curve": {"img": [1.0]}})


def test_smooth_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert A.smooth(x, 1).tolist() == x.tolist()
    assert A.smooth(x, 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert A.smooth(x, 10).tolist() == [1.0, 1.5, 2.0, 2.5]
    with pytest.raises(ValueError, match="window"):
        A.smooth(x, 0)
