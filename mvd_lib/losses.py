"""Losses: MVD's feature-distillation loss and the normalized-pixel losses of MAE and VideoMAE.

- Feature loss (MVD, mvd_reference.md section 3, `engine_for_pretraining.py`): Smooth L1 (beta 1.0), mean
  over masked tokens x channels, against RAW teacher features; an optional LayerNorm without affine on the
  targets (`norm_target`, off in every released run). Total = sum_k lambda_k * L_k (lambda_img = lambda_vid = 1).
- Pixel loss: MSE, mean over masked tokens x values, against per-patch normalized pixels:
  * images (MAE `norm_pix_loss`): patch values in (p, q, c) order, normalized over all p*p*C values of the patch;
  * videos (VideoMAE): the ImageNet normalization is undone, tubelet values in (t, p, q) x c order, each
    channel normalized over the tubelet's t*p*q values, then flattened to t*p*q*C.
Both use the unbiased variance and eps 1e-6, as the references do. Their inverses (`*_pixel_targets_inverse`,
with the original patch's statistics) and `unpatchify_*` turn predictions back into pixels for display.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, norm_target: bool = False) -> torch.Tensor:
    """Smooth L1 between predicted and teacher features. pred, target: [B, N_mask, D] -> scalar (mean)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    target = target.to(pred.dtype)
    if norm_target:
        target = F.layer_norm(target, target.shape[-1:], eps=1e-6)
    return F.smooth_l1_loss(pred, target, beta=beta)


def distillation_loss(
    preds: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    beta: float = 1.0,
    norm_target: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of feature losses over branches (e.g. "img", "vid"). Returns (total, per-branch losses)."""
    missing = set(preds) - set(targets)
    if missing:
        raise KeyError(f"no targets for branch(es) {sorted(missing)}")
    parts = {k: feature_loss(preds[k], targets[k], beta, norm_target) for k in preds}
    total = sum(weights.get(k, 1.0) * v for k, v in parts.items())
    return total, parts


def patchify_images(images: torch.Tensor, patch: int) -> torch.Tensor:
    """MAE patchify. images: [B, C, H, W] -> [B, L, p*p*C], values in (p, q, c) order."""
    B, C, H, W = images.shape
    h, w = H // patch, W // patch
    x = images.reshape(B, C, h, patch, w, patch)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(B, h * w, patch * patch * C)


def patchify_videos(videos: torch.Tensor, patch: int, tubelet: int) -> torch.Tensor:
    """VideoMAE patchify. videos: [B, C, T, H, W] -> [B, N, t*p*p, C] (tubelets in (t, h, w) order)."""
    B, C, T, H, W = videos.shape
    t, h, w = T // tubelet, H // patch, W // patch
    x = videos.reshape(B, C, t, tubelet, h, patch, w, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, t, h, w, tubelet, p, p, C]
    return x.reshape(B, t * h * w, tubelet * patch * patch, C)


def image_pixel_targets(images: torch.Tensor, patch: int, eps: float = 1e-6) -> torch.Tensor:
    """MAE normalized-pixel targets. images: [B, C, H, W] (as fed to the model) -> [B, L, p*p*C]."""
    x = patchify_images(images.float(), patch)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return (x - mean) / (var + eps) ** 0.5


def video_pixel_targets(
    videos: torch.Tensor, patch: int, tubelet: int, mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD, eps: float = 1e-6,
) -> torch.Tensor:
    """VideoMAE normalized-pixel targets. videos: [B, C, T, H, W] normalized -> [B, N, t*p*p*C]."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=videos.device)[None, :, None, None, None]
    s = torch.as_tensor(std, dtype=torch.float32, device=videos.device)[None, :, None, None, None]
    x = patchify_videos(videos.float() * s + m, patch, tubelet)  # [B, N, t*p*p, C], pixels in [0, 1]
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps)
    return x.flatten(2)


def video_raw_pixels(
    videos: torch.Tensor, patch: int, tubelet: int, mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """VideoMAE targets without normalization (the reference's --normlize_target off): videos [B, C, T, H, W]
    normalized -> [B, N, t*p*p*C] pixels in [0, 1], in the order of `video_pixel_targets`."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=videos.device)[None, :, None, None, None]
    s = torch.as_tensor(std, dtype=torch.float32, device=videos.device)[None, :, None, None, None]
    return patchify_videos(videos.float() * s + m, patch, tubelet).flatten(2)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE, mean over tokens x values. pred, target: [B, N_mask, P] -> scalar."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return F.mse_loss(pred, target.to(pred.dtype))


# ---------------------------------------------------------------------------------------------- inverses
# Used to show reconstructions (analysis.reconstruct): predicted normalized patches are mapped back to pixels
# with the statistics of the ORIGINAL patch, as the MAE demo notebook does; the model never predicts them.
def unpatchify_images(patches: torch.Tensor, patch: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of `patchify_images`. patches: [B, L, p*p*C] in (p, q, c) order -> images [B, C, H, W].

    grid: (H', W') patches per column and row; None means square (L = H'^2)."""
    B, L, P = patches.shape
    C = P // (patch * patch)
    if C * patch * patch != P:
        raise ValueError(f"patch width {P} is not a multiple of patch*patch = {patch * patch}")
    if grid is None:
        side = round(L**0.5)
        grid = (side, side)
    h, w = grid
    if h * w != L:
        raise ValueError(f"{L} patches do not fill a {h}x{w} grid")
    x = patches.reshape(B, h, w, patch, patch, C)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(B, C, h * patch, w * patch)


def unpatchify_videos(patches: torch.Tensor, patch: int, tubelet: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of `patchify_videos`. patches: [B, N, t*p*p, C] -> videos [B, C, T, H, W] on the (T', H', W') grid."""
    B, N, _, C = patches.shape
    t, h, w = grid
    if t * h * w != N:
        raise ValueError(f"{N} tubelets do not fill the grid {grid}")
    x = patches.reshape(B, t, h, w, tubelet, patch, patch, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, t, tubelet, h, p, w, p]
    return x.reshape(B, C, t * tubelet, h * patch, w * patch)


def image_pixel_targets_inverse(values: torch.Tensor, images: torch.Tensor, patch: int,
                                eps: float = 1e-6) -> torch.Tensor:
    """Inverse of `image_pixel_targets` using the statistics of each patch of `images`.

    values: [B, L, p*p*C] normalized patch values (targets or predictions); images: [B, C, H, W] the inputs
    whose patch mean / variance are put back -> [B, L, p*p*C] patch values in the images' own space."""
    x = patchify_images(images.float(), patch)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return values.float() * (var + eps) ** 0.5 + mean


def video_pixel_targets_inverse(
    values: torch.Tensor, videos: torch.Tensor, patch: int, tubelet: int, mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD, eps: float = 1e-6,
) -> torch.Tensor:
    """Inverse of `video_pixel_targets` using the per-channel statistics of each tubelet of `videos`.

    values: [B, N, t*p*p*C] normalized tubelet values (targets or predictions); videos: [B, C, T, H, W]
    ImageNet-normalized inputs -> [B, N, t*p*p, C] ImageNet-normalized values (the `patchify_videos` layout)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=videos.device)
    s = torch.as_tensor(std, dtype=torch.float32, device=videos.device)
    x = patchify_videos(videos.float() * s[None, :, None, None, None] + m[None, :, None, None, None], patch, tubelet)
    mu = x.mean(dim=-2, keepdim=True)  # [B, N, 1, C], pixels in [0, 1]
    sd = x.var(dim=-2, unbiased=True, keepdim=True).sqrt()
    pixels = values.float().reshape(x.shape) * (sd + eps) + mu  # [B, N, t*p*p, C]
    return (pixels - m) / s
