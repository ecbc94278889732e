"""Benchmarks: time one training step and report throughput, memory and (on a GPU) TFLOP/s and MFU.

`python -m mvd_lib bench --preset vit_micro --device cpu` times an MVD distillation step: student forward
and backward on the visible tokens with two decoders, both frozen teachers' forward on the full clip, the
Smooth-L1 losses and an AdamW update, on random clips (data loading is not measured). It prints ONE JSON line.
This is a measurement, not a test: nothing here asserts a speed.

FLOPs come from flops.py (analytic, 2 x MACs, backward counted as 2 x forward); MFU = achieved / peak bf16.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from mvd_lib import devices
from mvd_lib.blocks import attention_impl
from mvd_lib.build import build_distillation
from mvd_lib.config import DEFAULT_TEACHER, mvd_decoder_config
from mvd_lib.flops import image_encoder_macs, student_macs, train_step_flops, encoder_macs
from mvd_lib.distill import mvd_loss, teacher_targets
from mvd_lib.masking import masked_count, tube_mask
from mvd_lib.optim import adamw, param_groups
from mvd_lib.rng import generator, seeded


@dataclass
class BenchResult:
    run: str  # what was timed, e.g. "distill"
    preset: str  # student preset
    teacher: str  # teacher preset
    device: str  # device description
    dtype: str  # compute dtype
    attention: str  # "sdpa" or "math"
    batch: int  # clips per step
    clip: str  # T x H x W
    tokens: int  # tokens per clip
    visible: int  # visible tokens per clip
    steps: int  # timed steps
    sec_per_step: float
    clips_per_s: float
    peak_mem_gb: float  # GPU: max allocated; CPU: process peak RSS
    step_tflop: float  # FLOPs of one step (analytic), in TFLOP
    tflops: float  # achieved TFLOP/s
    mfu: float | None  # achieved / peak bf16 (GPU only)

    def json(self) -> str:
        return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()})


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per call of `step`, after `warmup` untimed calls, synchronising the device around the timing."""
    for _ in range(warmup):
        step()
    devices.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    devices.synchronize(device)
    return (time.perf_counter() - start) / steps


def _settings(device: str, batch: int | None, steps: int | None, warmup: int | None,
              dtype: str | None) -> tuple[torch.device, int, int, int, torch.dtype]:
    """Device and defaults: batch 32 / 10 timed steps / 3 warm-up steps on a GPU, 8 / 3 / 1 on CPU."""
    dev = devices.resolve_device(device)
    on_gpu = dev.type != "cpu"
    batch = batch or (32 if on_gpu else 8)
    steps = steps or (10 if on_gpu else 3)
    warmup = (3 if on_gpu else 1) if warmup is None else warmup
    return dev, batch, steps, warmup, devices.parse_dtype(dtype, dev)


def _measure(step: Callable[[], None], dev: torch.device, cdtype: torch.dtype, attention: str, warmup: int,
             steps: int, batch: int, step_flop: float, **fields) -> BenchResult:
    """Time `step` and assemble the result (throughput, peak memory, TFLOP/s, MFU against the bf16 peak)."""
    devices.reset_peak_memory(dev)
    with attention_impl(attention):
        sec = time_steps(step, dev, warmup, steps)
    tflops = step_flop / sec / 1e12
    peak = devices.peak_tflops(dev)
    return BenchResult(
        device=devices.describe(dev), dtype=str(cdtype).replace("torch.", ""), attention=attention, batch=batch,
        steps=steps, sec_per_step=sec, clips_per_s=batch / sec, peak_mem_gb=devices.peak_memory_gb(dev),
        step_tflop=step_flop / 1e12, tflops=tflops, mfu=(tflops / peak) if peak else None, **fields)


def bench_distill(
    preset: str,
    device: str = "auto",
    batch: int | None = None,
    teacher: str | None = None,
    dtype: str | None = None,
    attention: str = "sdpa",
    steps: int | None = None,
    warmup: int | None = None,
    mask_ratio: float = 0.9,
    checkpointing: bool = False,
    seed: int = 0,
) -> BenchResult:
    """Time one MVD distillation step (student + image teacher + video teacher) on random clips."""
    dev, batch, steps, warmup, cdtype = _settings(device, batch, steps, warmup, dtype)
    teacher = teacher or DEFAULT_TEACHER.get(preset, preset)

    student, teachers = build_distillation(preset, teacher, seed=seed)
    cfg = student.cfg
    student.set_grad_checkpointing(checkpointing)
    student.to(dev).train()
    for t in teachers.values():
        t.to(dev)
    opt = adamw(param_groups(student, 0.05), lr=1.5e-4, betas=(0.9, 0.95))
    g = generator(seed)
    with seeded(seed):
        video = torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size).to(dev)
    img_cfg = teachers["img"].model.cfg
    teacher_video = video
    if img_cfg.img_size != cfg.img_size:  # e.g. H/14 image teacher on a 196 px view of the same crop
        teacher_video = torch.nn.functional.interpolate(
            video, size=(cfg.num_frames, img_cfg.img_size, img_cfg.img_size), mode="trilinear")

    def step() -> None:
        mask = tube_mask(batch, cfg.grid, mask_ratio, g).to(dev)
        with devices.autocast(dev, cdtype):
            loss, _ = mvd_loss(student, video, mask, teacher_targets(teachers, video, teacher_video))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    visible = cfg.num_tokens - masked_count(cfg.grid, mask_ratio)
    s_macs = student_macs(cfg, mvd_decoder_config(cfg), visible, student.out_dims)
    t_macs = image_encoder_macs(img_cfg, cfg.grid[0]) + encoder_macs(teachers["vid"].model.cfg)
    return _measure(step, dev, cdtype, attention, warmup, steps, batch, batch * train_step_flops(s_macs, t_macs),
                    run="distill", preset=preset, teacher=teacher, clip=f"{cfg.num_frames}x{cfg.img_size}x{cfg.img_size}",
                    tokens=cfg.num_tokens, visible=visible)


def _bench_batch(verb: str, cfg, batch: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs shaped like a batch of the run type's dataset."""
    g = generator(seed)
    spec = cfg.student if verb == "distill" else cfg.model
    if verb == "pretrain-image":
        out = {"image": torch.randn(batch, 3, spec.img_size, spec.img_size, generator=g)}
    else:
        out = {"video": torch.randn(batch, 3, spec.num_frames, spec.img_size, spec.img_size, generator=g)}
    out["index"] = torch.arange(batch)
    if verb in ("finetune", "probe", "evaluate"):
        from mvd_lib.tasks import num_classes_of

        out["label"] = torch.randint(0, num_classes_of(cfg.data), (batch,), generator=g)
    return {k: v.to(device) for k, v in out.items()}


def _bench_teachers(cfg) -> dict[str, torch.nn.Module]:
    """Randomly initialised teachers of the architectures a distill preset names (weights do not change speed)."""
    from mvd_lib.build import build_image_teacher, build_video_teacher
    from mvd_lib.recipes import parse_ref, resolve_ref

    student = cfg.student.vit()
    out = {}
    for branch, ref in (("img", cfg.image_teacher), ("vid", cfg.video_teacher)):
        kind = parse_ref(ref)[0]
        if kind == "none":
            continue
        arch = resolve_ref(ref)[1].model.preset if kind == "run" else (cfg.teacher_arch or DEFAULT_TEACHER[cfg.student.preset])
        out[branch] = (build_image_teacher if branch == "img" else build_video_teacher)(arch, student, seed=1)
    return out


def bench_run(verb: str, preset: str, device: str = "auto", batch: int | None = None, dtype: str | None = None,
              attention: str = "sdpa", steps: int | None = None, warmup: int | None = None,
              overrides: list[str] | None = None) -> BenchResult:
    """Time one step of a run preset: an optimizer step for training run types, a forward pass per batch for
    probe (feature extraction) and evaluate (classification). Random weights and random inputs."""
    from mvd_lib import recipes
    from mvd_lib.tasks import (DistillTask, EMATeacher, FinetuneTask, MAETask, VideoMAETask, build_model)
    from mvd_lib.workflow import probe_encoder, Dependency

    cfg = recipes.preset(verb, preset, overrides)
    dev, batch, steps, warmup, cdtype = _settings(device, batch, steps, warmup, dtype)
    data = _bench_batch(verb, cfg, batch, dev, cfg.seed)
    teacher_name = "-"
    if verb in ("probe", "evaluate"):
        model = (probe_encoder(cfg, Dependency("random")) if verb == "probe" else build_model("evaluate", cfg)).to(dev).eval()
        vit = model.cfg

        def step() -> None:
            with torch.no_grad(), devices.autocast(dev, cdtype):
                model(data["video"])

        flops = 2 * batch * encoder_macs(vit)
        tokens, visible = vit.num_tokens, vit.num_tokens
    else:
        if verb == "pretrain-image":
            model = build_model(verb, cfg)
            task = MAETask(model, cfg.mask_ratio, cfg.seed)
        elif verb == "pretrain-video":
            model = build_model(verb, cfg)
            task = VideoMAETask(model, cfg.mask_ratio, cfg.mask_type, cfg.seed)
        elif verb == "distill":
            teachers = _bench_teachers(cfg)
            dims = {"ema": cfg.student.vit().width} if cfg.ema else {b: t.out_dim for b, t in teachers.items()}
            model = build_model(verb, cfg, dims)
            if cfg.ema:
                teachers = {"ema": EMATeacher(model, cfg.ema_momentum)}
            for t in teachers.values():
                t.to(dev)
            teacher_name = ",".join(f"{b}:{t.model.cfg.width}d" for b, t in teachers.items())
            task = DistillTask(model, teachers, cfg)
        else:  # finetune
            model = build_model(verb, cfg)
            task = FinetuneTask(model, cfg)
        model.to(dev).train()
        opt = torch.optim.AdamW(task.param_groups(cfg.optim), lr=1e-4, betas=cfg.optim.betas)

        def step() -> None:
            with devices.autocast(dev, cdtype):
                loss, _ = task.loss(model, data, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(task, "after_step"):
                task.after_step(0)

        flops = batch * task.flops_per_sample()
        vit = model.cfg
        tokens = vit.num_tokens
        ratio = getattr(cfg, "mask_ratio", 0.0) if verb != "finetune" else 0.0
        kind = getattr(cfg, "mask_type", "random" if verb == "pretrain-image" else "tube")
        if verb == "pretrain-image":
            tokens = vit.num_patches_2d
            visible = tokens - masked_count((1, 1, tokens), ratio, "random")
        elif ratio and getattr(cfg, "mode", "masked") == "masked":
            visible = tokens - masked_count(vit.grid, ratio, kind)
        else:
            visible = tokens
    spec = cfg.student if verb == "distill" else cfg.model
    return _measure(step, dev, cdtype, attention, warmup, steps, batch, flops, run=verb, preset=preset,
                    teacher=teacher_name, clip=f"{spec.num_frames}x{spec.img_size}x{spec.img_size}", tokens=tokens,
                    visible=visible)
