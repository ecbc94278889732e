"""Objectives: what each training run type minimises on a batch (the engine's `Task`), and its FLOPs.

    MAEObjective        pretrain-image: MAE on stills, random masking, normalized-pixel MSE (MAE paper)
    VideoMAEObjective   pretrain-video: VideoMAE on clips, tube masking, normalized-pixel MSE
    DistillObjective    distill: MVD's masked feature prediction from frozen teachers (paper Sec. 3, Algorithm 1),
                        or from an EMA teacher (Table 8), or per-token distillation (Table 9)
    FinetuneObjective   finetune: cross-entropy with mixup/cutmix or label smoothing (mvd_reference.md section 6)

An objective holds its model; `loss(net, batch, epoch)` returns (loss, {part: value}) where `net` is the model
or its DDP wrapper. Masks are drawn per sample from a generator seeded by (seed, epoch, sample index), so they
do not depend on batch composition, worker count or world size: a resumed run and a 2-process run see the same
masks.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mvd_lib.augment import MixupCutmix, batch_generator, smoothed_targets, soft_target_cross_entropy
from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import DistillConfig, FinetuneConfig, OptimConfig
from mvd_lib.distill import mvd_loss, teacher_targets
from mvd_lib.flops import block_macs, decoder_macs, encoder_macs, image_encoder_macs, student_macs
from mvd_lib.losses import distillation_loss, image_pixel_targets, pixel_loss, video_pixel_targets, video_raw_pixels
from mvd_lib.mae import MAEPretrain
from mvd_lib.masking import gather_masked, masked_count, num_masked, random_mask, tube_mask
from mvd_lib.optim import param_groups
from mvd_lib.videomae import VideoMAEPretrain


# ------------------------------------------------------------------------------------------------ masks
def sample_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (numpy SeedSequence: well mixed, order-sensitive)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def sample_masks(indices: torch.Tensor, epoch: int, seed: int, grid: tuple[int, int, int], ratio: float,
                 kind: str = "tube") -> torch.Tensor:
    """[B, N] masks (True = masked), one per sample, each a function of (seed, epoch, sample index) only."""
    out = []
    for i in indices.tolist():
        g = torch.Generator().manual_seed(sample_seed(seed, epoch, i, 0x6D61736B))
        if kind == "tube":
            out.append(tube_mask(1, grid, ratio, g))
        else:
            t, h, w = grid
            out.append(random_mask(1, t * h * w, ratio, g))
    return torch.cat(out).to(indices.device)


# ------------------------------------------------------------------------------------------------ objectives
class _ObjectiveBase:
    """Shared parts of the objectives (engine.Task implementations)."""

    model: nn.Module

    def __init__(self, model: nn.Module, seed: int):
        self.model, self.seed = model, seed

    def param_groups(self, optim: OptimConfig) -> list[dict]:
        return param_groups(self.model, optim.weight_decay, optim.layer_decay if optim.layer_decay < 1.0 else None)

    def flops_per_sample(self) -> float:
        return 0.0


class MAEObjective(_ObjectiveBase):
    """pretrain-image: batch {"image", "index"} -> MAE normalized-pixel loss on randomly masked patches."""

    def __init__(self, model: MAEPretrain, mask_ratio: float, seed: int):
        super().__init__(model, seed)
        self.mask_ratio = mask_ratio

    def loss(self, net: nn.Module, batch: dict, epoch: int):
        images = batch["image"]
        g = self.model.grid_size
        mask = sample_masks(batch["index"], epoch, self.seed, (1, g, g), self.mask_ratio, kind="random")
        pred = net(images, mask)
        loss = pixel_loss(pred, gather_masked(image_pixel_targets(images, self.model.cfg.patch_size), mask))
        return loss, {"pixel": loss.detach()}

    def flops_per_sample(self) -> float:
        cfg, dec = self.model.cfg, self.model.decoder_cfg
        n = cfg.num_patches_2d
        vis = n - num_masked(n, self.mask_ratio)
        enc = n * cfg.patch_size**2 * cfg.in_chans * cfg.width + cfg.depth * block_macs(vis + 1, cfg.width, cfg.mlp_ratio)
        de = decoder_macs(dec, cfg.width, vis + 1, n + 1, cfg.patch_size**2 * cfg.in_chans)
        return 2 * 3 * (enc + de)


class VideoMAEObjective(_ObjectiveBase):
    """pretrain-video: batch {"video", "index"} -> VideoMAE pixel loss on masked tubelets (targets normalized per
    tubelet and channel when norm_pix_loss, as in every released run; else the raw pixels in [0, 1])."""

    def __init__(self, model: VideoMAEPretrain, mask_ratio: float, mask_type: str, seed: int,
                 norm_pix_loss: bool = True):
        super().__init__(model, seed)
        self.mask_ratio, self.mask_type, self.norm_pix_loss = mask_ratio, mask_type, norm_pix_loss

    def loss(self, net: nn.Module, batch: dict, epoch: int):
        video = batch["video"]
        cfg = self.model.cfg
        mask = sample_masks(batch["index"], epoch, self.seed, cfg.grid, self.mask_ratio, self.mask_type)
        pred = net(video, mask)
        if self.norm_pix_loss:
            target = video_pixel_targets(video, cfg.patch_size, cfg.tubelet_size)
        else:
            target = video_raw_pixels(video, cfg.patch_size, cfg.tubelet_size)
        loss = pixel_loss(pred, gather_masked(target, mask))
        return loss, {"pixel": loss.detach()}

    def flops_per_sample(self) -> float:
        cfg, dec = self.model.cfg, self.model.decoder_cfg
        vis = cfg.num_tokens - masked_count(cfg.grid, self.mask_ratio, self.mask_type)
        return 2 * 3 * (encoder_macs(cfg, vis) + decoder_macs(dec, cfg.width, vis, cfg.num_tokens, cfg.tubelet_dim))


class DistillObjective(_ObjectiveBase):
    """distill: batch {"video", "index"[, "teacher_video"]} -> the MVD loss (distill.mvd_loss)."""

    def __init__(self, model: nn.Module, teachers: dict[str, nn.Module], cfg: DistillConfig, cached=None):
        super().__init__(model, cfg.seed)
        self.teachers, self.cfg, self.cached = teachers, cfg, cached

    def param_groups(self, optim: OptimConfig) -> list[dict]:
        return param_groups(self.model, optim.weight_decay)  # reference: mask tokens decayed (named quirk)

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cached is not None:
            return self.cached(batch["index"])
        return teacher_targets(self.teachers, batch["video"], batch.get("teacher_video"))

    def loss(self, net: nn.Module, batch: dict, epoch: int):
        video = batch["video"]
        targets = self.targets(batch)
        if self.cfg.mode == "token":
            preds = net(video)
            weights = {k: self.cfg.loss.weight(k) for k in preds}
            total, parts = distillation_loss(preds, targets, weights, self.cfg.loss.beta, self.cfg.loss.norm_target)
        else:
            mask = sample_masks(batch["index"], epoch, self.seed, self.model.cfg.grid, self.cfg.mask_ratio,
                                self.cfg.mask_type)
            total, parts = mvd_loss(net, video, mask, targets, self.cfg.loss)
        return total, {k: v.detach() for k, v in parts.items()}

    def after_step(self, step: int) -> None:
        if "ema" in self.teachers:
            self.teachers["ema"].update(self.model)

    def extra_state(self) -> dict:
        return {"ema": self.teachers["ema"].model.state_dict()} if "ema" in self.teachers else {}

    def load_extra_state(self, state: dict) -> None:
        if "ema" in state and "ema" in self.teachers:
            self.teachers["ema"].model.load_state_dict(state["ema"])

    def flops_per_sample(self) -> float:
        cfg = self.model.cfg
        if self.cfg.mode == "token":
            s = encoder_macs(cfg) + sum(2 * cfg.num_tokens * cfg.width * 4 * cfg.width for _ in self.teachers)
            return 2 * 3 * s + 2 * self.teacher_macs()
        vis = cfg.num_tokens - masked_count(cfg.grid, self.cfg.mask_ratio, self.cfg.mask_type)
        s = student_macs(cfg, self.model.decoder_cfg, vis, self.model.out_dims)
        return 2 * 3 * s + (0 if self.cached is not None else 2 * self.teacher_macs())

    def teacher_macs(self) -> float:
        """Forward MACs of every teacher on one clip (paid per step, or once per clip when targets are cached)."""
        total = 0.0
        for name, t in self.teachers.items():
            tc = t.model.cfg
            total += image_encoder_macs(tc, self.model.cfg.grid[0]) if name == "img" else encoder_macs(tc)
        return total


class FinetuneObjective(_ObjectiveBase):
    """finetune: batch {"video", "label"} -> cross-entropy with mixup/cutmix or label smoothing."""

    def __init__(self, model: VideoClassifier, cfg: FinetuneConfig):
        super().__init__(model, cfg.seed)
        self.cfg = cfg
        self.mix = MixupCutmix(cfg.augment, model.num_classes) if cfg.augment.mixing else None

    def loss(self, net: nn.Module, batch: dict, epoch: int):
        video, labels = batch["video"], batch["label"]
        if self.mix is not None:
            g = batch_generator(self.seed, epoch, int(batch["index"][0]))
            video, targets = self.mix(video, labels, g)
        else:
            targets = smoothed_targets(labels, self.model.num_classes, self.cfg.augment.label_smoothing)
        logits = net(video)
        loss = soft_target_cross_entropy(logits, targets.to(logits.dtype))
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"ce": loss.detach(), "train_top1": acc.detach() * 100}

    def flops_per_sample(self) -> float:
        reps = max(1, self.cfg.augment.repeated_aug)
        return 2 * 3 * encoder_macs(self.model.cfg) * reps
