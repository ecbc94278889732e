"""Frozen teachers that turn a clip into MVD's distillation targets (mvd_reference.md section 4).

Targets are taken exactly where the reference takes them (`modeling_teacher.py`,
`modeling_video_teacher.py`, `engine_for_pretraining.py`): the LAST BLOCK output BEFORE the final norm.

- `ImageTeacher` (MAE ViT): sees frames 0, tubelet, 2*tubelet, ... (the front frame of every tubelet), one
  image at a time; the cls token is dropped and the T' per-frame maps are concatenated in time order, so
  token t*H'W' + i of the target lines up with the student's token of tubelet t, patch i.
- `VideoTeacher` (VideoMAE encoder): sees the whole unmasked clip; all N tokens.
- `EMATeacher` (paper Table 8): an exponential moving average of the student's own encoder.

Both are frozen: parameters never require grad, the module stays in eval mode even under `.train()`, and the
forward pass runs without autograd. Gather the targets of the masked tokens with `masking.gather_masked`.
"""
from __future__ import annotations

import torch
from torch import nn

from mvd_lib.mae import ImageViT
from mvd_lib.vit import VideoViT


class FrozenTeacher(nn.Module):
    """Base class: holds `model`, frozen and in eval mode for good."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # a teacher never trains: no dropout, no drop path

    @property
    def out_dim(self) -> int:
        return self.model.cfg.width


class ImageTeacher(FrozenTeacher):
    """MAE image teacher. forward(video: [B, C, T, H, W]) -> [B, T/tubelet * H'W', D] targets."""

    def __init__(self, model: ImageViT, tubelet_size: int = 2):
        super().__init__(model)
        self.tubelet_size = tubelet_size

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = video.shape
        frames = video[:, :, :: self.tubelet_size]  # [B, C, T', H, W]: the front frame of each tubelet
        t = frames.shape[2]
        images = frames.transpose(1, 2).reshape(B * t, C, H, W)  # [(B T'), C, H, W]
        feats = self.model.encode(images, pre_norm=True)[:, 1:]  # [(B T'), L, D], cls dropped
        return feats.reshape(B, t * feats.shape[1], feats.shape[2])  # [B, T' L, D], (t, h, w) order


class VideoTeacher(FrozenTeacher):
    """VideoMAE video teacher. forward(video: [B, C, T, H, W]) -> [B, N, D] targets for every token."""

    def __init__(self, model: VideoViT):
        super().__init__(model)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video, mask=None, pre_norm=True)


class EMATeacher(FrozenTeacher):
    """Bootstrapped teacher (paper Table 8): an exponential moving average of the student's encoder.
    forward(video) -> [B, N, D], the last block before the final norm, like the fixed teachers."""

    def __init__(self, student: VideoViT, momentum: float):
        encoder = VideoViT(student.cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=None)
        encoder.load_state_dict({k: v for k, v in student.state_dict().items() if k in encoder.state_dict()})
        super().__init__(encoder)
        self.momentum = momentum

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video, mask=None, pre_norm=True)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """teacher = m * teacher + (1 - m) * student, parameter by parameter."""
        params = dict(student.named_parameters())
        for name, p in self.model.named_parameters():
            p.mul_(self.momentum).add_(params[name].detach(), alpha=1 - self.momentum)
