"""MAE: the image model behind MVD's image teacher, and its pixel-reconstruction pretraining.

Mirrors MAE's `models_mae.py` and MVD's `modeling_teacher.py` (mvd_reference.md section 4): a 2-D ViT with a
cls token, a fixed 2-D sin-cos table (zero row for cls) and fused qkv biases (`attn.qkv.bias`). Key layout
as in MAE checkpoints: `cls_token`, `pos_embed [1, 1+L, D]`, `patch_embed.proj` (Conv2d), `blocks.*`, `norm`;
the pretraining model adds `decoder_embed`, `mask_token`, `decoder_pos_embed`, `decoder_blocks.*`,
`decoder_norm`, `decoder_pred`.

Pretraining (MAE, He et al. 2022): random masking (75%), encoder on visible patches + cls, decoder on the full
set, loss = MSE against per-patch normalized pixels (`norm_pix_loss`), on masked patches only.
The image-teacher target is the LAST BLOCK output BEFORE the final norm, cls dropped (see teachers.py).
"""
from __future__ import annotations

import torch
from torch import nn

from mvd_lib.blocks import PatchEmbed2d, init_weights_, make_blocks, run_blocks
from mvd_lib.config import DecoderConfig, ViTConfig
from mvd_lib.losses import image_pixel_targets, pixel_loss
from mvd_lib.masking import gather_masked, gather_visible
from mvd_lib.pos_embed import sincos_2d
from mvd_lib.rng import seeded


class ImageViT(nn.Module):
    """MAE encoder over 2-D patches with a cls token. Uses cfg.img_size and cfg.patch_size (not frames)."""

    def __init__(self, cfg: ViTConfig, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        grid = cfg.img_size // cfg.patch_size
        self.grid_size = grid
        with seeded(seed):
            self.patch_embed = PatchEmbed2d(cfg.in_chans, cfg.width, cfg.patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
            self.register_buffer("pos_embed", sincos_2d(cfg.width, grid, grid, cls_token=True)[None])  # [1, 1+L, D]
            self.blocks = make_blocks(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, "fused", cfg.drop_path, cfg.norm_eps)
            self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
            self._init_mae_encoder()
        self.grad_checkpointing = False

    def _init_mae_encoder(self) -> None:
        # MAE: patch_embed initialised like a Linear (xavier on the flattened kernel), cls ~ N(0, 0.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        init_weights_(self, "xavier")

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None, pre_norm: bool = False) -> torch.Tensor:
        """images: [B, C, H, W], mask: [B, L] (True = masked) or None -> [B, 1 + L_vis, D] (cls first)."""
        return self.encode(images, mask, pre_norm)

    def encode(self, images: torch.Tensor, mask: torch.Tensor | None = None, pre_norm: bool = False) -> torch.Tensor:
        """The encoder alone (also inside MAEPretrain). Same arguments and shapes as `forward`."""
        x = self.patch_embed(images)  # [B, L, D]
        if x.shape[1] != self.num_patches:
            raise ValueError(f"image {tuple(images.shape[2:])} gives {x.shape[1]} patches, model expects {self.num_patches}")
        x = x + self.pos_embed[:, 1:].to(x.dtype)
        if mask is not None:
            x = gather_visible(x, mask)  # [B, L_vis, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).to(x.dtype).expand(x.shape[0], -1, -1)
        x = run_blocks(self.blocks, torch.cat([cls, x], dim=1), self.grad_checkpointing)
        return x if pre_norm else self.norm(x)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}


class MAEPretrain(ImageViT):
    """MAE encoder + pixel decoder. forward(images, mask) -> predictions for the masked patches."""

    def __init__(self, cfg: ViTConfig, decoder: DecoderConfig, seed: int | None = 0):
        super().__init__(cfg, seed=seed)
        self.decoder_cfg = decoder
        grid = self.grid_size
        with seeded(None if seed is None else seed + 1):
            self.decoder_embed = nn.Linear(cfg.width, decoder.width)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.width))
            self.register_buffer("decoder_pos_embed", sincos_2d(decoder.width, grid, grid, cls_token=True)[None])
            self.decoder_blocks = make_blocks(decoder.width, decoder.depth, decoder.heads, decoder.mlp_ratio, "fused", 0.0, cfg.norm_eps)
            self.decoder_norm = nn.LayerNorm(decoder.width, eps=cfg.norm_eps)
            self.decoder_pred = nn.Linear(decoder.width, cfg.patch_size**2 * cfg.in_chans)
            nn.init.normal_(self.mask_token, std=0.02)
            for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
                init_weights_(m, "xavier")

    def forward(self, images: torch.Tensor, mask: torch.Tensor, all_patches: bool = False) -> torch.Tensor:
        """images: [B, C, H, W], mask: [B, L] -> [B, L_mask, p*p*C] in ascending patch order
        ([B, L, p*p*C] for every patch with `all_patches`, e.g. to show reconstructions)."""
        latent = self.encode(images, mask)  # [B, 1 + L_vis, D]
        x = self.decoder_embed(latent)  # [B, 1 + L_vis, D_dec]
        B, _, Dd = x.shape
        pos = self.decoder_pos_embed.to(x.dtype).expand(B, -1, -1)
        pos_patches = pos[:, 1:]
        # [cls, visible..., mask tokens...]: attention is order-free given the positions, so the masked
        # predictions equal MAE's (which unshuffles to the original order first)
        x = torch.cat([
            x[:, :1] + pos[:, :1],
            x[:, 1:] + gather_visible(pos_patches, mask),
            self.mask_token.to(x.dtype) + gather_masked(pos_patches, mask),
        ], dim=1)
        x = self.decoder_pred(self.decoder_norm(run_blocks(self.decoder_blocks, x, self.grad_checkpointing)))
        n_vis = int((~mask[0]).sum())
        if not all_patches:
            return x[:, 1 + n_vis:]
        out = torch.empty(B, mask.shape[1], x.shape[-1], dtype=x.dtype, device=x.device)
        out[~mask] = x[:, 1:1 + n_vis].reshape(-1, x.shape[-1])
        out[mask] = x[:, 1 + n_vis:].reshape(-1, x.shape[-1])
        return out

    def no_weight_decay(self) -> set[str]:
        """MAE's pretraining decays cls_token and mask_token too (timm's add_weight_decay with no skip list)."""
        return set()

    def loss(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MAE's norm-pix loss: MSE on masked patches against per-patch normalized pixels."""
        target = gather_masked(image_pixel_targets(images, self.cfg.patch_size), mask)
        return pixel_loss(self(images, mask), target)
