"""Profiles (named scales), run presets and run references. Imports no torch.

A **profile** chooses, coherently for a run and for every run it depends on, the data (benchmark sizes or
annotation lists), the model sizes (student and teacher architectures, clip geometry), the budget of every run
type (epochs, batch, lr), the seed and the device:

    smoke                 seconds on a CPU: the tests and CI (its accuracies mean nothing)
    quick                 both teachers, the three Table 1 students and Figure 3 in minutes on 2 cores
    laptop                every table with several seeds on 2 cores (its teachers are shipped in artifacts/)
    gpu                   the benchmark with bigger clips and models and longer budgets, for one GPU
    paper_vit_{s,b,l,h}   the reference recipes (mvd_reference.md sections 5-6) on K400 / SSv2 lists, GPUs

A profile-level override (`profile("laptop", ["seed=1", "data.num_clips=500"])`, or `--profile-set` on the
command line) is given once and reaches every run of the chain.

A **run preset** is a profile plus a variant of a run type, named `<profile>` (the default variant) or
`<profile>_<variant>`: `laptop` distills from both teachers, `laptop_img` from the image teacher only, ...
(`VARIANTS` lists them; `python -m mvd_lib presets` prints them all).

A **reference** names a run that another run needs (the fields in config.REFERENCE_FIELDS):

    "pretrain-image"                      the default variant of that run type in the same profile
    "finetune:motion"                     a variant of it in the same profile
    "pretrain-image:laptop"               an explicit run preset (profile overrides still apply)
    "distill:laptop;optim.epochs=5"       ... with run overrides, separated by ';'
    "pretrain-image@3fa29c01de"           a finished run, by its hash (what a `Run` object passed in becomes)
    "file:/path/to/checkpoint.pth"        a checkpoint file (official MAE / VideoMAE / MVD weights)
    "random"                              a randomly initialised model (floors and the random-teacher control)
    "none"                                no such part (e.g. no image teacher)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from mvd_lib.config import (ARCHITECTURES, CONFIG_TYPES, LIGHT, LIGHT_MOTION, REFERENCE, REFERENCE_FIELDS,
                            REFERENCE_SSV2, VERBS, DataSpec, DistillConfig, Dtype, EvaluateConfig, ExtractConfig,
                            FinetuneConfig, ModelSpec, OptimConfig, PretrainImageConfig, PretrainVideoConfig,
                            ProbeConfig, SyntheticConfig, apply_overrides, config_dict, masked_count, model_spec)
from mvd_lib.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """A named scale: what every run of a chain shares (see the module docstring)."""

    name: str = "custom"  # names the run presets <name>[_<variant>]
    seed: int = 0  # seed of every run of the profile (weights, data order, masks)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: Dtype = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    model: ModelSpec = field(default_factory=ModelSpec)  # students, classifiers, probed encoders; clip geometry
    teacher_arch: str = "vit_micro"  # both teachers' architecture (their geometry follows `model`)
    data: DataSpec = field(default_factory=DataSpec)  # data source and sizes
    image_optim: OptimConfig = field(default_factory=OptimConfig)  # image-teacher (MAE) pretraining budget
    video_optim: OptimConfig = field(default_factory=OptimConfig)  # video-teacher (VideoMAE) pretraining budget
    distill_optim: OptimConfig = field(default_factory=OptimConfig)  # student distillation budget
    finetune_optim: OptimConfig = field(default_factory=OptimConfig)  # finetuning budget
    image_mask_ratio: float = 0.75  # MAE random masking of the image teacher's pretraining
    video_mask_ratio: float = 0.9  # VideoMAE tube masking of the video teacher's pretraining
    video_norm_pix_loss: bool = True  # VideoMAE targets normalized per tubelet and channel (False: raw pixels)
    mask_ratio: float = 0.9  # tube masking of distillation
    finetune_drop_path: float = 0.1  # stochastic depth while finetuning
    finetune_tasks: tuple[str, ...] = ("appearance", "motion")  # finetune variants: label sets or datasets
    image_teacher: str = "pretrain-image"  # distillation's image teacher (a reference)
    video_teacher: str = "pretrain-video"  # distillation's video teacher (a reference)
    c_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # linear-probe L2 grid
    attentive_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # attentive-probe lrs (one: fixed, no held-out fits)
    # the teacher-quality gate's sample (gate.run_gate): train clips its probes fit on and val/test clips they read;
    # the benchmark search's sizes (docs/benchmark_search.md), about 1 point of standard error
    gate_train: int = 3000
    gate_eval: int = 2000
    overrides: tuple[str, ...] = ()  # the profile-level overrides this profile was made with

    def __post_init__(self) -> None:
        for name in ("finetune_tasks", "c_grid", "attentive_lrs", "overrides"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("image_mask_ratio", "video_mask_ratio", "mask_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.teacher_arch not in ARCHITECTURES:
            raise ConfigError(f"unknown teacher_arch {self.teacher_arch!r}; choose one of {sorted(ARCHITECTURES)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.gate_train < 1 or self.gate_eval < 1:
            raise ConfigError(f"gate_train and gate_eval must be >= 1, got {self.gate_train} and {self.gate_eval}")

    @property
    def teacher_model(self) -> ModelSpec:
        """The teachers' ModelSpec: `teacher_arch` at the profile's clip geometry, no drop path."""
        return dataclasses.replace(self.model, arch=self.teacher_arch, drop_path=0.0)

    def common(self, name: str) -> dict[str, Any]:
        """The RunConfig fields every run of this profile shares."""
        return dict(name=name, seed=self.seed, device=self.device, dtype=self.dtype)


# ================================================================================================ profiles
def _smoke() -> Profile:
    """8x16x16 clips, 2x4x4 tubelets (a 4x4x4 grid), vit_nano, a few dozen samples, two epochs."""
    optim = OptimConfig(epochs=2, warmup_epochs=1, batch_size=8, lr=1e-3, min_lr=1e-5)
    return Profile(
        name="smoke", model=ModelSpec(arch="vit_nano", num_frames=8, img_size=16, patch_size=4, tubelet_size=2),
        teacher_arch="vit_nano",
        data=DataSpec(synthetic=SyntheticConfig(frames=8, height=16, width=16), num_clips=32, num_val=16,
                      num_test=16, num_images=64),
        image_optim=optim, video_optim=optim, distill_optim=optim,
        finetune_optim=dataclasses.replace(optim, betas=(0.9, 0.999), layer_decay=0.75),
        finetune_drop_path=0.0, c_grid=(1e-2, 1.0), gate_train=32, gate_eval=16)


# The laptop benchmark (docs/benchmark_search.md): ten static pattern classes carry appearance, the whole scene
# pans or circles (six path motions, each with its time-reversed twin), no pixel noise or smooth shading;
# 16x32x32 clips with 2x8x8 tubelets (a 8x4x4 grid, 128 tokens).
LAPTOP_BENCHMARK = SyntheticConfig(layout="scene", num_appearance=10, moving="scene", noise=0.0, bg_amplitude=0.0,
                                   motions=("right", "left", "down", "up", "orbit_cw", "orbit_ccw"))


def _laptop(name: str = "laptop", scale: float = 1.0) -> Profile:
    """16x32x32 clips of the scene benchmark, 2x8x8 tubelets (a 8x4x4 grid), vit_micro teachers and students."""
    n = lambda x: max(1, int(round(x * scale)))  # noqa: E731
    return Profile(
        name=name, model=ModelSpec(arch="vit_micro", patch_size=8), teacher_arch="vit_micro",
        data=DataSpec(synthetic=LAPTOP_BENCHMARK, num_clips=n(2000), num_val=n(500), num_test=n(1000),
                      num_images=n(40000)),
        image_optim=OptimConfig(epochs=8, warmup_epochs=1, batch_size=256, lr=1e-3, min_lr=1e-5),
        # the video teacher: tube masking 0.75 and lr 1e-3 (design scene_pan_m75_lr); at 0.9 and 4e-3 it fell below
        # its random-init floor on motion (docs/benchmark_search.md)
        video_mask_ratio=0.75,
        video_optim=OptimConfig(epochs=40, warmup_epochs=4, batch_size=64, lr=1e-3, min_lr=1e-5),
        # students: 5 epochs (155 steps of 64 clips, about the quick students' 160 steps), sized for every arm of
        # every table, 3 seeds, toward a 2 h target on 2 cores; measured 2 h 32 min in all (README, "Scales: one
        # code path"). Longer budgets are where the students start to learn (docs/student_search.md)
        distill_optim=OptimConfig(epochs=5, warmup_epochs=1, batch_size=64, min_lr=1e-4),
        # finetuning: 10 epochs (310 steps), chosen on val (docs/finetune_search.md): there the video teacher led
        # random init by 6.4 (appearance) and 36.6 (motion) points; at 30 epochs (930 steps) by -1.0 and 1.4
        finetune_optim=OptimConfig(epochs=10, warmup_epochs=2, batch_size=64, lr=1e-3, min_lr=1e-6,
                                   betas=(0.9, 0.999), layer_decay=0.75),
        # the attentive probe at its most often chosen lr (11 of 14 held-out choices of seven quick-profile probes:
        # teachers, students, floors): one fit instead of three held-out fits and a refit; quick and gpu inherit it
        attentive_lrs=(1e-3,))


def _quick() -> Profile:
    """The laptop benchmark at half the clips and shorter student budgets; the teachers keep the laptop
    recipes (on val, 4 epochs on 20000 stills left the image teacher at its random floor on appearance; 150
    video steps at lr 1e-3 left the video teacher 1.6 points above its floor on motion, 600 steps with tube
    masking 0.75 8.6 points): one seed of Table 1 in minutes."""
    p = _laptop("quick", scale=0.5)
    return dataclasses.replace(
        p, data=dataclasses.replace(p.data, num_images=40000),
        distill_optim=dataclasses.replace(p.distill_optim, epochs=10, warmup_epochs=1))


def _gpu() -> Profile:
    """The laptop benchmark scaled for one GPU: 16x64x64 clips (2x8x8 tubelets: a 8x8x8 grid), ViT-Tiny
    students and teachers, four times the data and longer budgets."""
    p = _laptop("gpu", scale=4.0)
    model = ModelSpec(arch="vit_tiny", num_frames=16, img_size=64, patch_size=8, tubelet_size=2)
    synthetic = dataclasses.replace(p.data.synthetic, height=64, width=64)
    return dataclasses.replace(
        p, model=model, teacher_arch="vit_tiny", data=dataclasses.replace(p.data, synthetic=synthetic),
        image_optim=dataclasses.replace(p.image_optim, epochs=40, warmup_epochs=4),
        video_optim=dataclasses.replace(p.video_optim, epochs=100, warmup_epochs=10, batch_size=128),
        distill_optim=dataclasses.replace(p.distill_optim, epochs=60, warmup_epochs=6, batch_size=128),
        finetune_optim=dataclasses.replace(p.finetune_optim, epochs=50, warmup_epochs=5))


# Paper recipes (reference scripts). Pretraining: AdamW (0.9, 0.95), wd 0.05, base lr 1.5e-4 x batch/256, warmup
# 40 epochs, min lr 1e-4 for S/B/L (1e-5 for H); total batch 1024 (S, B) / 512 (L, H); drop path 0.1 (0.2 for H);
# 400 epochs (the released scripts pass --epochs 401 for their 400-epoch models and 801 for 800; we keep the
# paper's 400). VideoMAE teachers: 1600 epochs.
_PAPER_SIZES = {"s": "vit_small", "b": "vit_base", "l": "vit_large", "h": "vit_huge"}
_PAPER_TEACHER = {"s": "vit_base", "b": "vit_base", "l": "vit_large", "h": "vit_huge"}
_PAPER_PRETRAIN = {
    "s": dict(batch_size=1024, min_lr=1e-4, drop_path=0.1), "b": dict(batch_size=1024, min_lr=1e-4, drop_path=0.1),
    "l": dict(batch_size=512, min_lr=1e-4, drop_path=0.1), "h": dict(batch_size=512, min_lr=1e-5, drop_path=0.2),
}
# Finetuning, (architecture, dataset) -> total batch (before repeated augmentation, as the reference scales lr),
# lr, epochs, layer decay, drop path, head dropout, min lr.
_PAPER_FINETUNE = {
    ("vit_small", "k400"): (384, 5e-4, 150, 0.75, 0.1, 0.0, 1e-6),
    ("vit_small", "ssv2"): (384, 1e-3, 40, 0.7, 0.1, 0.0, 1e-6),
    ("vit_base", "k400"): (384, 5e-4, 75, 0.75, 0.1, 0.0, 1e-6),
    ("vit_base", "ssv2"): (384, 5e-4, 30, 0.75, 0.1, 0.0, 1e-6),
    ("vit_large", "k400"): (512, 1e-3, 50, 0.75, 0.3, 0.5, 1e-6),
    ("vit_large", "ssv2"): (256, 5e-4, 30, 0.75, 0.3, 0.5, 1e-6),
    ("vit_huge", "k400"): (256, 1e-3, 50, 0.75, 0.3, 0.5, 1e-6),
    ("vit_huge", "ssv2"): (128, 5e-4, 30, 0.75, 0.3, 0.5, 1e-5),
}
_K400 = DataSpec(source="list", list_dir="k400_anno", dataset="k400", sampling="dense", sampling_rate=4,
                 test_clips=5, test_crops=3, num_workers=8)
_LIST_DATA = {"k400": _K400, "ssv2": dataclasses.replace(_K400, list_dir="ssv2_anno", dataset="ssv2",
                                                         sampling="segment", test_clips=2)}


def _paper(size: str) -> Profile:
    p = _PAPER_PRETRAIN[size]
    model = ModelSpec(arch=_PAPER_SIZES[size], num_frames=16, img_size=224, patch_size=16, tubelet_size=2,
                      drop_path=p["drop_path"])
    optim = OptimConfig(epochs=400, warmup_epochs=40, batch_size=p["batch_size"], lr=1.5e-4, min_lr=p["min_lr"],
                        betas=(0.9, 0.95), weight_decay=0.05)
    return Profile(
        name=f"paper_vit_{size}", model=model, teacher_arch=_PAPER_TEACHER[size], data=_K400,
        image_optim=optim, video_optim=dataclasses.replace(optim, epochs=1600, min_lr=1e-5), distill_optim=optim,
        finetune_optim=OptimConfig(), finetune_tasks=("k400", "ssv2"),
        image_teacher="file:mae_pretrain.pth", video_teacher="file:videomae_pretrain.pth")


PROFILES: dict[str, Profile] = {p.name: p for p in (_smoke(), _quick(), _laptop(), _gpu(), *map(_paper, _PAPER_SIZES))}


def profile(name: str | Profile, overrides: Sequence[str] | dict[str, Any] | None = None, **settings: Any) -> Profile:
    """A profile with profile-level overrides, e.g. `profile("laptop", ["data.num_clips=500"], seed=1)`.

    Overrides reach every run made from the profile, dependencies included; unknown keys raise ConfigError."""
    if isinstance(name, Profile):
        base = name
    elif name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    else:
        base = PROFILES[name]
    items = [*_as_items(overrides), *(f"{k}={v}" if isinstance(v, str) else (k, v) for k, v in settings.items())]
    if not items:
        return base
    # applied together, so their order does not matter (config.apply_overrides); recorded as given
    p = apply_overrides(base, items)
    recorded = [*base.overrides, *(item if isinstance(item, str) else f"{item[0]}={_text(item[1])}" for item in items)]
    if any(r.split("=", 1)[0].strip() in ("name", "overrides") for r in recorded):
        raise ConfigError("profile overrides cannot set 'name' or 'overrides'")
    return dataclasses.replace(p, overrides=tuple(recorded))


def _as_items(overrides: Sequence[str] | dict[str, Any] | None) -> list:
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return list(overrides.items())
    return list(overrides)


def _text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


# ================================================================================================ variants
def _pretrain_image(p: Profile, name: str) -> PretrainImageConfig:
    return PretrainImageConfig(**p.common(name), model=p.teacher_model, mask_ratio=p.image_mask_ratio, data=p.data,
                               optim=p.image_optim)


def _pretrain_video(p: Profile, name: str, epochs_factor: int = 1, arch: str = "") -> PretrainVideoConfig:
    model = dataclasses.replace(p.teacher_model, arch=arch) if arch else p.teacher_model
    optim = dataclasses.replace(p.video_optim, epochs=p.video_optim.epochs * epochs_factor)
    return PretrainVideoConfig(**p.common(name), model=model, mask_ratio=p.video_mask_ratio,
                               norm_pix_loss=p.video_norm_pix_loss, data=p.data, optim=optim)


def _distill(p: Profile, name: str, **changes: Any) -> DistillConfig:
    base = DistillConfig(**p.common(name), student=p.model, image_teacher=p.image_teacher,
                         video_teacher=p.video_teacher, teacher_arch=p.teacher_arch, mask_ratio=p.mask_ratio,
                         cache_targets=p.data.source == "synthetic", checkpointing=p.model.arch == "vit_huge",
                         data=p.data, optim=p.distill_optim)
    return dataclasses.replace(base, **changes)


def _finetune(p: Profile, name: str, task: str) -> FinetuneConfig:
    if p.data.source == "list":  # the paper: task names the dataset
        batch, lr, epochs, ld, dp, fc, min_lr = _PAPER_FINETUNE[(p.model.arch, task)]
        return FinetuneConfig(
            **p.common(name), model=dataclasses.replace(p.model, drop_path=dp), init="distill", fc_drop=fc,
            augment=REFERENCE_SSV2 if task == "ssv2" else REFERENCE,
            data=dataclasses.replace(_LIST_DATA[task], task="label"),
            optim=OptimConfig(epochs=epochs, warmup_epochs=5, batch_size=batch, lr=lr, min_lr=min_lr,
                              betas=(0.9, 0.999), weight_decay=0.05, layer_decay=ld))
    return FinetuneConfig(**p.common(name), model=dataclasses.replace(p.model, drop_path=p.finetune_drop_path),
                          init="distill", augment=LIGHT_MOTION if task == "motion" else LIGHT,
                          data=dataclasses.replace(p.data, task=task), optim=p.finetune_optim)


def _data_for(p: Profile, task: str) -> DataSpec:
    if p.data.source == "list":
        return dataclasses.replace(_LIST_DATA.get(task, p.data), task="label")
    return dataclasses.replace(p.data, task=task if task in ("appearance", "motion") else p.data.task)


def _probe(p: Profile, name: str) -> ProbeConfig:
    tasks = ("label",) if p.data.source == "list" else ("appearance", "motion")
    return ProbeConfig(**p.common(name), model=p.model, encoder="distill", tasks=tasks, c_grid=p.c_grid,
                       attentive_lrs=p.attentive_lrs,
                       data=_data_for(p, p.finetune_tasks[0]))


def _evaluate(p: Profile, name: str, task: str) -> EvaluateConfig:
    return EvaluateConfig(**p.common(name), model=p.model, checkpoint=f"finetune:{task}", data=_data_for(p, task))


def _extract(p: Profile, name: str) -> ExtractConfig:
    return ExtractConfig(**p.common(name), model=p.model, encoder="distill", data=_data_for(p, p.finetune_tasks[0]))


Variant = Callable[[Profile, str], Any]


def variants(verb: str, p: Profile) -> dict[str, Variant]:
    """The variants of a run type in profile `p`: {"" (the default) or name: config maker}."""
    if verb not in VERBS:
        raise ConfigError(f"unknown run type {verb!r}; choose one of {VERBS}")
    synthetic = p.data.source == "synthetic"
    if verb == "pretrain-image":
        return {"": _pretrain_image} if synthetic else {}
    if verb == "pretrain-video":
        out: dict[str, Variant] = {"": _pretrain_video}
        if synthetic:
            # Table 6: the pixel baseline trained twice as long; Table 2: VideoMAE at the student's size
            out["long"] = lambda q, n: _pretrain_video(q, n, epochs_factor=2)
            out["student"] = lambda q, n: _pretrain_video(q, n, arch=q.model.arch)
        return out
    if verb == "distill":
        return {
            "": _distill,  # co-teaching (Table 1, last rows)
            "img": lambda q, n: _distill(q, n, video_teacher="none"),  # image teacher only
            "vid": lambda q, n: _distill(q, n, image_teacher="none"),  # video teacher only
            "pix": lambda q, n: _distill(q, n, pixel=True),  # co-teaching + pixel branch (Table 7)
            "img_pix": lambda q, n: _distill(q, n, video_teacher="none", pixel=True),  # Table 7
            "ema": lambda q, n: _distill(q, n, image_teacher="none", video_teacher="none", ema=True),  # Table 8
            "token": lambda q, n: _distill(q, n, image_teacher="none", mode="token"),  # Table 9
            "random": lambda q, n: _distill(q, n, image_teacher="random", video_teacher="random"),  # control
            "random_img": lambda q, n: _distill(q, n, image_teacher="random", video_teacher="none"),
            "random_vid": lambda q, n: _distill(q, n, image_teacher="none", video_teacher="random"),
        }
    if verb == "finetune":  # one variant per task; the first is the default (default_variant)
        return {t: (lambda q, n, t=t: _finetune(q, n, t)) for t in p.finetune_tasks}
    if verb == "probe":
        return {"": _probe}
    if verb == "evaluate":
        return {t: (lambda q, n, t=t: _evaluate(q, n, t)) for t in p.finetune_tasks}
    return {"": _extract}


def default_variant(verb: str, p: Profile) -> str:
    """The variant a bare profile name means: "" (the default) or, for finetune and evaluate, the first task."""
    return p.finetune_tasks[0] if verb in ("finetune", "evaluate") else ""


def preset_name(p: Profile | str, variant: str = "") -> str:
    """`laptop` for the default variant, `laptop_img` for variant `img`."""
    name = p if isinstance(p, str) else p.name
    return f"{name}_{variant}" if variant else name


def split_preset(verb: str, name: str) -> tuple[str, str]:
    """(profile, variant) of a run preset name; ConfigError naming the known presets if there is none."""
    for prof in sorted(PROFILES, key=len, reverse=True):  # longest first: paper_vit_b before paper
        if name == prof:
            return prof, default_variant(verb, PROFILES[prof])
        if name.startswith(prof + "_") and name[len(prof) + 1:] in variants(verb, PROFILES[prof]):
            return prof, name[len(prof) + 1:]
    known = sorted({v for q in PROFILES.values() for v in variants(verb, q) if v})
    raise ConfigError(f"unknown {verb} preset {name!r}: a preset is <profile>[_<variant>] with profiles "
                      f"{list(PROFILES)} and variants {known} (python -m mvd_lib presets {verb} lists them)")


def presets(verb: str) -> list[str]:
    """Every run preset of a run type."""
    return [preset_name(p, v) for p in PROFILES.values() for v in variants(verb, p)]


def run_config(verb: str, p: Profile | str = "smoke", variant: str = "",
               overrides: Sequence[str] | dict[str, Any] | None = None) -> Any:
    """The config of run type `verb` for profile `p` (a name or a Profile with its overrides), variant `variant`
    ("" = the default), with run-level `overrides` applied."""
    if isinstance(p, str):
        p = profile(p)
    table = variants(verb, p)
    variant = variant or default_variant(verb, p)
    if variant not in table:
        raise ConfigError(f"{verb} has no variant {variant!r} in profile {p.name!r}; "
                          f"choose one of {[v or '(default)' for v in table]}")
    cfg = table[variant](p, preset_name(p, variant))
    return apply_overrides(cfg, overrides)


def preset(verb: str, name: str, overrides: Sequence[str] | dict[str, Any] | None = None,
           profile_overrides: Sequence[str] | dict[str, Any] | None = None) -> Any:
    """The config of run preset `name` (e.g. "laptop_img") with profile-level and run-level overrides."""
    prof, variant = split_preset(verb, name)
    return run_config(verb, profile(prof, profile_overrides), variant, overrides)


def reproducing_command(verb: str, cfg: Any, p: Profile | None = None) -> str:
    """The command line that rebuilds `cfg`: its preset (`cfg.name`), profile `p`'s overrides as --profile-set, and
    one --set for every setting where `cfg` differs from that preset (what the settings, overrides and runs passed
    to `runner.run` changed, e.g. `--set init=distill@20f53f329d --set seed=2`). The command is checked by
    rebuilding the config from it; a config it cannot rebuild (a name that is no preset, a value the command line
    cannot write) gets the plain preset command and a comment saying that config.json holds the settings."""
    from mvd_lib.runs import command_line

    profile_overrides = tuple(p.overrides) if p is not None else ()
    try:
        base = preset(verb, cfg.name, None, profile_overrides)
    except ConfigError:
        plain = command_line(verb, cfg.name, (), profile_overrides)
        return f"{plain}  # no such preset: config.json holds the settings"
    sets = [f"{key}={text}" for key, text in _differences(config_dict(base), config_dict(cfg), "")]
    try:
        rebuilt = config_dict(preset(verb, cfg.name, sets, profile_overrides))
    except ConfigError:
        rebuilt = None
    command = command_line(verb, cfg.name, sets, profile_overrides)
    if rebuilt != config_dict(cfg):
        return f"{command}  # not every setting can be written here: config.json holds them"
    return command


def _differences(base: dict[str, Any], cfg: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    """(key, value as command-line text) of every leaf where config dict `cfg` differs from `base`."""
    out = []
    for key, value in cfg.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out += _differences(base[key], value, f"{prefix}{key}.")
        elif base.get(key, object()) != value:
            out.append((f"{prefix}{key}", _command_text(value)))
    return out


def _command_text(value: Any) -> str:
    """A config value (from `config_dict`) as the command line writes it: none, true/false, a,b,c or ()."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(_command_text(v) for v in value) if value else "()"
    return _text(value)


# ================================================================================================ references
@dataclass(frozen=True)
class Ref:
    """A parsed reference (see the module docstring)."""

    kind: Literal["run", "hash", "file", "random", "none"]
    verb: str = ""  # run type of "run" and "hash" references
    name: str = ""  # run preset or variant ("" = the default) of "run"; the hash of "hash"
    overrides: tuple[str, ...] = ()  # run overrides of "run" references
    path: str = ""  # the file of "file" references


def parse_ref(ref: str) -> Ref:
    """Parse a reference string (ConfigError on a malformed one)."""
    text = (ref or "").strip()
    if text in ("random", "none", ""):
        return Ref(text or "none")
    if text.startswith("file:"):
        if not text[5:].strip():
            raise ConfigError(f"bad reference {ref!r}: file: needs a path")
        return Ref("file", path=text[5:].strip())
    head, *sets = [s.strip() for s in text.split(";") if s.strip()]
    if "@" in head:
        verb, digest = head.split("@", 1)
        _check_verb(verb, ref)
        if sets:
            raise ConfigError(f"bad reference {ref!r}: a finished run (verb@hash) takes no overrides")
        return Ref("hash", verb=verb, name=digest)
    verb, _, name = head.partition(":")
    _check_verb(verb, ref)
    return Ref("run", verb=verb, name=name, overrides=tuple(sets))


def _check_verb(verb: str, ref: str) -> None:
    if verb not in VERBS:
        raise ConfigError(f"bad reference {ref!r}: unknown run type {verb!r}; use 'verb[:preset]', 'verb@hash', "
                          "'file:PATH', 'random' or 'none'")


def resolve_run_ref(ref: Ref, p: Profile) -> Any:
    """The config a "run" reference names, made in profile `p` (whose overrides reach it)."""
    if ref.kind != "run":
        raise ConfigError(f"{ref} is not a run reference")
    if not ref.name:
        return run_config(ref.verb, p, default_variant(ref.verb, p), ref.overrides)
    if ref.name in variants(ref.verb, p):  # a variant of the same profile
        return run_config(ref.verb, p, ref.name, ref.overrides)
    prof, variant = split_preset(ref.verb, ref.name)
    return run_config(ref.verb, profile(prof, p.overrides), variant, ref.overrides)


# ================================================================================================ validation
# Which run types each reference field accepts (an image teacher must be an image model, evaluate a classifier).
ACCEPTED_RUNS: dict[tuple[str, str], tuple[str, ...]] = {
    ("distill", "image_teacher"): ("pretrain-image",),
    ("distill", "video_teacher"): ("pretrain-video", "distill", "finetune"),
    ("finetune", "init"): ("distill", "pretrain-video"),
    ("probe", "encoder"): ("distill", "pretrain-video", "pretrain-image", "finetune"),
    ("extract", "encoder"): ("distill", "pretrain-video", "pretrain-image", "finetune"),
    ("evaluate", "checkpoint"): ("finetune",),
}


def validate(verb: str, cfg: Any) -> None:
    """Cross-field checks that the dataclasses cannot make alone; raises ConfigError before any compute."""
    if not isinstance(cfg, CONFIG_TYPES[verb]):
        raise ConfigError(f"a {verb} run needs a {CONFIG_TYPES[verb].__name__}, got {type(cfg).__name__}")
    spec = model_spec(cfg)
    data: DataSpec = cfg.data
    if data.source == "synthetic":
        s = data.synthetic
        if verb == "pretrain-image":
            if (s.height, s.width) != (spec.img_size, spec.img_size):
                raise ConfigError(f"data.synthetic is {s.height}x{s.width} but the model takes {spec.img_size}px images")
        elif (s.frames, s.height, s.width) != (spec.num_frames, spec.img_size, spec.img_size):
            raise ConfigError(
                f"data.synthetic clips are {s.frames}x{s.height}x{s.width} but the model takes "
                f"{spec.num_frames}x{spec.img_size}x{spec.img_size}: set data.synthetic.frames/height/width to match")
        if data.task == "label" and verb in ("finetune", "probe", "evaluate", "extract"):
            raise ConfigError("synthetic data has the label sets 'appearance' and 'motion'; set data.task to one of them")
        if verb == "probe" and "label" in cfg.tasks:
            raise ConfigError("synthetic data has the label sets 'appearance' and 'motion'; set tasks accordingly")
    else:
        if not data.list_dir:
            raise ConfigError("data.source=list needs data.list_dir (a folder with train.csv, val.csv, test.csv)")
        if verb == "pretrain-image":
            raise ConfigError("image pretraining runs on the synthetic stills; for real data load official MAE "
                              "weights with distill's image_teacher=file:PATH")
    for name in REFERENCE_FIELDS[verb]:
        ref = parse_ref(getattr(cfg, name))
        allowed = ACCEPTED_RUNS[(verb, name)]
        if ref.kind in ("run", "hash") and ref.verb not in allowed:
            raise ConfigError(f"{name}={getattr(cfg, name)}: {verb} takes a {' or '.join(allowed)} run here, "
                              f"not a {ref.verb} run")
    ratio = getattr(cfg, "mask_ratio", None)
    if ratio is not None:
        grid = spec.vit().grid
        kind = "random" if verb == "pretrain-image" else getattr(cfg, "mask_type", "tube")
        if verb == "pretrain-image":
            grid = (1, grid[1], grid[2])
        n = grid[0] * grid[1] * grid[2]
        masked = masked_count(grid, ratio, kind)
        if not 0 < masked < n:
            raise ConfigError(f"mask_ratio={ratio} masks {masked} of {n} tokens; at least one token must be masked "
                              "and one visible")
    if verb == "distill":
        kinds = {b: parse_ref(getattr(cfg, b)).kind for b in ("image_teacher", "video_teacher")}
        teachers = [b for b, k in kinds.items() if k != "none"]
        if cfg.ema and teachers:
            raise ConfigError("ema=true uses the student's own EMA as teacher: set image_teacher=none and "
                              "video_teacher=none")
        if not cfg.ema and not teachers and not cfg.pixel:
            raise ConfigError("distill needs at least one target: a teacher, ema=true or pixel=true")
        if cfg.mode == "token" and (cfg.pixel or cfg.ema):
            raise ConfigError("per-token distillation (mode=token) takes fixed teachers only")
        if cfg.mode == "token" and not teachers:
            raise ConfigError("per-token distillation (mode=token) needs a teacher")
    if verb == "finetune" and parse_ref(cfg.init).kind == "none":
        raise ConfigError("finetune needs init: a run reference, file:PATH or random")
    if verb in ("probe", "extract") and parse_ref(cfg.encoder).kind == "none":
        raise ConfigError(f"{verb} needs an encoder: a run reference, file:PATH or random")
    if verb == "evaluate" and parse_ref(cfg.checkpoint).kind in ("none", "random"):
        raise ConfigError("evaluate needs checkpoint: a finetune run reference or file:PATH")
    if verb == "extract" and cfg.layer < -1:
        raise ConfigError(f"layer must be -1 (the final output) or a block index >= 0, got {cfg.layer}")
