"""The MVD objective: one forward pass of student and frozen teachers to the distillation loss.

Mirrors the body of `train_one_epoch` in the reference `engine_for_pretraining.py` (paper Sec. 3.2-3.3,
mvd_reference.md section 3):

    targets_k = teacher_k(teacher view)                 [B, N, D_k]   (computed here unless given, e.g. cached)
    preds     = student(student view, mask)             {k: [B, N_mask, D_k]}
    loss      = sum_k lambda_k * SmoothL1(preds_k, targets_k[mask])      (+ lambda_pix * MSE for the pixel branch)

The image teacher sees the teacher view (the same crop, possibly at another resolution, e.g. 196 px for an
H/14 teacher); the video teacher sees the student view, as the reference does when both have the same input
size (`videos if video_teacher_input_size == input_size else videos_for_teacher`), which is always the case
for video teachers built by mvd_lib.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from mvd_lib.config import MVDLossConfig
from mvd_lib.losses import distillation_loss, pixel_loss, video_pixel_targets
from mvd_lib.masking import gather_masked
from mvd_lib.student import PIXEL_BRANCH


@torch.no_grad()
def teacher_targets(teachers: Mapping[str, nn.Module], video: torch.Tensor,
                    teacher_video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{branch: [B, N, D]} features of every token from each frozen teacher (see module docstring for views)."""
    image_view = video if teacher_video is None else teacher_video
    return {name: teacher(image_view if name == "img" else video) for name, teacher in teachers.items()}


def mvd_loss(
    student: nn.Module,
    video: torch.Tensor,
    mask: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    loss: MVDLossConfig = MVDLossConfig(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and per-branch losses for one batch.

    video: [B, C, T, H, W] student view; mask: [B, N] (True = masked); targets: {branch: [B, N, D]} for every
    token (the masked ones are gathered here) or already gathered [B, N_mask, D]."""
    preds = student(video, mask)
    n_mask = int(mask[0].sum())
    feats = {k: v for k, v in preds.items() if k != PIXEL_BRANCH}
    gathered = {k: (t if t.shape[1] == n_mask else gather_masked(t, mask)) for k, t in targets.items() if k in feats}
    weights = {k: loss.weight(k) for k in feats}
    total, parts = distillation_loss(feats, gathered, weights, loss.beta, loss.norm_target)
    if PIXEL_BRANCH in preds:
        cfg = student.cfg
        pix_target = gather_masked(video_pixel_targets(video, cfg.patch_size, cfg.tubelet_size), mask)
        parts[PIXEL_BRANCH] = pixel_loss(preds[PIXEL_BRANCH], pix_target)
        total = total + loss.weight(PIXEL_BRANCH) * parts[PIXEL_BRANCH]
    return total, parts
