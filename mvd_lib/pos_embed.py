"""Fixed (not learned) positional tables used by MVD, MAE and VideoMAE.

Mirrors `get_1d/2d/3d_sincos_pos_embed` (MAE, MVD `modeling_finetune.py`) and
`get_sinusoid_encoding_table` (VideoMAE), mvd_reference.md section 1. Tables are computed in float64, as the
reference's numpy code does, and returned as float32 `[N, D]` tensors.

Two families, deliberately different:
- MAE / MVD sin-cos: each 1-D part is `[sin(p * w_i) | cos(p * w_i)]` concatenated, `w_i = 1 / 10000^(i / (d/2))`.
  2-D: the first half of the channels encodes the COLUMN index, the second half the row index (MAE's
  `np.meshgrid(grid_w, grid_h)` puts the column first). 3-D (MVD student): the first D/4 channels encode the
  temporal index, the remaining 3D/4 are the 2-D table.
- VideoMAE sinusoid: one 1-D table over the flattened token index, angle `p / 10000^(2 * floor(j / 2) / d)`,
  sin on even channels and cos on odd ones (interleaved, not concatenated).
"""
from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE 1-D sin-cos table. positions: [M] -> [M, dim] = [sin(p w) | cos(p w)]."""
    if dim % 2:
        raise ValueError(f"sin-cos dimension must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    out = positions.to(torch.float64).reshape(-1, 1) * omega[None]  # [M, dim/2], outer product
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def sincos_2d(dim: int, grid_h: int, grid_w: int, cls_token: bool = False) -> torch.Tensor:
    """MAE 2-D table for an H' x W' grid in row-major order -> [H'*W' (+1), dim].

    Channels [0, dim/2) encode the column index, [dim/2, dim) the row index. With `cls_token`, a zero row is
    prepended (MAE's table for the cls token).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos dimension must be divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")  # [H', W'] each
    table = torch.cat([sincos_1d(dim // 2, cols.reshape(-1)), sincos_1d(dim // 2, rows.reshape(-1))], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table], dim=0)
    return table


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """MVD student 3-D table for a T' x H' x W' grid, (t, h, w) row-major -> [T'*H'*W', dim].

    Channels [0, dim/4) encode t (1-D sin-cos); channels [dim/4, dim) are `sincos_2d(3*dim/4, H', W')`.
    """
    if dim % 4:
        raise ValueError(f"3-D sin-cos dimension must be divisible by 4, got {dim}")
    d_t, d_s = dim // 4, dim // 4 * 3
    if d_t % 2 or d_s % 4:
        raise ValueError(f"3-D sin-cos dimension {dim} must split into an even temporal part and a spatial part divisible by 4 (use a multiple of 16)")
    temporal = sincos_1d(d_t, torch.arange(grid_t))  # [T', d_t]
    spatial = sincos_2d(d_s, grid_h, grid_w)  # [H'W', d_s]
    n_s = grid_h * grid_w
    return torch.cat(
        [temporal[:, None, :].expand(grid_t, n_s, d_t), spatial[None].expand(grid_t, n_s, d_s)], dim=-1
    ).reshape(grid_t * n_s, dim)


def videomae_sinusoid(num_tokens: int, dim: int) -> torch.Tensor:
    """VideoMAE 1-D sinusoid over the flattened token index -> [num_tokens, dim], sin/cos interleaved."""
    pos = torch.arange(num_tokens, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # [N, dim]
    table = torch.empty_like(angle)
    table[:, 0::2] = angle[:, 0::2].sin()
    table[:, 1::2] = angle[:, 1::2].cos()
    return table.float()
