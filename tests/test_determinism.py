"""Same seed, same masks, same first training steps on CPU; another seed, other numbers."""
from __future__ import annotations

import torch

from mvd_lib.build import build_distillation
from mvd_lib.distill import mvd_loss, teacher_targets
from mvd_lib.masking import tube_mask
from mvd_lib.optim import adamw, param_groups
from mvd_lib.rng import generator, seeded


def first_steps(seed: int, steps: int = 3) -> tuple[list[float], dict[str, torch.Tensor], list[torch.Tensor]]:
    student, teachers = build_distillation("vit_nano", seed=seed, drop_path=0.1)  # drop path draws randomness
    student.train()
    opt = adamw(param_groups(student, 0.05), lr=1e-3, betas=(0.9, 0.95))
    g = generator(seed)
    losses, masks = [], []
    with seeded(seed):  # the stream dropout/drop-path draw from
        for _ in range(steps):
            video = torch.randn(2, 3, 16, 32, 32, generator=g)
            mask = tube_mask(2, student.grid, 0.9, g)
            loss, _ = mvd_loss(student, video, mask, teacher_targets(teachers, video))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            masks.append(mask)
    return losses, {k: v.clone() for k, v in student.state_dict().items()}, masks


def test_same_seed_same_steps_and_weights():
    la, sa, ma = first_steps(0)
    lb, sb, mb = first_steps(0)
    assert la == lb
    assert all(torch.equal(x, y) for x, y in zip(ma, mb))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lc, sc, mc = first_steps(1)
    assert lc != la and not torch.equal(mc[0], ma[0])
    assert all(torch.isfinite(torch.tensor(la)))
