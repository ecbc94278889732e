"""Losses (mvd_reference.md section 3; MAE norm_pix_loss; VideoMAE normalized-pixel targets) against hand loops.

Every expected value is computed here element by element in float64 from the written definitions:
- Smooth L1 with threshold beta: 0.5 x^2 / beta if |x| < beta, else |x| - 0.5 beta; mean over tokens x channels;
- optional target LayerNorm without affine: (y - mean) / sqrt(biased var + 1e-6) over the channels;
- total distillation loss = lambda_img * L_img + lambda_vid * L_vid;
- MAE targets: patch values in (p, q, c) order, normalized over the patch's p*p*C values with the UNBIASED
  variance: (x - mean) / (var + 1e-6) ** 0.5;
- VideoMAE targets: undo the ImageNet normalization, tubelet values in (t, p, q) order per channel, each channel
  normalized over t*p*q values by (x - mean) / (unbiased std + 1e-6), flattened (t p q) then c;
- pixel loss: MSE, mean over everything.
"""
from __future__ import annotations

import math

import pytest
import torch

import mvd_lib  # noqa: F401
from mvd_lib.losses import (IMAGENET_MEAN, IMAGENET_STD, distillation_loss, feature_loss, image_pixel_targets,
                            pixel_loss, video_pixel_targets, video_raw_pixels)


def smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def mean(vals: list[float]) -> float:
    return sum(vals) / len(vals)


def unbiased_var(vals: list[float]) -> float:
    m = mean(vals)
    return sum((v - m) ** 2 for v in vals) / (len(vals) - 1)


# ----------------------------------------------------------------------------------------------- feature loss
# differences pred - target; |x| < 1 and |x| >= 1 both present (and the boundary |x| = 1 exactly)
DIFFS = [[[0.5, -2.0, 0.0], [1.0, -0.3, 3.5]]]  # [B=1, N=2, D=3]


def test_smooth_l1_beta_1_by_hand():
    """beta = 1: 0.5 x^2 below 1, |x| - 0.5 from 1 on; mean of the 6 terms."""
    target = torch.tensor([[[1.0, 2.0, -1.0], [0.25, 4.0, -3.0]]])
    pred = target + torch.tensor(DIFFS)
    # 0.125 + 1.5 + 0 + 0.5 + 0.045 + 3.0 = 5.17 over 6 terms
    expected = (0.125 + 1.5 + 0.0 + 0.5 + 0.045 + 3.0) / 6
    assert math.isclose(feature_loss(pred, target).item(), expected, rel_tol=1e-6)
    assert math.isclose(feature_loss(pred, target, beta=1.0).item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("beta", [2.0, 0.4])
def test_smooth_l1_other_beta_by_hand(beta: float):
    """Another beta moves the quadratic/linear threshold and scales the quadratic part by 1/beta."""
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor(DIFFS)
    expected = mean([smooth_l1(x, beta) for row in DIFFS[0] for x in row])
    assert math.isclose(feature_loss(pred, target, beta=beta).item(), expected, rel_tol=1e-6)
    # and it differs from the beta = 1 value (the test would notice a beta that is ignored)
    assert not math.isclose(expected, mean([smooth_l1(x, 1.0) for row in DIFFS[0] for x in row]), rel_tol=1e-3)


def test_feature_loss_is_mean_over_tokens_and_channels():
    """[B, N, D] -> mean over all B*N*D terms (not a sum over channels, not a per-sample mean of sums)."""
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 4, generator=g) * 2
    target = torch.randn(2, 3, 4, generator=g)
    terms = [smooth_l1((pred[b, n, d] - target[b, n, d]).item(), 1.0) for b in range(2) for n in range(3) for d in range(4)]
    assert math.isclose(feature_loss(pred, target).item(), sum(terms) / 24, rel_tol=1e-5)


def test_feature_loss_raw_targets_by_default():
    """No target normalization unless asked: a target that is already a shifted copy of pred gives |shift| - 0.5."""
    pred = torch.zeros(1, 4, 8)
    target = torch.full((1, 4, 8), 3.0)
    assert math.isclose(feature_loss(pred, target).item(), 2.5, rel_tol=1e-6)


def test_norm_target_layernorm_without_affine():
    """norm_target: targets become (y - mean_c) / sqrt(var_c + 1e-6) per token (biased var, no affine);
    predictions are left as they are."""
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 5, generator=g) * 4 + 1.5
    pred = torch.randn(2, 3, 5, generator=g)
    terms = []
    for b in range(2):
        for n in range(3):
            ys = target[b, n].double().tolist()
            m = mean(ys)
            var = sum((y - m) ** 2 for y in ys) / len(ys)  # biased, as LayerNorm
            for d in range(5):
                y_hat = (ys[d] - m) / math.sqrt(var + 1e-6)
                terms.append(smooth_l1(pred[b, n, d].item() - y_hat, 1.0))
    got = feature_loss(pred, target, norm_target=True).item()
    assert math.isclose(got, mean(terms), rel_tol=1e-5)
    assert not math.isclose(got, feature_loss(pred, target).item(), rel_tol=1e-3)


def test_norm_target_eps_is_1e_6():
    """A token whose channels differ by ~1e-3 (var ~ 1e-6): the eps inside the sqrt halves the spread."""
    target = torch.tensor([[[0.0, 2e-3, 0.0, 2e-3]]])  # mean 1e-3, biased var 1e-6
    pred = torch.zeros(1, 1, 4)
    y_hat = 1e-3 / math.sqrt(1e-6 + 1e-6)  # |normalized value| for every channel
    expected = smooth_l1(y_hat, 1.0)  # all four terms equal
    assert math.isclose(feature_loss(pred, target, norm_target=True).item(), expected, rel_tol=1e-3)


def test_distillation_loss_weights():
    """Total = lambda_img * L_img + lambda_vid * L_vid, with the per-branch Smooth L1 values returned too."""
    g = torch.Generator().manual_seed(2)
    preds = {"img": torch.randn(2, 3, 4, generator=g), "vid": torch.randn(2, 3, 6, generator=g)}
    targets = {"img": torch.randn(2, 3, 4, generator=g), "vid": torch.randn(2, 3, 6, generator=g) * 3}
    hand = {
        k: mean([smooth_l1(x, 1.0) for x in (preds[k] - targets[k]).flatten().tolist()]) for k in ("img", "vid")
    }
    total, parts = distillation_loss(preds, targets, {"img": 0.3, "vid": 2.0})
    assert math.isclose(parts["img"].item(), hand["img"], rel_tol=1e-5)
    assert math.isclose(parts["vid"].item(), hand["vid"], rel_tol=1e-5)
    assert math.isclose(total.item(), 0.3 * hand["img"] + 2.0 * hand["vid"], rel_tol=1e-5)
    total_1, _ = distillation_loss(preds, targets, {"img": 1.0, "vid": 1.0})
    assert math.isclose(total_1.item(), hand["img"] + hand["vid"], rel_tol=1e-5)


def test_distillation_loss_needs_a_target_per_branch():
    preds = {"img": torch.zeros(1, 2, 3), "vid": torch.zeros(1, 2, 3)}
    with pytest.raises(KeyError):
        distillation_loss(preds, {"img": torch.zeros(1, 2, 3)}, {"img": 1.0, "vid": 1.0})


# ----------------------------------------------------------------------------------------------- MAE pixel targets
def mae_patch_values(img: torch.Tensor, p: int, hi: int, wi: int) -> list[float]:
    """Values of patch (hi, wi) of img [C, H, W] in (p, q, c) order (MAE patchify)."""
    C = img.shape[0]
    return [img[c, hi * p + i, wi * p + j].item() for i in range(p) for j in range(p) for c in range(C)]


def mae_normalize(vals: list[float]) -> list[float]:
    m, var = mean(vals), unbiased_var(vals)
    return [(v - m) / (var + 1e-6) ** 0.5 for v in vals]


def test_image_pixel_targets_every_patch_non_square():
    """[B, C, H, W] = [2, 3, 4, 6], p = 2: L = 2 x 3 patches in row-major order, each [p*p*C = 12] in (p, q, c)
    order, normalized with the unbiased variance."""
    g = torch.Generator().manual_seed(3)
    imgs = torch.randn(2, 3, 4, 6, generator=g) * torch.tensor([1.0, 3.0, 0.5])[None, :, None, None]
    out = image_pixel_targets(imgs, 2)
    assert out.shape == (2, 6, 12)
    for b in range(2):
        for hi in range(2):
            for wi in range(3):
                expected = torch.tensor(mae_normalize(mae_patch_values(imgs[b], 2, hi, wi)))
                torch.testing.assert_close(out[b, hi * 3 + wi].double(), expected.double(), atol=1e-5, rtol=1e-5)


def test_image_pixel_targets_known_patch_unbiased_variance():
    """Patch holding 0..11 in (p, q, c) order: mean 5.5, UNBIASED variance 13 (biased would be 143/12)."""
    img = torch.zeros(1, 3, 2, 2)
    k = 0
    for i in range(2):
        for j in range(2):
            for c in range(3):
                img[0, c, i, j] = float(k)
                k += 1
    out = image_pixel_targets(img, 2)[0, 0]
    expected = [(v - 5.5) / math.sqrt(13 + 1e-6) for v in range(12)]
    torch.testing.assert_close(out.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=1e-6)


def test_image_pixel_targets_eps_inside_the_sqrt():
    """Tiny spread (values 1e-4 * k): (var + 1e-6) ** 0.5 is about 3x the std, so the result is ~1/3 of a
    plain z-score; adding eps to the std instead would give a near-unit z-score."""
    img = torch.zeros(1, 3, 2, 2)
    vals = []
    k = 0
    for i in range(2):
        for j in range(2):
            for c in range(3):
                img[0, c, i, j] = 1e-4 * k
                vals.append(1e-4 * k)
                k += 1
    out = image_pixel_targets(img, 2)[0, 0]
    m, var = mean(vals), unbiased_var(vals)
    expected = [(v - m) / (var + 1e-6) ** 0.5 for v in vals]
    torch.testing.assert_close(out.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-3, rtol=1e-3)
    assert abs(out[0].item()) < 0.6  # z-score would be ~1.52


# ----------------------------------------------------------------------------------------------- VideoMAE targets
def normalize_clip(raw: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalize raw [B, 3, T, H, W] pixels in [0, 1] (what the model is fed), in float32."""
    m = torch.tensor(IMAGENET_MEAN)[None, :, None, None, None]
    s = torch.tensor(IMAGENET_STD)[None, :, None, None, None]
    return ((raw - m) / s).float()


def unnormalize_clip(x: torch.Tensor) -> torch.Tensor:
    """x * std + mean per channel, float32 (the de-normalization the spec prescribes)."""
    m = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[None, :, None, None, None]
    s = torch.tensor(IMAGENET_STD, dtype=torch.float32)[None, :, None, None, None]
    return x.float() * s + m


def videomae_tubelet_target(raw: torch.Tensor, b: int, ti: int, hi: int, wi: int, p: int, tub: int) -> list[float]:
    """Expected target of tubelet (ti, hi, wi): per channel, (t, p, q) values normalized with unbiased std + 1e-6,
    then flattened with the (t p q) index outer and the channel inner."""
    C = raw.shape[1]
    per_c = []
    for c in range(C):
        vals = [raw[b, c, ti * tub + dt, hi * p + i, wi * p + j].item()
                for dt in range(tub) for i in range(p) for j in range(p)]
        m, sd = mean(vals), math.sqrt(unbiased_var(vals))
        per_c.append([(v - m) / (sd + 1e-6) for v in vals])
    return [per_c[c][k] for k in range(tub * p * p) for c in range(C)]


def test_video_pixel_targets_every_tubelet_non_square():
    """[B, C, T, H, W] = [2, 3, 4, 4, 6], tubelet 2, p = 2: N = 2*2*3 tubelets in (t, h, w) order, each
    [t*p*p*C = 24] laid out (t p q) then c, each channel normalized on its own."""
    g = torch.Generator().manual_seed(4)
    raw = torch.rand(2, 3, 4, 4, 6, generator=g, dtype=torch.float64)
    raw[:, 1] = raw[:, 1] * 0.2 + 0.4  # channels with different spreads
    out = video_pixel_targets(normalize_clip(raw), patch=2, tubelet=2)
    assert out.shape == (2, 12, 24)
    for b in range(2):
        for ti in range(2):
            for hi in range(2):
                for wi in range(3):
                    n = (ti * 2 + hi) * 3 + wi
                    expected = torch.tensor(videomae_tubelet_target(raw, b, ti, hi, wi, 2, 2), dtype=torch.float64)
                    torch.testing.assert_close(out[b, n].double(), expected, atol=1e-4, rtol=1e-4)


def test_video_pixel_targets_channels_are_normalized_separately():
    """A tubelet whose channels have different offsets and scales: each channel of the target has mean 0 and
    unbiased std ~1 on its own (a joint normalization over all t*p*q*C values would not)."""
    raw = torch.zeros(1, 3, 2, 2, 2, dtype=torch.float64)
    base = torch.arange(8, dtype=torch.float64).reshape(2, 2, 2) / 10
    raw[0, 0], raw[0, 1], raw[0, 2] = base, 0.9 - 0.3 * base, 0.1 + 0.05 * base ** 2
    out = video_pixel_targets(normalize_clip(raw), patch=2, tubelet=2)[0, 0].double()  # [8 * 3]
    per_channel = out.reshape(8, 3)  # (t p q) outer, c inner
    for c in range(3):
        assert abs(per_channel[:, c].mean().item()) < 1e-5
        assert math.isclose(per_channel[:, c].std(unbiased=True).item(), 1.0, rel_tol=1e-3)
    expected = torch.tensor(videomae_tubelet_target(raw, 0, 0, 0, 0, 2, 2), dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_video_pixel_targets_undo_imagenet_normalization_and_eps_on_std():
    """Raw spreads of ~1e-5 make the 1e-6 eps visible: the result must match normalizing the DE-normalized pixels
    with (std + 1e-6). Skipping the de-normalization (std 1/0.229 larger) or putting eps under the sqrt
    changes the values by >= 3%."""
    raw = torch.zeros(1, 3, 2, 2, 2, dtype=torch.float64)
    k = torch.arange(8, dtype=torch.float64).reshape(2, 2, 2)
    raw[0, 0] = 1e-5 * k  # tiny spread near 0: eps is ~4% of the std
    raw[0, 1] = 0.3 + 0.01 * k
    raw[0, 2] = 0.7 - 0.02 * k
    fed = normalize_clip(raw)
    out = video_pixel_targets(fed, patch=2, tubelet=2)[0, 0].double()
    expected = torch.tensor(videomae_tubelet_target(unnormalize_clip(fed).double(), 0, 0, 0, 0, 2, 2),
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)
    # the wrong alternatives are far away on channel 0
    sd = math.sqrt(unbiased_var((1e-5 * k).flatten().tolist()))
    v0 = (0.0 - 3.5e-5)
    assert abs(out[0].item() - v0 / (sd + 1e-6)) < 1e-2 * abs(v0 / (sd + 1e-6))
    assert abs(out[0].item() - v0 / (sd + 0.229e-6)) > 2e-2 * abs(v0 / (sd + 1e-6))  # no de-normalization
    assert abs(out[0].item() - v0 / math.sqrt(sd ** 2 + 1e-6)) > 0.5  # eps under the sqrt


# ----------------------------------------------------------------------------------------------- pixel loss
def test_pixel_loss_is_mse_mean():
    g = torch.Generator().manual_seed(5)
    pred, target = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    expected = mean([(a - b) ** 2 for a, b in zip(pred.flatten().tolist(), target.flatten().tolist())])
    assert math.isclose(pixel_loss(pred, target).item(), expected, rel_tol=1e-5)


def test_losses_reject_shape_mismatch():
    with pytest.raises(ValueError):
        pixel_loss(torch.zeros(1, 2, 3), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError):
        feature_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


def test_video_raw_pixels_are_the_de_normalized_tubelets_in_target_order():
    """--normlize_target off: the target is each tubelet's pixels in [0, 1], in the order of the normalized
    targets (so the two differ exactly by the per-tubelet, per-channel normalization)."""
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(2, 3, 4, 8, 8, generator=g, dtype=torch.float64)
    fed = normalize_clip(raw)
    out = video_raw_pixels(fed, patch=4, tubelet=2).double()  # [2, 2*2*2, 2*4*4*3]
    assert out.shape == (2, 8, 96)
    torch.testing.assert_close(out.reshape(2, 8, 32, 3).amin(), raw.amin(), atol=1e-5, rtol=0)
    x = out.reshape(2, 8, 32, 3)
    normalized = (x - x.mean(2, keepdim=True)) / (x.var(2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    torch.testing.assert_close(normalized.flatten(2), video_pixel_targets(fed, patch=4, tubelet=2).double(),
                               atol=1e-4, rtol=1e-4)
    # tubelet 0 is frames 0-1, rows 0-3, columns 0-3 of the raw clip
    torch.testing.assert_close(x[0, 0, :, 0], raw[0, 0, 0:2, 0:4, 0:4].flatten(), atol=1e-5, rtol=0)
