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


# ----------------------------------------------------------------------------------------------------------
# views of a mask: pixels and leakage (used by the masking notebook; pure functions of the mask)
# ----------------------------------------------------------------------------------------------------------
def mask_to_pixels(mask: torch.Tensor, grid: tuple[int, ...], tubelet_size: int, patch_size: int) -> torch.Tensor:
    """Token mask -> pixel mask, every pixel of a masked tubelet (or patch) True.

    mask: [B, T'*H'*W'] on a (T', H', W') grid -> [B, T'*tubelet, H'*p, W'*p] bool; for images, [B, H'*W'] on an
    (H', W') grid -> [B, H'*p, W'*p] (`tubelet_size` unused)."""
    n = 1
    for g in grid:
        n *= g
    if mask.dim() != 2 or mask.shape[1] != n or len(grid) not in (2, 3):
        raise ValueError(f"mask {tuple(mask.shape)} does not match the token grid {grid} ({n} tokens)")
    m = mask.reshape(mask.shape[0], *grid)
    if len(grid) == 3:
        m = m.repeat_interleave(tubelet_size, 1)
    return m.repeat_interleave(patch_size, -2).repeat_interleave(patch_size, -1)


def leaky_tokens(mask: torch.Tensor, grid: tuple[int, int, int], window: int | None = 1) -> torch.Tensor:
    """Masked tokens whose patch (same spatial position) is VISIBLE in another time slice at most `window` slices
    away (`None`: anywhere in the clip). mask: [B, T'*H'*W'] (True = masked) -> [B, T'*H'*W'] bool."""
    t, h, w = grid
    if mask.dim() != 2 or mask.shape[1] != t * h * w:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the token grid {grid} ({t * h * w} tokens)")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 slice (or None for the whole clip), got {window}")
    m = mask.reshape(mask.shape[0], t, h * w)  # [B, T', H'W']
    visible = (~m).to(torch.int32)
    reach = t - 1 if window is None else min(window, t - 1)
    seen = torch.zeros_like(visible)  # visible copies of each patch within `reach` slices, the slice itself excluded
    for d in range(1, reach + 1):
        seen[:, d:] += visible[:, :-d]
        seen[:, :-d] += visible[:, d:]
    return (m & (seen > 0)).reshape(mask.shape)


def leakage_fraction(mask: torch.Tensor, grid: tuple[int, int, int], window: int | None = 1) -> torch.Tensor:
    """Per sample, the fraction of masked tokens that are `leaky_tokens`: [B, T'*H'*W'] -> [B] float.

    This is the "information leakage" that motivates tube masking (VideoMAE sections 3.2-3.3; MVD follows it):
    video is temporally redundant, so a masked patch that is visible a slice earlier or later can be copied instead
    of inferred. Tube masks hide a patch in every slice, so their leakage is exactly 0; a random mask at ratio r
    leaks about 1 - r^2 of its masked tokens to the adjacent slices (1 - r at the first and last slice;
    `expected_random_leakage`). A sample without masked tokens has leakage 0."""
    leaks = leaky_tokens(mask, grid, window).sum(1)  # [B]
    masked = mask.sum(1)
    return leaks.float() / masked.clamp(min=1).float()  # no masked tokens: 0 leaks / 1


def expected_random_leakage(ratio: float, num_slices: int, window: int | None = 1) -> float:
    """`leakage_fraction` to expect from `random_mask` at `ratio` on `num_slices` time slices, treating tokens as
    masked independently with probability `ratio`: the mean over slices of 1 - ratio^k, k = the other slices
    within `window` (`None`: all of them). Exact counts make the true value differ by O(1/N)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    reach = num_slices - 1 if window is None else min(window, num_slices - 1)
    ks = [min(reach, t) + min(reach, num_slices - 1 - t) for t in range(num_slices)]
    return sum(1.0 - ratio**k for k in ks) / num_slices
