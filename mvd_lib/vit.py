"""The video ViT encoder: student backbone, video-teacher backbone and finetuning backbone.

Mirrors the encoder parts of `PretrainMaskedVideoStudent` (MVD `modeling_student.py`),
`PretrainVisionTransformerEncoder` (`modeling_video_teacher.py`, VideoMAE) and `VisionTransformer`
(`modeling_finetune.py`); mvd_reference.md sections 1-2.

    video [B, C, T, H, W]
      -> Conv3d tubelet embedding               [B, N, D]   N = T/2 * H/16 * W/16 (1568 at 16x224x224)
      -> + fixed positional table               (3-D sin-cos for MVD; 1-D sinusoid for VideoMAE)
      -> drop masked tokens (True = masked)     [B, N_vis, D]
      -> blocks                                 (pre-norm ViT blocks, q_bias/v_bias attention)
      -> final LayerNorm `norm`                 [B, N_vis, D]

No cls token. Where the table lives in the state dict depends on the reference layout being matched:
the MVD student stores `pos_embed` (a frozen parameter there, a persistent buffer here); VideoMAE and the
finetuning model do not store it (non-persistent buffer).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mvd_lib.blocks import TubeletEmbed, init_weights_, make_blocks, run_blocks
from mvd_lib.config import ViTConfig
from mvd_lib.masking import gather_visible
from mvd_lib.pos_embed import sincos_3d, videomae_sinusoid
from mvd_lib.rng import seeded

PosEmbedKind = Literal["sincos3d", "sinusoid1d"]


def position_table(kind: PosEmbedKind, dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """[1, N, dim] fixed table of the given kind for a (T', H', W') token grid."""
    if kind == "sincos3d":
        return sincos_3d(dim, *grid)[None]
    if kind == "sinusoid1d":
        t, h, w = grid
        return videomae_sinusoid(t * h * w, dim)[None]
    raise ValueError(f"unknown positional table {kind!r}; use 'sincos3d' or 'sinusoid1d'")


class VideoViT(nn.Module):
    """Video ViT over 3-D tubelets. See the module docstring for the data flow.

    Args:
        cfg: architecture and clip geometry.
        pos_embed: "sincos3d" (MVD student / finetune) or "sinusoid1d" (VideoMAE).
        store_pos_embed: keep `pos_embed` in the state dict (MVD student layout) or not.
        final_norm: end with LayerNorm `norm` (pretraining) or Identity (finetuning uses fc_norm instead).
        seed: seed for the initial weights (the caller's global RNG is left untouched); None draws from it.
    """

    def __init__(
        self,
        cfg: ViTConfig,
        pos_embed: PosEmbedKind = "sincos3d",
        store_pos_embed: bool = True,
        final_norm: bool = True,
        seed: int | None = 0,
    ):
        super().__init__()
        self.cfg = cfg
        with seeded(seed):
            self.patch_embed = TubeletEmbed(cfg.in_chans, cfg.width, cfg.patch_size, cfg.tubelet_size)
            self.register_buffer("pos_embed", position_table(pos_embed, cfg.width, cfg.grid), persistent=store_pos_embed)
            self.blocks = make_blocks(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, "qv", cfg.drop_path, cfg.norm_eps)
            self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps) if final_norm else nn.Identity()
            init_weights_(self, "xavier")
        self.grad_checkpointing = False

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.cfg.grid

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens plus positions. video: [B, C, T, H, W] -> [B, N, D]."""
        x = self.patch_embed(video)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"clip {tuple(video.shape[2:])} gives {x.shape[1]} tokens but the model was built for "
                f"{self.cfg.num_frames}x{self.cfg.img_size}x{self.cfg.img_size} ({self.pos_embed.shape[1]} tokens)"
            )
        return x + self.pos_embed.to(x.dtype)

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None, pre_norm: bool = False) -> torch.Tensor:
        """Encode the visible tokens. video: [B, C, T, H, W], mask: [B, N] (True = masked) or None.

        Returns [B, N_vis, D] (all N tokens without a mask), after the final norm unless `pre_norm`
        (teachers' targets are taken before it)."""
        x = self.embed(video)
        if mask is not None:
            x = gather_visible(x, mask)  # [B, N_vis, D]
        x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return x if pre_norm else self.norm(x)

    def no_weight_decay(self) -> set[str]:
        """Names the reference exempts from weight decay (matched exactly, see optim.param_groups)."""
        return {"pos_embed", "cls_token"}
