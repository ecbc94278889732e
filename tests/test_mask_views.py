"""Pixel views of token masks and the leakage measure behind tube masking (masking.py, last section)."""
from __future__ import annotations

import pytest
import torch

from mvd_lib.masking import (expected_random_leakage, leakage_fraction, leaky_tokens, mask_to_pixels,
                             random_mask, tube_mask)
from mvd_lib.rng import generator

# A 3 x 1 x 2 grid (three slices of two patches), True = masked:
#   t0: [M, v]   t1: [M, M]   t2: [v, M]
HAND = torch.tensor([[True, False, True, True, False, True]])


def test_leakage_of_a_hand_made_mask():
    # window 1: (t1, p0) sees p0 visible at t2, (t1, p1) sees p1 visible at t0; (t0, p0) and (t2, p1) do not
    assert leakage_fraction(HAND, (3, 1, 2)).tolist() == [0.5]
    assert leaky_tokens(HAND, (3, 1, 2)).tolist() == [[False, False, True, True, False, False]]
    # whole clip: (t0, p0) also sees t2, (t2, p1) sees t0
    assert leakage_fraction(HAND, (3, 1, 2), window=None).tolist() == [1.0]
    assert leakage_fraction(torch.zeros(2, 6, dtype=torch.bool), (3, 1, 2)).tolist() == [0.0, 0.0]


def test_tube_masks_never_leak_and_random_masks_do_as_expected():
    grid = (8, 14, 14)
    assert (leakage_fraction(tube_mask(16, grid, 0.9, generator(0)), grid, window=None) == 0).all()
    rand = random_mask(256, 8 * 14 * 14, 0.9, generator(0))
    for window in (1, 2, None):
        measured = leakage_fraction(rand, grid, window).mean().item()
        assert measured == pytest.approx(expected_random_leakage(0.9, 8, window), abs=0.01)
    # known answers of the formula: interior slices 1 - r^2, the two end slices 1 - r
    assert expected_random_leakage(0.9, 8) == pytest.approx((6 * (1 - 0.81) + 2 * 0.1) / 8)
    assert expected_random_leakage(0.9, 8, None) == pytest.approx(1 - 0.9**7)
    assert expected_random_leakage(0.5, 1) == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="token grid"):
        leakage_fraction(HAND, (2, 2, 2))
    with pytest.raises(ValueError, match="window"):
        leakage_fraction(HAND, (3, 1, 2), window=0)
    with pytest.raises(ValueError, match="token grid"):
        mask_to_pixels(HAND, (2, 2, 2), 2, 4)


def test_mask_to_pixels_covers_exactly_the_masked_tubelets():
    grid, tubelet, patch = (4, 3, 3), 2, 4
    mask = tube_mask(2, grid, 0.5, generator(1))
    pixels = mask_to_pixels(mask, grid, tubelet, patch)
    assert pixels.shape == (2, 8, 12, 12) and pixels.dtype == torch.bool
    assert pixels.sum().item() == mask.sum().item() * tubelet * patch * patch
    # token (t=1, h=2, w=0) covers frames 2-3, rows 8-11, columns 0-3
    token = 1 * 9 + 2 * 3 + 0
    for b in range(2):
        block = pixels[b, 2:4, 8:12, 0:4]
        assert block.all() if mask[b, token] else not block.any()
