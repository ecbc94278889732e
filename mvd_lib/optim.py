"""Optimizer parameter groups and learning-rate schedules of the reference recipes.

Mirrors `optim_factory.py` (`get_parameter_groups`, `LayerDecayValueAssigner`, `get_num_layer_for_vit`) and
`utils.cosine_scheduler` (mvd_reference.md sections 5-6).

Weight decay: a parameter is NOT decayed if it is 1-D, its name ends in ".bias", or its name is EXACTLY in
the model's `no_weight_decay()` set. Parameters that do not require grad (fixed tables, frozen parts) are left
out. Reference quirk, kept by default: the student's set says "mask_token" but its parameters are called
`mask_token_img`/`mask_token_vid` ([1, 1, D], not 1-D), so the mask tokens ARE decayed; pass
`decay_mask_tokens=False` to exempt them knowingly.

Layer-wise lr decay (finetuning): with depth L and decay d, values d^(L+1-i) for layer ids i = 0..L+1;
`patch_embed`/`pos_embed`/`cls_token`/`mask_token` get id 0 (scale d^(L+1)), `blocks.k` id k+1 (d^(L-k)),
everything else (fc_norm, head) id L+1 (scale 1.0). Each group carries `lr_scale`; the schedule multiplies it in.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def layer_id_for_vit(name: str, num_layers: int) -> int:
    """Layer id (0 .. num_layers+1) of a parameter name, as `get_num_layer_for_vit` assigns it."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    skip_list: set[str] | None = None,
    decay_mask_tokens: bool = True,
) -> list[dict]:
    """AdamW parameter groups reproducing the reference. Each group: params, weight_decay, lr_scale, names."""
    if skip_list is None:
        skip_list = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    num_layers = len(model.blocks) if hasattr(model, "blocks") else 0
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = (
            param.ndim == 1 or name.endswith(".bias") or name in skip_list
            or (not decay_mask_tokens and name.startswith("mask_token"))
        )
        kind = "no_decay" if no_decay else "decay"
        layer = layer_id_for_vit(name, num_layers) if layer_decay is not None else None
        key = kind if layer is None else f"layer_{layer}_{kind}"
        if key not in groups:
            scale = 1.0 if layer is None else layer_decay ** (num_layers + 1 - layer)
            groups[key] = {"params": [], "names": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return list(groups.values())


def cosine_schedule(
    base: float, final: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0,
    warmup_steps: int = -1, start_warmup: float = 0.0,
) -> np.ndarray:
    """Per-step values: linear warmup from `start_warmup` to `base`, then cosine from `base` to `final`.

    Same arithmetic as the reference `utils.cosine_scheduler` (warmup from 0 by default)."""
    warmup_iters = warmup_epochs * steps_per_epoch if warmup_steps <= 0 else warmup_steps
    total = epochs * steps_per_epoch
    warmup = np.linspace(start_warmup, base, warmup_iters) if warmup_iters > 0 else np.array([])
    iters = np.arange(total - warmup_iters)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / max(len(iters), 1)))
    schedule = np.concatenate((warmup, cosine))
    assert len(schedule) == total, (len(schedule), total)
    return schedule


def scaled_lr(base_lr: float, total_batch: int) -> float:
    """The reference's linear scaling rule: lr = base_lr * total_batch / 256."""
    return base_lr * total_batch / 256


def apply_schedule(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float | None = None) -> None:
    """Set each group's lr to lr * lr_scale (and decayed groups' weight decay), as the reference does per step."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if weight_decay is not None and group["weight_decay"] > 0:
            group["weight_decay"] = weight_decay


def adamw(groups: list[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over `param_groups` output (the bookkeeping key `names` is kept on each group)."""
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


__all__ = ["layer_id_for_vit", "param_groups", "cosine_schedule", "scaled_lr", "apply_schedule", "adamw"]
