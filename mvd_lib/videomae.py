"""VideoMAE: the video model behind MVD's video teacher, and its pixel-reconstruction pretraining.

Mirrors VideoMAE's `modeling_pretrain.py` (Tong et al. 2022) and MVD's `modeling_video_teacher.py`
(mvd_reference.md section 4). Key layout as in VideoMAE pretrain checkpoints: `encoder.*` (q_bias/v_bias
blocks, `encoder.norm`, no stored positional table), `encoder_to_decoder.weight` (no bias), `mask_token`,
`decoder.blocks.*`, `decoder.norm`, `decoder.head`.

    video -> tube mask (ratio 0.9) -> encoder on visible tokens (1-D sinusoid table) -> encoder_to_decoder
          -> [visible + pos, mask_token + pos of masked]  -> decoder -> predictions for masked tubelets
    loss = MSE against per-tubelet normalized pixels (losses.video_pixel_targets), masked tubelets only.
"""
from __future__ import annotations

import torch
from torch import nn

from mvd_lib.blocks import Decoder, init_weights_
from mvd_lib.config import DecoderConfig, ViTConfig
from mvd_lib.losses import pixel_loss, video_pixel_targets
from mvd_lib.masking import gather_masked, gather_visible
from mvd_lib.pos_embed import videomae_sinusoid
from mvd_lib.rng import seeded
from mvd_lib.vit import VideoViT


def videomae_encoder(cfg: ViTConfig, seed: int | None = 0) -> VideoViT:
    """The VideoMAE encoder: q_bias/v_bias blocks, 1-D sinusoid table (not stored), final norm."""
    return VideoViT(cfg, pos_embed="sinusoid1d", store_pos_embed=False, final_norm=True, seed=seed)


class VideoMAEPretrain(nn.Module):
    """VideoMAE encoder + pixel decoder. forward(video, mask) -> [B, N_mask, tubelet*p*p*C]."""

    def __init__(self, cfg: ViTConfig, decoder: DecoderConfig, seed: int | None = 0):
        super().__init__()
        self.cfg, self.decoder_cfg = cfg, decoder
        self.encoder = videomae_encoder(cfg, seed=seed)
        with seeded(None if seed is None else seed + 1):
            self.encoder_to_decoder = nn.Linear(cfg.width, decoder.width, bias=False)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.width))
            self.register_buffer("pos_embed", videomae_sinusoid(cfg.num_tokens, decoder.width)[None], persistent=False)
            self.decoder = Decoder(decoder.width, decoder.depth, decoder.heads, cfg.tubelet_dim, decoder.mlp_ratio, decoder.drop_path)
            init_weights_(self.encoder_to_decoder, "xavier")
            init_weights_(self.decoder, "xavier")
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """video: [B, C, T, H, W], mask: [B, N] (True = masked) -> [B, N_mask, tubelet*p*p*C]."""
        x = self.encoder_to_decoder(self.encoder(video, mask))  # [B, N_vis, D_dec]
        B = x.shape[0]
        pos = self.pos_embed.to(x.dtype).expand(B, -1, -1)
        masked_pos = gather_masked(pos, mask)  # [B, N_mask, D_dec]
        x = torch.cat([x + gather_visible(pos, mask), self.mask_token.to(x.dtype) + masked_pos], dim=1)
        return self.decoder(x, masked_pos.shape[1])

    def loss(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """VideoMAE loss: MSE on masked tubelets against per-tubelet normalized pixels."""
        target = gather_masked(video_pixel_targets(video, self.cfg.patch_size, self.cfg.tubelet_size), mask)
        return pixel_loss(self(video, mask), target)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "mask_token"}
