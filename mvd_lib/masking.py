"""Token masking for masked video/image modelling (mvd_reference.md section 2).

Convention, used everywhere in mvd_lib: a mask is a boolean tensor `[B, N]` with **True = masked**
(hidden from the encoder, to be predicted). Counts are exact: `num_masked(n, ratio) = int(ratio * n)`,
as in the reference (`int(0.9 * 196) = 176`).

- `tube_mask`: one random spatial mask per sample, repeated over every temporal slice (VideoMAE / MVD).
  16x224x224 clips, 2x16x16 tubelets, ratio 0.9: 176 of 196 patches masked in each of 8 slices ->
  1408 masked, 160 visible tokens.
- `random_mask`: exactly int(ratio * N) tokens masked, placed independently (MAE on images).

Unlike the reference (global numpy RNG), both take a `torch.Generator`, so masks are reproducible.
"""
from __future__ import annotations

import torch

from mvd_lib.config import masked_count, num_masked  # noqa: F401  (the count arithmetic is torch-free)


def random_mask(batch: int, num_tokens: int, ratio: float, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, N] bool, exactly int(ratio * N) True per row at uniformly random places."""
    n_mask = num_masked(num_tokens, ratio)
    noise = torch.rand(batch, num_tokens, generator=generator, device=generator.device if generator else device)
    order = noise.argsort(dim=1)  # a uniformly random permutation per row
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool, device=noise.device)
    mask.scatter_(1, order[:, :n_mask], True)
    return mask.to(device)


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, T'*H'*W'] bool: a random spatial mask of int(ratio * H'W') patches, the same in every time slice."""
    t, h, w = grid
    spatial = random_mask(batch, h * w, ratio, generator, device)  # [B, H'W']
    return spatial[:, None, :].expand(batch, t, h * w).reshape(batch, t * h * w)


def _select(x: torch.Tensor, keep: torch.Tensor, what: str) -> torch.Tensor:
    counts = keep.sum(dim=1)
    if x.shape[:2] != keep.shape:
        raise ValueError(f"tokens {tuple(x.shape)} and mask {tuple(keep.shape)} disagree on [B, N]")
    if (counts != counts[0]).any():
        raise ValueError(f"every sample must have the same number of {what} tokens, got {counts.tolist()}")
    return x[keep].reshape(x.shape[0], int(counts[0]), *x.shape[2:])


def gather_visible(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Visible tokens in ascending index order. x: [B, N, ...], mask: [B, N] -> [B, N_vis, ...]."""
    return _select(x, ~mask, "visible")


def gather_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked tokens in ascending index order. x: [B, N, ...], mask: [B, N] -> [B, N_mask, ...]."""
    return _select(x, mask, "masked")
