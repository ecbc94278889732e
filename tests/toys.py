"""Small stand-ins shared by the engine tests: a dataset of 32 regression samples."""
from __future__ import annotations

import torch


class ToyData(torch.utils.data.Dataset):
    """32 samples {"x": [4], "y": sum of x, "index"}, each a function of its index."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return {"x": x, "y": x.sum(), "index": i}
