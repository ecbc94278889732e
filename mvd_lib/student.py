"""The MVD student: a video ViT encoder plus one light decoder per distillation target.

Mirrors `PretrainMaskedVideoStudent` (MVD `modeling_student.py`; mvd_reference.md section 3). Per branch X
("img" for the image teacher, "vid" for the video teacher, optionally "pix" for normalized pixels, paper
Table 7): `down_X` (Linear encoder width -> decoder width, with bias), `mask_token_X`, a fixed 3-D sin-cos
table `pos_embed_X` at decoder width, and `decoder_X` (blocks, norm, head to the target width).

    encoder(visible tokens) -> norm -> down_X -> [visible + pos_X(visible), mask_token_X + pos_X(masked)]
                            -> decoder_X -> predictions for the masked tokens only, ascending token index

A student may have zero, one or two feature branches (the "img"/"vid" ablations of Table 1) and the pixel
branch; `TokenDistillStudent` is the per-token distillation baseline of Table 9 (no mask, MLP heads).

Reference quirks kept by default: the decoders use the encoder's drop_path; `no_weight_decay()` lists
"mask_token", which does not match the parameter names `mask_token_img`/`mask_token_vid`, so the reference
decays the mask tokens (see optim.param_groups, `decay_mask_tokens`).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from mvd_lib.blocks import Decoder, init_weights_
from mvd_lib.config import DecoderConfig, ViTConfig
from mvd_lib.masking import gather_masked, gather_visible
from mvd_lib.pos_embed import sincos_3d
from mvd_lib.rng import seeded
from mvd_lib.vit import VideoViT

FEATURE_BRANCHES = ("img", "vid", "ema")  # image teacher, video teacher, bootstrapped EMA teacher (Table 8)
PIXEL_BRANCH = "pix"


class MVDStudent(VideoViT):
    """Encoder + decoders. forward(video, mask) -> {branch: [B, N_mask, target_dim]}.

    Args:
        cfg: encoder architecture and clip geometry.
        decoder: decoder size shared by all branches (config.mvd_decoder_config gives the reference's).
        teacher_dims: target width per feature branch, e.g. {"img": 768, "vid": 768}; {} for none.
        pixel: add the normalized-pixel branch "pix" (paper Table 7).
        seed: seed for the initial weights.
    """

    def __init__(
        self,
        cfg: ViTConfig,
        decoder: DecoderConfig,
        teacher_dims: Mapping[str, int] | None = None,
        pixel: bool = False,
        seed: int | None = 0,
    ):
        super().__init__(cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=seed)
        teacher_dims = dict({"img": 768, "vid": 768} if teacher_dims is None else teacher_dims)
        unknown = set(teacher_dims) - set(FEATURE_BRANCHES)
        if unknown:
            raise ValueError(f"unknown teacher branch(es) {sorted(unknown)}; use {FEATURE_BRANCHES}")
        self.decoder_cfg = decoder
        self.out_dims = {**teacher_dims, **({PIXEL_BRANCH: cfg.tubelet_dim} if pixel else {})}
        with seeded(None if seed is None else seed + 1):
            for name, out_dim in self.out_dims.items():
                token = nn.Parameter(torch.zeros(1, 1, decoder.width))
                nn.init.trunc_normal_(token, std=0.02, a=-0.02, b=0.02)  # reference: truncated at +-1 std
                self.register_parameter(f"mask_token_{name}", token)
                setattr(self, f"down_{name}", nn.Linear(cfg.width, decoder.width))
                setattr(self, f"decoder_{name}", Decoder(decoder.width, decoder.depth, decoder.heads, out_dim,
                                                         decoder.mlp_ratio, decoder.drop_path))
                self.register_buffer(f"pos_embed_{name}", sincos_3d(decoder.width, *cfg.grid)[None])
                init_weights_(getattr(self, f"down_{name}"), "xavier")
                init_weights_(getattr(self, f"decoder_{name}"), "xavier")

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.out_dims)

    def decode(self, name: str, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One branch. latent: [B, N_vis, D] (normed encoder output), mask: [B, N] -> [B, N_mask, out_dim]."""
        x = getattr(self, f"down_{name}")(latent)  # [B, N_vis, D_dec]
        pos = getattr(self, f"pos_embed_{name}").to(x.dtype).expand(x.shape[0], -1, -1)
        masked_pos = gather_masked(pos, mask)  # [B, N_mask, D_dec]
        token = getattr(self, f"mask_token_{name}").to(x.dtype)
        x = torch.cat([x + gather_visible(pos, mask), token + masked_pos], dim=1)  # [B, N, D_dec]
        return getattr(self, f"decoder_{name}")(x, masked_pos.shape[1])

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """video: [B, C, T, H, W], mask: [B, N] (True = masked) -> {branch: [B, N_mask, out_dim]}."""
        latent = super().forward(video, mask)  # [B, N_vis, D]
        return {name: self.decode(name, latent, mask) for name in self.branches}

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "mask_token"}  # as in the reference; see the module docstring

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for name in self.branches:
            getattr(self, f"decoder_{name}").grad_checkpointing = enable


class MLPHead(nn.Module):
    """Linear -> GELU -> Linear. x: [B, N, D_in] -> [B, N, D_out]."""

    def __init__(self, dim_in: int, dim_out: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim_in * 4
        self.fc1, self.act, self.fc2 = nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenDistillStudent(VideoViT):
    """Per-token feature distillation (paper Table 9): every token visible, an MLP head per teacher maps each
    output token to the teacher's feature of the same token. forward(video) -> {branch: [B, N, target_dim]}."""

    def __init__(self, cfg: ViTConfig, teacher_dims: Mapping[str, int] | None = None, seed: int | None = 0):
        super().__init__(cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=seed)
        self.out_dims = dict({"vid": 768} if teacher_dims is None else teacher_dims)
        with seeded(None if seed is None else seed + 1):
            self.heads = nn.ModuleDict({k: MLPHead(cfg.width, d) for k, d in self.out_dims.items()})
            init_weights_(self.heads, "xavier")

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.out_dims)

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if mask is not None and bool(mask.any()):
            raise ValueError("per-token distillation sees every token: pass no mask")
        latent = super().forward(video)  # [B, N, D]
        return {k: head(latent) for k, head in self.heads.items()}
