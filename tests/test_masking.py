"""Masks: True = masked, exact counts, tube structure, explicit generators."""
from __future__ import annotations

import pytest
import torch

from mvd_lib.masking import gather_masked, gather_visible, num_masked, random_mask, tube_mask
from mvd_lib.rng import generator


def test_paper_tube_mask_counts():
    mask = tube_mask(4, (8, 14, 14), 0.9, generator(0))
    assert mask.shape == (4, 1568) and mask.dtype == torch.bool
    assert (mask.sum(1) == 1408).all() and ((~mask).sum(1) == 160).all()
    per_slice = mask.reshape(4, 8, 196)
    assert (per_slice.sum(-1) == 176).all()
    # a tube: the same spatial pattern in every time slice
    assert (per_slice == per_slice[:, :1]).all()
    # samples differ from each other
    assert not (per_slice[0, 0] == per_slice[1, 0]).all()


@pytest.mark.parametrize("n,ratio,expected", [(196, 0.75, 147), (196, 0.9, 176), (64, 0.9, 57), (100, 0.58, 57), (10, 0.0, 0)])
def test_num_masked_uses_int_truncation(n, ratio, expected):
    assert num_masked(n, ratio) == expected
    assert (random_mask(3, n, ratio, generator(1)).sum(1) == expected).all()


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError):
        num_masked(10, 1.0)


def test_same_seed_same_mask_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tube_mask(2, (8, 8, 8), 0.9, generator(7))
    after = torch.rand(1)
    b = tube_mask(2, (8, 8, 8), 0.9, generator(7))
    c = tube_mask(2, (8, 8, 8), 0.9, generator(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(before, after)  # masking drew nothing from the global generator


def test_random_mask_positions_are_uniform():
    mask = random_mask(4000, 16, 0.25, generator(3))
    freq = mask.float().mean(0)
    assert torch.allclose(freq, torch.full((16,), 0.25), atol=0.03)


def test_gather_keeps_ascending_order():
    x = torch.arange(10)[None, :, None].expand(2, 10, 3).float()
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, [7, 1, 4]] = True
    mask[1, [0, 9, 5]] = True
    assert gather_masked(x, mask)[..., 0].tolist() == [[1, 4, 7], [0, 5, 9]]
    assert gather_visible(x, mask)[0, :, 0].tolist() == [0, 2, 3, 5, 6, 8, 9]


def test_gather_rejects_ragged_masks():
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 0] = True
    with pytest.raises(ValueError, match="same number"):
        gather_masked(torch.zeros(2, 5, 1), mask)


def test_masked_count_matches_the_masks():
    from mvd_lib.masking import masked_count

    assert masked_count((8, 14, 14), 0.9) == 1408 == int(tube_mask(1, (8, 14, 14), 0.9).sum())
    assert masked_count((8, 8, 8), 0.9, "random") == 460 == int(random_mask(1, 512, 0.9).sum())
    with pytest.raises(ValueError):
        masked_count((8, 8, 8), 0.9, "cube")
