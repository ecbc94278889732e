"""The finetuning classifier: a pretrained video ViT with mean pooling and a fresh linear head.

Mirrors `VisionTransformer` with `use_mean_pooling=True` (MVD/VideoMAE `modeling_finetune.py`;
mvd_reference.md section 6):

    video -> encoder blocks (all tokens, 3-D sin-cos table, NO final norm) -> mean over tokens [B, D]
          -> fc_norm (new LayerNorm) -> dropout -> head (Linear, weight and bias scaled by 0.001 at init)

State-dict keys as in the reference finetuned checkpoints: `patch_embed.proj`, `blocks.*`, `fc_norm`, `head`
(no `pos_embed`, no `norm`). Loading a pretrained encoder drops its `norm` and decoders (checkpoint.py).
"""
from __future__ import annotations

import torch
from torch import nn

from mvd_lib.blocks import init_weights_
from mvd_lib.config import ViTConfig
from mvd_lib.rng import seeded
from mvd_lib.vit import PosEmbedKind, VideoViT


class VideoClassifier(VideoViT):
    """forward(video: [B, C, T, H, W]) -> logits [B, num_classes]; `features(video)` -> [B, D] (after fc_norm)."""

    def __init__(self, cfg: ViTConfig, num_classes: int, fc_drop: float = 0.0, init_scale: float = 0.001,
                 seed: int | None = 0, pos_embed: PosEmbedKind = "sincos3d"):
        # MVD finetunes with the 3-D sin-cos table; VideoMAE's finetuning keeps its 1-D sinusoid ("sinusoid1d")
        super().__init__(cfg, pos_embed=pos_embed, store_pos_embed=False, final_norm=False, seed=seed)
        self.num_classes = num_classes
        with seeded(seed):
            self.fc_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
            self.fc_dropout = nn.Dropout(fc_drop) if fc_drop > 0 else nn.Identity()
            self.head = nn.Linear(cfg.width, num_classes)
            init_weights_(self, "trunc_normal")  # the finetuning model re-initialises every Linear
            with torch.no_grad():
                self.head.weight.mul_(init_scale)
                self.head.bias.mul_(init_scale)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features. video: [B, C, T, H, W] -> [B, D] = fc_norm(mean of output tokens)."""
        tokens = super().forward(video)  # [B, N, D]; self.norm is Identity here
        return self.fc_norm(tokens.mean(dim=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.head(self.fc_dropout(self.features(video)))

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}
