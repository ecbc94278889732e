"""mvd_lib: Masked Video Distillation (Wang et al., CVPR 2023) as a small, readable library.

Conventions used everywhere:
- videos are `[B, C, T, H, W]` float tensors, normalized with ImageNet mean/std;
- tokens are flattened in (t, h, w) row-major order: `[B, N, D]` with N = T/tubelet * H/patch * W/patch;
- masks are boolean `[B, N]` with True = masked (hidden from the encoder), as in MAE and VideoMAE;
- every random function takes a `torch.Generator` (or a seed), never the global RNG.
"""
from mvd_lib import torchvision_guard as _torchvision_guard

_torchvision_guard.install()  # must run before anything imports torchvision (timm does)

__version__ = "0.1.0"
