"""mvd_lib: Masked Video Distillation (Wang et al., CVPR 2023) as a small, readable library.

Conventions used everywhere:
- videos are `[B, C, T, H, W]` float tensors, normalized with ImageNet mean/std;
- tokens are flattened in (t, h, w) row-major order: `[B, N, D]` with N = T/tubelet * H/patch * W/patch;
- masks are boolean `[B, N]` with True = masked (hidden from the encoder), as in MAE and VideoMAE;
- every random function takes a `torch.Generator` (or a seed), never the global RNG.

Importing the package loads no torch: configs and profiles (config.py, profiles.py) are checked in a fraction
of a second. The torchvision guard (torchvision_guard.py) is armed here and runs the first time anything
imports torchvision (timm does), before torchvision loads.
"""
from __future__ import annotations

import importlib.abc
import sys

__version__ = "0.2.0"


class _TorchvisionGuardHook(importlib.abc.MetaPathFinder):
    """Runs `torchvision_guard.install()` just before the first `import torchvision`, then steps aside."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name == "torchvision":
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionGuardHook)]
            from mvd_lib import torchvision_guard

            torchvision_guard.install()
        return None  # let the regular finders import it


if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionGuardHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionGuardHook())
