"""Analytic compute counts for the models, per clip.

Counts multiply-accumulates (MACs) of the matrix products: patch embedding, qkv, attention scores,
attention-weighted values, output projection, MLP, decoder projections and heads. Norms, softmax and
activations are ignored (well under 1%). Papers, including MVD (Tables 3-5: ViT-S 57, ViT-B 180, ViT-L 597,
ViT-H 1192 "GFLOPs" per 16x224x224 view), report MACs under the name FLOPs (fvcore's convention); we print
them the same way and label them. Hardware throughput (TFLOP/s, MFU) uses real FLOPs = 2 x MACs.

Per block with N tokens, width D, MLP ratio r:  N D^2 (4 + 2r)  +  2 N^2 D.

`model_sizes()` is the architecture table as data (parameters, tokens, visible tokens, GFLOPs, the paper's numbers
beside them), for notebooks and the command line to render.
"""
from __future__ import annotations

from dataclasses import dataclass

from mvd_lib.config import ARCHITECTURES, DecoderConfig, ViTConfig, masked_count


def block_macs(num_tokens: int, width: int, mlp_ratio: float = 4.0) -> int:
    """MACs of one transformer block on `num_tokens` tokens."""
    n, d = num_tokens, width
    return int(n * d * d * (4 + 2 * mlp_ratio) + 2 * n * n * d)


def encoder_macs(cfg: ViTConfig, num_visible: int | None = None) -> int:
    """Video encoder: tubelet embedding on all N tokens, blocks on the visible ones (all if None)."""
    n_vis = cfg.num_tokens if num_visible is None else num_visible
    embed = cfg.num_tokens * cfg.tubelet_dim * cfg.width
    return embed + cfg.depth * block_macs(n_vis, cfg.width, cfg.mlp_ratio)


def image_encoder_macs(cfg: ViTConfig, num_images: int = 1) -> int:
    """MAE image encoder on `num_images` full images (cls token included)."""
    n = cfg.num_patches_2d
    embed = n * cfg.patch_size**2 * cfg.in_chans * cfg.width
    return num_images * (embed + cfg.depth * block_macs(n + 1, cfg.width, cfg.mlp_ratio))


def decoder_macs(dec: DecoderConfig, in_width: int, num_visible: int, num_tokens: int, out_dim: int) -> int:
    """One MVD / VideoMAE decoder branch: input projection of the visible tokens, blocks on all N tokens,
    norm + head on the N - N_vis masked tokens."""
    proj = num_visible * in_width * dec.width
    head = (num_tokens - num_visible) * dec.width * out_dim
    return proj + dec.depth * block_macs(num_tokens, dec.width, dec.mlp_ratio) + head


def student_macs(cfg: ViTConfig, dec: DecoderConfig, num_visible: int, out_dims: dict[str, int]) -> int:
    """Forward MACs of an MVD student: encoder on visible tokens + every decoder branch."""
    return encoder_macs(cfg, num_visible) + sum(
        decoder_macs(dec, cfg.width, num_visible, cfg.num_tokens, d) for d in out_dims.values()
    )


def train_step_flops(student_fwd_macs: int, teacher_fwd_macs: int) -> int:
    """FLOPs of one training step per clip: student forward + backward (~2x forward) + frozen teachers' forward."""
    return 2 * (3 * student_fwd_macs + teacher_fwd_macs)


# ----------------------------------------------------------------------------------------------------------
# the architecture table as data
# ----------------------------------------------------------------------------------------------------------
# The paper's model sizes (M parameters) and per-view GFLOPs (Tables 3-5), shown beside ours.
PAPER_SIZES: dict[str, tuple[int, int]] = {
    "vit_small": (22, 57), "vit_base": (87, 180), "vit_large": (305, 597), "vit_huge": (633, 1192),
}


def encoder_params(cfg: ViTConfig) -> int:
    """Trainable parameters of the finetuning encoder without its head (built on the meta device: no memory)."""
    import torch

    from mvd_lib.classifier import VideoClassifier

    with torch.device("meta"):
        model = VideoClassifier(cfg, num_classes=1, seed=None)
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head."))


@dataclass(frozen=True)
class ModelSize:
    """One row of the architecture table."""

    arch: str  # name in config.ARCHITECTURES
    width: int  # D
    depth: int  # blocks
    heads: int  # attention heads
    params: int  # finetuning encoder parameters without head
    clip: tuple[int, int, int]  # (T, H, W) pixels
    tokens: int  # N = T'H'W'
    visible: int  # tokens left visible by a tube mask at the table's ratio
    gflops: float  # one forward pass of the finetuning encoder per clip, in GMACs (the paper's "GFLOPs")
    paper_params_m: int | None  # the paper's size in M parameters (paper sizes only)
    paper_gflops: int | None  # the paper's per-view GFLOPs (paper sizes only)


def model_sizes(mask_ratio: float = 0.9, archs: tuple[str, ...] | None = None) -> list[ModelSize]:
    """The rows of the architecture table, in `ARCHITECTURES` order (or `archs`'), visible tokens under a tube
    mask at `mask_ratio`."""
    names = tuple(ARCHITECTURES) if archs is None else archs
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architecture(s) {unknown}; choose from {sorted(ARCHITECTURES)}")
    rows = []
    for name in names:
        cfg = ARCHITECTURES[name]
        paper = PAPER_SIZES.get(name)
        rows.append(ModelSize(
            arch=name, width=cfg.width, depth=cfg.depth, heads=cfg.heads, params=encoder_params(cfg),
            clip=(cfg.num_frames, cfg.img_size, cfg.img_size), tokens=cfg.num_tokens,
            visible=cfg.num_tokens - masked_count(cfg.grid, mask_ratio), gflops=encoder_macs(cfg) / 1e9,
            paper_params_m=paper[0] if paper else None, paper_gflops=paper[1] if paper else None,
        ))
    return rows
