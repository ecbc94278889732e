"""Benchmarks: time one step of any run type and report throughput, memory and (on a GPU) TFLOP/s and MFU.

`python -m mvd_lib bench --run distill --preset laptop` builds exactly what a real run of that preset trains
(runtypes.py `prepare`: the same model, teachers of the same architectures and the same objective, with
random weights instead of trained ones) and times one optimizer step on random clips shaped like the run's
data: for distill, the student's forward and backward on the visible tokens with its decoders, both frozen
teachers' forward on the full clip, the Smooth-L1 losses and an AdamW update. Forward-only run types (probe,
evaluate, extract) time one forward pass of their model. Data loading is not measured. It prints ONE JSON
line. This is a measurement, not a test: nothing here asserts a speed.

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
from mvd_lib.config import REFERENCE_FIELDS, masked_count, model_spec
from mvd_lib.datasets import num_classes_of
from mvd_lib.flops import encoder_macs
from mvd_lib.profiles import preset as run_preset
from mvd_lib.rng import generator


@dataclass
class BenchResult:
    run: str  # what was timed: a run type, e.g. "distill"
    preset: str  # run preset, e.g. "laptop"
    arch: str  # architecture of the trained (or read) model
    teacher: str  # teachers' widths, e.g. "img:128d,vid:128d" ("-" without teachers)
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


def _random_deps(verb: str):
    """Every reference of a run type resolved to random weights: timing does not depend on trained values."""
    from mvd_lib.runtypes import Dependency

    return {name: Dependency("random", "random") for name in REFERENCE_FIELDS[verb]}


def _random_batch(verb: str, cfg, prepared, batch: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs shaped like a batch of the run type's dataset."""
    g = generator(seed)
    spec = model_spec(cfg)
    if verb == "pretrain-image":
        out = {"image": torch.randn(batch, 3, spec.img_size, spec.img_size, generator=g)}
    else:
        out = {"video": torch.randn(batch, 3, spec.num_frames, spec.img_size, spec.img_size, generator=g)}
    img = prepared.teachers.get("img")
    if img is not None and img.model.cfg.img_size != spec.img_size:  # e.g. an H/14 teacher on a 196 px view
        size = img.model.cfg.img_size
        out["teacher_video"] = torch.nn.functional.interpolate(out["video"], size=(spec.num_frames, size, size),
                                                               mode="trilinear")
    out["index"] = torch.arange(batch)
    if verb == "finetune":
        out["label"] = torch.randint(0, num_classes_of(cfg.data), (batch,), generator=g)
    return {k: v.to(device) for k, v in out.items()}


def bench_run(verb: str, preset: str, device: str = "auto", batch: int | None = None, dtype: str | None = None,
              attention: str = "sdpa", steps: int | None = None, warmup: int | None = None,
              overrides: list[str] | None = None, profile_overrides: list[str] | None = None) -> BenchResult:
    """Time one step of run preset `preset` of run type `verb` (see the module docstring)."""
    from mvd_lib.runtypes import RUN_TYPES

    cfg = run_preset(verb, preset, overrides, profile_overrides)
    dev, batch, steps, warmup, cdtype = _settings(device, batch, steps, warmup, dtype)
    prepared = RUN_TYPES[verb].prepare(cfg, _random_deps(verb), dev)
    model = prepared.model.to(dev)
    data = _random_batch(verb, cfg, prepared, batch, dev, cfg.seed)
    vit = model.cfg
    if prepared.objective is None:  # forward-only run types
        model.eval()

        def step() -> None:
            with torch.no_grad(), devices.autocast(dev, cdtype):
                model(data["video"])

        flops = 2 * batch * encoder_macs(vit)
        tokens = visible = vit.num_tokens
    else:
        objective = prepared.objective
        model.train()
        opt = torch.optim.AdamW(objective.param_groups(cfg.optim), lr=1e-4, betas=cfg.optim.betas)

        def step() -> None:
            with devices.autocast(dev, cdtype):
                loss, _ = objective.loss(model, data, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(objective, "after_step"):
                objective.after_step(0)

        flops = batch * objective.flops_per_sample()
        if verb == "pretrain-image":
            tokens = vit.num_patches_2d
            visible = tokens - masked_count((1, 1, tokens), cfg.mask_ratio, "random")
        else:
            tokens = vit.num_tokens
            masked = verb in ("pretrain-video", "distill") and getattr(cfg, "mode", "masked") == "masked"
            visible = tokens - masked_count(vit.grid, cfg.mask_ratio, cfg.mask_type) if masked else tokens
    teacher = ",".join(f"{b}:{t.model.cfg.width}d" for b, t in prepared.teachers.items()) or "-"
    spec = model_spec(cfg)
    return _measure(step, dev, cdtype, attention, warmup, steps, batch, flops, run=verb, preset=preset,
                    arch=spec.arch, teacher=teacher, clip=f"{spec.num_frames}x{spec.img_size}x{spec.img_size}",
                    tokens=tokens, visible=visible)
