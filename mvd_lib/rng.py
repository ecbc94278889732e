"""Explicit randomness: seeded construction without touching the caller's global RNG state.

PyTorch modules draw their initial weights from the global generator. `seeded(seed)` forks that state,
seeds it, and restores it on exit, so `VideoViT(cfg, seed=0)` is reproducible and leaves the notebook's
or training loop's random stream exactly where it was. Everything that samples during use (masks, data)
takes a `torch.Generator` instead; `generator(seed)` builds one.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the body with the global CPU RNG seeded to `seed`, restoring the previous state afterwards.

    `seed=None` leaves the global RNG alone (the body draws from it as usual)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` on `device` seeded with `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
