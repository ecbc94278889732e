"""Budget planner: what a run will cost before it runs, on given hardware. Every number here is an ESTIMATE.

Paper §4.3 "training time" and Table 6 (ViT-B on 32 V100s: VideoMAE 800 epochs 107 h, 1600 epochs 214 h; MVD
from the 800-epoch video teacher, 400 epochs, 57 h more), and the per-view GFLOPs of Tables 3-5. The reference
recipes (mvd_reference.md §5-6) fix a TOTAL batch (1024 for ViT-S/B pretraining) and scale the learning rate with
it, lr = base_lr x total_batch / 256 (`optim.scaled_lr`); a smaller machine reaches that batch with gradient
accumulation (the reference's `update_freq`, our `optim.accum_steps`).

    cfg = profiles.preset("distill", "paper_vit_b")
    plan = budget.estimate(cfg, "H100", gpus=8, num_samples=240_000)
    plan.table()            # FLOPs per step and per run, memory per GPU, hours, lr, accumulation

- **FLOPs** come from the run's own objective (`objectives.py`, `flops_per_sample`: analytic, 2 x MACs, backward
  counted as twice the forward, frozen teachers' forward included), built on the meta device by
  `runtypes.RUN_TYPES[verb].prepare` with random stand-ins for its references ("none" stays none), so
  no memory is allocated and the count is the one a real run records (`metrics.json`: train_flops and, for
  cached teacher targets, target_flops: the teachers' forward once per clip).
- **Hours** = total FLOPs / (GPUs x peak TFLOP/s x MFU). MFU (model FLOPs utilisation) is an assumption
  (default 0.4); a device measured by `bench` (`measured_device`) carries its achieved rate, and no MFU is
  applied to it. Data loading, evaluation and checkpointing are not counted.
- **Memory per GPU** = trainable parameters x (4 weights + 4 gradients + 8 AdamW moments) bytes, + 4 bytes per
  frozen (teacher) parameter, + 4 bytes per parameter for DDP's gradient buckets when gpus > 1, + activations
  kept for the backward pass: per token and transformer block about `ACT_ELEMENTS` x width values (layer-norm
  and linear inputs, q/k/v, attention output, the MLP's two 4 x width tensors), at 2 bytes under bf16/fp16
  autocast and 4 in fp32; explicit ("math") attention also keeps heads x tokens softmax values per token;
  activation checkpointing keeps only each block's input. Plus the input clips and the teachers' targets.
  Not counted: the CUDA context and the allocator's slack on a GPU, the framework's own memory on a CPU.
  `tests/test_budget.py` checks the estimate against the peak memory `bench` measures on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvd_lib.config import (CONFIG_TYPES, REFERENCE_FIELDS, DistillConfig, FinetuneConfig, masked_count, model_spec,
                            num_masked)
from mvd_lib.optim import scaled_lr

GIB = 2**30
ACT_ELEMENTS = 17  # values kept per token and block, in units of the block's width (see the module docstring)
BYTES_PER_PARAM_TRAINED = 4 + 4 + 8  # fp32 weight, fp32 gradient, AdamW exp_avg + exp_avg_sq
BYTES_PER_PARAM_FROZEN = 4  # fp32 weight (teachers run under autocast but keep fp32 weights)
BYTES_PER_PARAM_DDP = 4  # DDP's gradient buckets (a copy of the gradients) when gpus > 1


# The paper's Table 6 (docs/paper_results.md): ViT-B on K400, 32 V100 GPUs, hours of pretraining, K400 top-1 after
# finetuning. The MVD row's student is distilled from the 800-epoch VideoMAE (its 107 hours counted on top).
PAPER_TABLE6: tuple[dict[str, Any], ...] = (
    {"method": "VideoMAE", "epochs": 800, "hours": 107.0, "teacher_hours": 0.0, "k400": 81.0},
    {"method": "VideoMAE", "epochs": 1600, "hours": 214.0, "teacher_hours": 0.0, "k400": 81.5},
    {"method": "MVD, video teacher of 800 epochs", "epochs": 400, "hours": 57.0, "teacher_hours": 107.0, "k400": 81.9},
)
PAPER_TABLE6_MACHINE = (32, "V100 32GB")  # GPUs and the device row closest to them (the paper says "32 V100 GPUs")


# ================================================================================================ hardware
@dataclass(frozen=True)
class Device:
    """One accelerator (or this machine's CPU): throughput and memory."""

    name: str
    bf16_tflops: float  # dense 16-bit tensor-core peak (bf16; fp16 where the chip has no bf16, e.g. V100)
    fp32_tflops: float  # fp32 peak (no TF32)
    memory_gib: float  # memory per device (the vendors' GB, read as GiB)
    measured: bool = False  # the TFLOP/s are achieved rates measured by bench, not peaks: no MFU applied
    source: str = ""  # where the numbers come from

    def tflops(self, dtype: str) -> float:
        """The rate for a compute dtype ("bf16", "fp16" or "fp32")."""
        if dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"dtype must be bf16, fp16 or fp32, got {dtype!r}")
        return self.fp32_tflops if dtype == "fp32" else self.bf16_tflops


# Vendor datasheet peaks (dense, no sparsity). V100 has no bf16: its fp16 tensor-core peak, the precision the
# paper's V100 runs used (mixed precision with a grad scaler). SXM parts unless named.
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("H200", 989.0, 67.0, 141.0, source="NVIDIA H200 SXM datasheet"),
    Device("H100", 989.0, 67.0, 80.0, source="NVIDIA H100 SXM 80GB datasheet"),
    Device("A100 80GB", 312.0, 19.5, 80.0, source="NVIDIA A100 SXM 80GB datasheet"),
    Device("V100 32GB", 125.0, 15.7, 32.0, source="NVIDIA V100 SXM2 32GB datasheet; fp16 (no bf16)"),
    Device("RTX 4090", 165.2, 82.6, 24.0, source="NVIDIA Ada whitepaper, fp16/bf16 with fp32 accumulate"),
)}


def total_ram_gib() -> float:
    """This machine's physical memory in GiB (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return 0.0


def measured_device(result: Any, name: str = "this CPU") -> Device:
    """A Device from a `bench.BenchResult`: its achieved TFLOP/s (for every dtype) and this machine's memory.
    The rate holds for the model and batch bench timed; other models run at other rates."""
    rate = float(result.tflops)
    if not rate > 0:
        raise ValueError(f"the bench result reports {result.tflops} TFLOP/s; time at least one step")
    return Device(f"{name} ({result.device})", rate, rate, total_ram_gib(), measured=True,
                  source=f"bench {result.run} {result.preset}, batch {result.batch}: {rate:.3g} TFLOP/s achieved")


def device(spec: str | Device) -> Device:
    """A Device by name (DEVICES) or as given."""
    if isinstance(spec, Device):
        return spec
    if spec not in DEVICES:
        raise ValueError(f"unknown device {spec!r}; choose one of {list(DEVICES)} or pass a Device "
                         "(budget.measured_device(bench_result) for this machine)")
    return DEVICES[spec]


# ================================================================================================ batch arithmetic
def accum_steps(total_batch: int, per_gpu_batch: int, gpus: int) -> int:
    """Gradient-accumulation steps for `gpus` GPUs of `per_gpu_batch` clips to reach `total_batch` clips per
    optimizer step: ceil(total / (per_gpu x gpus)). When per_gpu x gpus does not divide the total, the
    effective batch (`per_gpu x gpus x accum`) exceeds it."""
    for name, value in (("total_batch", total_batch), ("per_gpu_batch", per_gpu_batch), ("gpus", gpus)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return -(-total_batch // (per_gpu_batch * gpus))


def verb_of(cfg: Any) -> str:
    """The run type of a run config."""
    for verb, cls in CONFIG_TYPES.items():
        if type(cfg) is cls:
            return verb
    raise TypeError(f"not a run config: {type(cfg).__name__}")


def num_training_samples(cfg: Any) -> int:
    """Training samples per epoch: the benchmark's sizes, or the lines of `data.list_dir`/train.csv."""
    data = cfg.data
    if data.source == "synthetic":
        return data.num_images if verb_of(cfg) == "pretrain-image" else data.num_clips
    path = Path(data.list_dir) / "train.csv"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: pass num_samples (the videos of the training list)")
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# ================================================================================================ the model
@dataclass(frozen=True)
class Stack:
    """`depth` transformer blocks of `width` over `tokens` tokens (per sample), with `heads` heads."""

    name: str
    depth: int
    tokens: int
    width: int
    heads: int


@dataclass(frozen=True)
class ModelCost:
    """What one training sample of a run costs, from the run's objective and model."""

    flops_per_sample: float  # training FLOPs per sample paid every step (forward + backward + teachers' forward)
    flops_once_per_sample: float  # FLOPs paid once per training sample (cached teacher targets), else 0
    trainable_params: int
    frozen_params: int  # teachers (fixed or EMA)
    stacks: tuple[Stack, ...]  # the trained model's transformer blocks, for the activation estimate
    input_values: int  # input values per sample (clip or image, plus the teacher's view if separate)
    target_values: int  # teacher-target values per sample kept for the loss
    tokens: int  # tokens per sample
    visible: int  # tokens the encoder sees
    copies: int  # copies of each sample in a batch (repeated augmentation)


def _cached_targets(cfg: Any) -> bool:
    """Whether a distillation run caches its teachers' targets (runtypes.Distill.execute: deterministic
    synthetic clips, fixed teachers)."""
    if not isinstance(cfg, DistillConfig):
        return False
    fixed = any(getattr(cfg, b) != "none" for b in ("image_teacher", "video_teacher"))
    return cfg.cache_targets and not cfg.ema and fixed and cfg.data.source == "synthetic"


def stand_in_dependencies(cfg: Any) -> dict[str, Any]:
    """Every reference of a run config resolved to random weights of the same architecture, except "none",
    which stays absent (a teacher-less branch costs nothing)."""
    from mvd_lib.profiles import parse_ref
    from mvd_lib.runtypes import Dependency

    out = {}
    for name in REFERENCE_FIELDS[verb_of(cfg)]:
        kind = "none" if parse_ref(getattr(cfg, name)).kind == "none" else "random"
        out[name] = Dependency(kind, kind)
    return out


def model_cost(cfg: Any) -> ModelCost:
    """Build the run's model and objective on the meta device (no memory) and read its costs."""
    import torch

    from mvd_lib.runtypes import RUN_TYPES

    verb = verb_of(cfg)
    if verb in ("probe", "evaluate", "extract"):
        raise ValueError(f"a {verb} run does not train; estimate a training run (pretrain-image, pretrain-video, "
                         "distill, finetune)")
    with torch.device("meta"):
        prepared = RUN_TYPES[verb].prepare(cfg, stand_in_dependencies(cfg), torch.device("meta"))
    model, objective = prepared.model, prepared.objective
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for t in prepared.teachers.values() for p in t.parameters())
    per_sample = float(objective.flops_per_sample())
    once = 0.0
    if _cached_targets(cfg):
        teacher = 2 * float(objective.teacher_macs())
        per_sample, once = per_sample - teacher, teacher
    vit = model.cfg
    copies = 1
    targets = 0
    if verb == "pretrain-image":
        n = vit.num_patches_2d
        vis = n - num_masked(n, cfg.mask_ratio)
        dec = model.decoder_cfg
        stacks = (Stack("encoder", vit.depth, vis + 1, vit.width, vit.heads),
                  Stack("decoder", dec.depth, n + 1, dec.width, dec.heads))
        inputs, tokens = vit.in_chans * vit.img_size**2, n
    else:
        n = vit.num_tokens
        inputs, tokens = vit.in_chans * vit.num_frames * vit.img_size**2, n
        masked = verb in ("pretrain-video", "distill") and getattr(cfg, "mode", "masked") == "masked"
        vis = n - masked_count(vit.grid, cfg.mask_ratio, cfg.mask_type) if masked else n
        stacks = (Stack("encoder", vit.depth, vis, vit.width, vit.heads),)
        if verb == "pretrain-video":
            dec = model.decoder_cfg
            stacks += (Stack("decoder", dec.depth, n, dec.width, dec.heads),)
        elif verb == "distill":
            if masked:
                dec = model.decoder_cfg
                stacks += tuple(Stack(f"decoder_{b}", dec.depth, n, dec.width, dec.heads) for b in model.out_dims)
            targets = sum(n * d for b, d in model.out_dims.items() if b != "pix")
            img = prepared.teachers.get("img")
            if img is not None and img.model.cfg.img_size != vit.img_size:  # the teacher's own view
                inputs += vit.in_chans * vit.num_frames * img.model.cfg.img_size**2
        elif isinstance(cfg, FinetuneConfig):
            copies = max(1, cfg.augment.repeated_aug)
    return ModelCost(per_sample, once, trainable, frozen, stacks, inputs, targets, tokens, vis, copies)


# ================================================================================================ memory
@dataclass(frozen=True)
class Memory:
    """Estimated memory per GPU in GiB (see the module docstring for what is and is not counted)."""

    weights: float
    gradients: float
    optimizer: float  # AdamW moments
    frozen: float  # teachers' weights
    ddp: float  # DDP gradient buckets (gpus > 1)
    activations: float  # kept for the backward pass, for the per-GPU micro-batch
    inputs: float  # input clips and teacher targets of the micro-batch

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.frozen + self.ddp + self.activations + self.inputs

    @property
    def static(self) -> float:
        """What does not grow with the batch."""
        return self.weights + self.gradients + self.optimizer + self.frozen + self.ddp


def activation_bytes_per_sample(cost: ModelCost, dtype: str = "bf16", attention: str = "sdpa",
                                checkpointing: bool = False) -> float:
    """Bytes of activations one sample keeps for the backward pass (module docstring)."""
    if attention not in ("sdpa", "math"):
        raise ValueError(f"attention must be 'sdpa' or 'math', got {attention!r}")
    width_bytes = 4 if dtype == "fp32" else 2
    total = 0.0
    for s in cost.stacks:
        per_token = s.width if checkpointing else ACT_ELEMENTS * s.width
        if attention == "math" and not checkpointing:
            per_token += s.heads * s.tokens  # softmax probabilities
        total += s.depth * s.tokens * per_token
    return total * width_bytes * cost.copies


def memory(cost: ModelCost, per_gpu_batch: int, gpus: int = 1, dtype: str = "bf16", attention: str = "sdpa",
           checkpointing: bool = False) -> Memory:
    """Estimated memory per GPU for a micro-batch of `per_gpu_batch` samples."""
    p = cost.trainable_params
    act = activation_bytes_per_sample(cost, dtype, attention, checkpointing) * per_gpu_batch
    io = per_gpu_batch * cost.copies * 4 * (cost.input_values + cost.target_values)
    return Memory(weights=4 * p / GIB, gradients=4 * p / GIB, optimizer=8 * p / GIB,
                  frozen=BYTES_PER_PARAM_FROZEN * cost.frozen_params / GIB,
                  ddp=(BYTES_PER_PARAM_DDP * p if gpus > 1 else 0) / GIB, activations=act / GIB, inputs=io / GIB)


def fitting_batch(cost: ModelCost, total_batch: int, gpus: int, memory_gib: float, dtype: str = "bf16",
                  attention: str = "sdpa", checkpointing: bool = False) -> int:
    """The largest per-GPU batch among total/gpus, total/(2 gpus), total/(4 gpus), ... whose estimated memory fits
    in `memory_gib` (1 when none does)."""
    batch = max(1, total_batch // gpus)
    while batch > 1 and memory(cost, batch, gpus, dtype, attention, checkpointing).total > memory_gib:
        batch //= 2
    return batch


# ================================================================================================ the plan
@dataclass(frozen=True)
class Budget:
    """An estimated budget for one run on one machine (`estimate`)."""

    run: str  # run type
    preset: str  # run preset name
    arch: str  # trained architecture
    device: str  # device name
    measured: bool  # the device's rate was measured (bench), not a datasheet peak
    gpus: int
    dtype: str
    mfu: float  # assumed model FLOPs utilisation (1.0 for a measured device: its rate is already achieved)
    tflops_per_gpu: float  # the rate used: peak x MFU, or the measured rate
    total_batch: int  # the recipe's total batch per optimizer step
    per_gpu_batch: int  # micro-batch per GPU
    accum_steps: int  # gradient accumulation to reach the total batch
    effective_batch: int  # per_gpu_batch x gpus x accum_steps
    base_lr: float  # the recipe's base lr
    lr: float  # after the linear scaling rule (by the effective batch) when the recipe scales it
    min_lr: float
    epochs: int
    samples_per_epoch: int  # training samples (clips or images)
    steps_per_epoch: int  # optimizer steps
    total_steps: int
    tokens: int
    visible: int
    trainable_params: int
    frozen_params: int
    flops_per_step: float  # every-step FLOPs of one optimizer step
    flops_once: float  # FLOPs paid once (cached teacher targets)
    total_flops: float  # the whole run
    hours: float  # wall-clock hours at the assumed rate
    gpu_hours: float
    memory: Memory  # per GPU
    memory_available_gib: float  # per GPU

    @property
    def fits(self) -> bool:
        """Whether the estimated memory fits the device (the estimate leaves out the CUDA context)."""
        return self.memory.total <= self.memory_available_gib

    def summary(self) -> dict[str, Any]:
        """The headline numbers as one flat row (for a table comparing plans)."""
        return {"run": self.run, "preset": self.preset, "arch": self.arch, "device": self.device, "gpus": self.gpus,
                "per_gpu_batch": self.per_gpu_batch, "accum_steps": self.accum_steps,
                "effective_batch": self.effective_batch, "lr": self.lr, "epochs": self.epochs,
                "samples_per_epoch": self.samples_per_epoch, "total_steps": self.total_steps,
                "tflop_per_step": self.flops_per_step / 1e12, "total_eflop": self.total_flops / 1e18,
                "memory_gib_per_gpu": self.memory.total, "fits": self.fits, "mfu": self.mfu, "hours": self.hours,
                "gpu_hours": self.gpu_hours}

    def table(self):
        """Every quantity with how it was obtained, as a pandas DataFrame (quantity, value, how)."""
        import pandas as pd

        m = self.memory
        mfu = "measured by bench (no MFU applied)" if self.measured else f"datasheet peak x MFU {self.mfu:g}"
        rows = [
            ("run", f"{self.run} {self.preset} ({self.arch})", "the run config"),
            ("machine", f"{self.gpus} x {self.device}, {self.dtype}", "given"),
            ("tokens / visible per clip", f"{self.tokens} / {self.visible}", "config (masked_count)"),
            ("trainable / frozen parameters", f"{self.trainable_params / 1e6:.1f}M / {self.frozen_params / 1e6:.1f}M",
             "the model built on the meta device"),
            ("total batch (recipe)", self.total_batch, "optim.batch_size"),
            ("per-GPU batch x GPUs x accumulation", f"{self.per_gpu_batch} x {self.gpus} x {self.accum_steps} = "
                                                    f"{self.effective_batch}", "accum_steps"),
            ("lr (base -> scaled)", f"{self.base_lr:.3g} -> {self.lr:.3g}", "lr = base x batch / 256"),
            ("epochs x steps per epoch", f"{self.epochs} x {self.steps_per_epoch} = {self.total_steps} steps",
             f"{self.samples_per_epoch} samples per epoch"),
            ("FLOPs per optimizer step", f"{self.flops_per_step / 1e12:.4g} TFLOP",
             "objective.flops_per_sample x batch"),
            ("FLOPs, whole run", f"{self.total_flops / 1e18:.4g} EFLOP",
             "every step, plus cached teacher targets" if self.flops_once else "every step"),
            ("rate per GPU", f"{self.tflops_per_gpu:.4g} TFLOP/s", mfu),
            ("hours (wall) / GPU-hours", f"{self.hours:.4g} / {self.gpu_hours:.4g}", "estimate: FLOPs / rate"),
            ("memory per GPU: weights + grads + AdamW", f"{m.weights + m.gradients + m.optimizer:.3g} GiB",
             "16 bytes per trainable parameter"),
            ("memory per GPU: teachers, DDP buckets", f"{m.frozen:.3g} GiB, {m.ddp:.3g} GiB", "4 bytes per parameter"),
            ("memory per GPU: activations + inputs", f"{m.activations + m.inputs:.3g} GiB",
             f"{ACT_ELEMENTS} x width values per token and block"),
            ("memory per GPU: total (estimate)", f"{m.total:.3g} of {self.memory_available_gib:.3g} GiB",
             "fits" if self.fits else "does NOT fit: lower the per-GPU batch (more accumulation)"),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value", "how"])


def estimate(cfg: Any, device_spec: str | Device = "H100", gpus: int = 1, per_gpu_batch: int | None = None,
             mfu: float = 0.4, num_samples: int | None = None, dtype: str | None = None, attention: str = "sdpa",
             checkpointing: bool | None = None, cost: ModelCost | None = None) -> Budget:
    """The estimated budget of run config `cfg` (e.g. `profiles.preset("distill", "paper_vit_b")`) on `gpus`
    devices (a name in DEVICES or a Device). `per_gpu_batch` None: the largest of total/gpus, total/(2 gpus), ...
    whose estimated memory fits. `num_samples`: training samples per epoch (default: `num_training_samples`).
    `dtype`: compute dtype (default bf16; fp32 on a measured CPU). `checkpointing`: default the config's.
    `cost`: a ModelCost already computed for `cfg` (saves building the model again)."""
    dev = device(device_spec)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be an integer >= 1, got {gpus!r}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    dtype = dtype or ("fp32" if dev.measured else "bf16")
    checkpointing = cfg.checkpointing if checkpointing is None else checkpointing
    cost = cost or model_cost(cfg)
    optim = cfg.optim
    total = optim.batch_size
    if per_gpu_batch is None:
        per_gpu_batch = fitting_batch(cost, total, gpus, dev.memory_gib, dtype, attention, checkpointing)
    accum = accum_steps(total, per_gpu_batch, gpus)
    effective = per_gpu_batch * gpus * accum
    n = num_samples if num_samples is not None else num_training_samples(cfg)
    steps_per_epoch = (-(-n // gpus) // per_gpu_batch) // accum  # as the engine: per-process batches, drop last
    if steps_per_epoch < 1:
        raise ValueError(f"{n} training samples give no full optimizer step of {effective} samples")
    total_steps = optim.epochs * steps_per_epoch
    per_step = cost.flops_per_sample * effective
    once = cost.flops_once_per_sample * n
    total_flops = per_step * total_steps + once
    used_mfu = 1.0 if dev.measured else mfu
    rate = dev.tflops(dtype) * used_mfu
    seconds = total_flops / (gpus * rate * 1e12)
    lr = scaled_lr(optim.lr, effective) if optim.scale_lr else optim.lr
    min_lr = scaled_lr(optim.min_lr, effective) if optim.scale_lr else optim.min_lr
    return Budget(
        run=verb_of(cfg), preset=cfg.name, arch=model_spec(cfg).arch, device=dev.name, measured=dev.measured,
        gpus=gpus, dtype=dtype, mfu=used_mfu, tflops_per_gpu=rate, total_batch=total, per_gpu_batch=per_gpu_batch,
        accum_steps=accum, effective_batch=effective, base_lr=optim.lr, lr=lr, min_lr=min_lr, epochs=optim.epochs,
        samples_per_epoch=n, steps_per_epoch=steps_per_epoch, total_steps=total_steps, tokens=cost.tokens,
        visible=cost.visible, trainable_params=cost.trainable_params, frozen_params=cost.frozen_params,
        flops_per_step=per_step, flops_once=once, total_flops=total_flops, hours=seconds / 3600,
        gpu_hours=gpus * seconds / 3600,
        memory=memory(cost, per_gpu_batch, gpus, dtype, attention, checkpointing), memory_available_gib=dev.memory_gib)


def implied_mfu(plan: Budget, hours: float) -> float:
    """The MFU at which the plan's FLOPs take `hours` on its machine (e.g. a paper's reported time)."""
    if not hours > 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    peak = plan.tflops_per_gpu / plan.mfu
    return plan.total_flops / (plan.gpus * peak * 1e12 * hours * 3600)


__all__ = ["PAPER_TABLE6", "PAPER_TABLE6_MACHINE", "Device", "DEVICES", "measured_device", "device", "accum_steps",
           "verb_of", "num_training_samples", "Stack", "ModelCost", "stand_in_dependencies", "model_cost", "Memory",
           "memory", "fitting_batch", "activation_bytes_per_sample", "Budget", "estimate", "implied_mfu",
           "total_ram_gib", "ACT_ELEMENTS"]
