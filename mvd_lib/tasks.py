"""Run types: the datasets, models and per-batch losses of each verb, and how a finished run is reloaded.

    pretrain-image   MAE on stills (MAEPretrain, random masking 0.75, normalized-pixel MSE)
    pretrain-video   VideoMAE on clips (VideoMAEPretrain, tube masking 0.9, normalized-pixel MSE)
    distill          MVD: student + frozen teachers (or an EMA teacher, or per-token distillation)
    finetune         VideoClassifier with the reference recipe, then evaluation on the test split
    probe            linear probes on frozen features (no training loop)
    evaluate         multi-view evaluation of a finetuned classifier (no training loop)

Masks are drawn per sample from a generator seeded by (seed, epoch, sample index), so they do not depend on
batch composition, worker count or world size: a resumed run and a 2-process run see the same masks.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mvd_lib.augment import MixupCutmix, batch_generator, smoothed_targets, soft_target_cross_entropy
from mvd_lib.build import build_student
from mvd_lib.checkpoint import load_checkpoint
from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import (DecoderConfig, mae_decoder_config,
                            videomae_decoder_config)
from mvd_lib.distill import MVDLoss, mvd_loss, teacher_targets
from mvd_lib.engine import OptimConfig
from mvd_lib.flops import block_macs, decoder_macs, encoder_macs, image_encoder_macs, student_macs
from mvd_lib.losses import distillation_loss, image_pixel_targets, pixel_loss, video_pixel_targets
from mvd_lib.mae import ImageViT, MAEPretrain
from mvd_lib.masking import gather_masked, masked_count, num_masked, random_mask, tube_mask
from mvd_lib.optim import param_groups
from mvd_lib.recipes import (DataSpec, DistillConfig, FinetuneConfig, ModelSpec)
from mvd_lib.runs import ConfigError
from mvd_lib.student import TokenDistillStudent
from mvd_lib.synthetic import SyntheticClips
from mvd_lib.teachers import FrozenTeacher
from mvd_lib.videomae import VideoMAEPretrain, videomae_encoder
from mvd_lib.vit import VideoViT


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


# ------------------------------------------------------------------------------------------------ data
def pretrain_clips(data: DataSpec, model: ModelSpec, teacher_size: int | None = None, seed: int = 0) -> Dataset:
    """Unlabeled clips for video pretraining and distillation."""
    if data.source == "synthetic":
        return SyntheticClips("pretrain", data.num_clips, data.synthetic, task=None, cache=data.memory_cache)
    from mvd_lib.video_data import VideoPretrainDataset

    return VideoPretrainDataset(Path(data.list_dir) / "train.csv", clip_len=model.num_frames, stride=data.sampling_rate,
                                input_size=model.img_size, teacher_size=teacher_size, root=data.root or None,
                                seed=seed, strict=data.strict, cache=_clip_cache(data))


def labeled_clips(data: DataSpec, model: ModelSpec, split: str, seed: int = 0, train_aug: Any = None) -> Dataset:
    """Labeled clips of a split ("train" or "test"); real lists use dense/segment sampling and test views."""
    if data.source == "synthetic":
        n = data.num_clips if split == "train" else data.num_test
        return SyntheticClips(split, n, data.synthetic, task=data.task, cache=data.memory_cache)
    from mvd_lib.video_data import VideoClsDataset, num_classes

    mode = "train" if split == "train" else "test"
    kwargs: dict[str, Any] = {}
    if train_aug is not None and mode == "train":
        kwargs = dict(flip=train_aug.flip_prob > 0, scale=train_aug.crop_scale or (1.0, 1.0))
    return VideoClsDataset(Path(data.list_dir) / f"{split}.csv", num_classes(data.dataset), mode=mode,
                           sampling=data.sampling, clip_len=model.num_frames, stride=data.sampling_rate,
                           crop_size=model.img_size, test_clips=data.test_clips, test_crops=data.test_crops,
                           root=data.root or None, seed=seed, strict=data.strict, cache=_clip_cache(data), **kwargs)


def _clip_cache(data: DataSpec):
    if not data.clip_cache:
        return None
    from mvd_lib.clip_cache import ClipCache

    return ClipCache(data.clip_cache)


def num_classes_of(data: DataSpec) -> int:
    if data.source == "synthetic":
        return data.synthetic.num_appearance if data.task == "appearance" else data.synthetic.num_motions
    from mvd_lib.video_data import num_classes

    return num_classes(data.dataset)


# ------------------------------------------------------------------------------------------------ models
def _decoder(default: DecoderConfig, width: int, depth: int, heads: int) -> DecoderConfig:
    over = {k: v for k, v in (("width", width), ("depth", depth), ("heads", heads)) if v}
    return dataclasses.replace(default, **over)


def build_model(verb: str, cfg: Any, teacher_dims: dict[str, int] | None = None) -> nn.Module:
    """A fresh model for a run (weights from cfg.seed); distill needs the teachers' widths."""
    if verb == "pretrain-image":
        vit = cfg.model.vit()  # image models use img_size and patch_size
        return MAEPretrain(vit, _decoder(mae_decoder_config(vit), cfg.decoder_width, cfg.decoder_depth,
                                         cfg.decoder_heads), seed=cfg.seed)
    if verb == "pretrain-video":
        vit = cfg.model.vit()
        return VideoMAEPretrain(vit, _decoder(videomae_decoder_config(vit), cfg.decoder_width, cfg.decoder_depth,
                                              cfg.decoder_heads), seed=cfg.seed)
    if verb == "distill":
        vit = cfg.student.vit()
        dims = dict(teacher_dims or {})
        if cfg.mode == "token":
            return TokenDistillStudent(vit, dims, seed=cfg.seed)
        over = {k: v for k, v in (("width", cfg.decoder_width), ("depth", cfg.decoder_depth),
                                  ("heads", cfg.decoder_heads)) if v}
        return build_student(vit, dims, pixel=cfg.pixel, seed=cfg.seed, **over)
    if verb in ("finetune", "evaluate"):
        return VideoClassifier(cfg.model.vit(), cfg.num_classes or num_classes_of(cfg.data),
                               fc_drop=getattr(cfg, "fc_drop", 0.0), seed=cfg.seed)
    raise ConfigError(f"{verb} runs have no model of their own")


def encoder_from_run(verb: str, cfg: Any, model_path: Path) -> nn.Module:
    """The encoder of a finished run (MAE image encoder, VideoMAE / MVD / finetuned video encoder), loaded
    strictly from its model.pth; pretraining decoders and classifier heads are dropped by name."""
    if verb == "pretrain-image":
        model: nn.Module = ImageViT(cfg.model.vit(), seed=None)
    elif verb == "pretrain-video":
        model = videomae_encoder(cfg.model.vit(), seed=None)
    elif verb == "distill":
        model = VideoViT(cfg.student.vit(), pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=None)
    elif verb == "finetune":
        model = VideoViT(cfg.model.vit(), pos_embed="sincos3d", store_pos_embed=False, final_norm=False, seed=None)
    else:
        raise ConfigError(f"a {verb} run has no encoder to reuse")
    load_checkpoint(model, model_path, allow_missing=[r"^norm\."] if verb == "finetune" else ())
    return model


# ------------------------------------------------------------------------------------------------ tasks
class _TaskBase:
    """Shared parts of the engine.Task implementations."""

    model: nn.Module

    def __init__(self, model: nn.Module, seed: int):
        self.model, self.seed = model, seed

    def param_groups(self, optim: OptimConfig) -> list[dict]:
        return param_groups(self.model, optim.weight_decay, optim.layer_decay if optim.layer_decay < 1.0 else None)

    def flops_per_sample(self) -> float:
        return 0.0


class MAETask(_TaskBase):
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


class VideoMAETask(_TaskBase):
    """pretrain-video: batch {"video", "index"} -> VideoMAE normalized-pixel loss on masked tubelets."""

    def __init__(self, model: VideoMAEPretrain, mask_ratio: float, mask_type: str, seed: int):
        super().__init__(model, seed)
        self.mask_ratio, self.mask_type = mask_ratio, mask_type

    def loss(self, net: nn.Module, batch: dict, epoch: int):
        video = batch["video"]
        cfg = self.model.cfg
        mask = sample_masks(batch["index"], epoch, self.seed, cfg.grid, self.mask_ratio, self.mask_type)
        pred = net(video, mask)
        loss = pixel_loss(pred, gather_masked(video_pixel_targets(video, cfg.patch_size, cfg.tubelet_size), mask))
        return loss, {"pixel": loss.detach()}

    def flops_per_sample(self) -> float:
        cfg, dec = self.model.cfg, self.model.decoder_cfg
        vis = cfg.num_tokens - masked_count(cfg.grid, self.mask_ratio, self.mask_type)
        return 2 * 3 * (encoder_macs(cfg, vis) + decoder_macs(dec, cfg.width, vis, cfg.num_tokens, cfg.tubelet_dim))


class EMATeacher(FrozenTeacher):
    """Bootstrapped teacher (paper Table 8): an exponential moving average of the student's encoder.
    forward(video) -> [B, N, D], the last block before the final norm, like the fixed teachers."""

    def __init__(self, student: VideoViT, momentum: float):
        encoder = VideoViT(student.cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=None)
        encoder.load_state_dict({k: v for k, v in student.state_dict().items() if k in encoder.state_dict()})
        super().__init__(encoder)
        self.momentum = momentum

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video, mask=None, pre_norm=True)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """teacher = m * teacher + (1 - m) * student, parameter by parameter."""
        params = dict(student.named_parameters())
        for name, p in self.model.named_parameters():
            p.mul_(self.momentum).add_(params[name].detach(), alpha=1 - self.momentum)


class DistillTask(_TaskBase):
    """distill: batch {"video", "index"[, "teacher_video"]} -> the MVD loss (distill.mvd_loss)."""

    def __init__(self, model: nn.Module, teachers: dict[str, nn.Module], cfg: DistillConfig, cached=None):
        super().__init__(model, cfg.seed)
        self.teachers, self.cfg, self.cached = teachers, cfg, cached
        self.spec = MVDLoss(weights={"img": cfg.lambda_img, "vid": cfg.lambda_vid, "pix": cfg.lambda_pix, "ema": 1.0},
                            beta=cfg.beta, norm_target=cfg.norm_target)

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
            total, parts = distillation_loss(preds, targets, self.spec.weights, self.spec.beta, self.spec.norm_target)
        else:
            mask = sample_masks(batch["index"], epoch, self.seed, self.model.cfg.grid, self.cfg.mask_ratio,
                                self.cfg.mask_type)
            total, parts = mvd_loss(net, video, mask, targets, self.spec)
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
            return 2 * 3 * s + 2 * self._teacher_macs()
        vis = cfg.num_tokens - masked_count(cfg.grid, self.cfg.mask_ratio, self.cfg.mask_type)
        s = student_macs(cfg, self.model.decoder_cfg, vis, self.model.out_dims)
        return 2 * 3 * s + (0 if self.cached is not None else 2 * self._teacher_macs())

    def _teacher_macs(self) -> float:
        total = 0.0
        for name, t in self.teachers.items():
            tc = t.model.cfg
            total += image_encoder_macs(tc, self.model.cfg.grid[0]) if name == "img" else encoder_macs(tc)
        return total


class FinetuneTask(_TaskBase):
    """finetune: batch {"video", "label"} -> cross-entropy with mixup/cutmix or label smoothing."""

    def __init__(self, model: VideoClassifier, cfg: FinetuneConfig):
        super().__init__(model, cfg.seed)
        self.cfg = cfg
        self.mix = MixupCutmix(cfg.augment, model.num_classes) if cfg.augment.mixing else None
        self._step = 0

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
