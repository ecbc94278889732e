"""train_or_load: run a config (and, first, the runs it depends on) unless it has already been run.

    run = train_or_load("distill", recipes.preset("distill", "laptop"))

1. validates the config (ConfigError before any compute);
2. resolves its references: other runs (trained or loaded first, recursively), checkpoint files, "random";
3. hashes the config together with its dependencies' hashes -> `runs/<verb>/<name>-<hash>/`;
4. returns the run if that folder holds a finished one, or copies a shipped finished run from `artifacts/`;
5. otherwise runs it (resuming from `checkpoint-last.pth` if a previous attempt was interrupted) and writes
   config.json, command.txt, metrics.json and model.pth (reference key layout).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from mvd_lib import devices, distributed
from mvd_lib.augment import AugmentedClips
from mvd_lib.checkpoint import load_checkpoint, save_checkpoint
from mvd_lib.classifier import VideoClassifier
from mvd_lib.build import build_image_teacher, build_video_teacher
from mvd_lib.config import DEFAULT_TEACHER
from mvd_lib.distributed import DistInfo
from mvd_lib.atomic import write_json
from mvd_lib.engine import Trainer
from mvd_lib.evaluate import evaluate
from mvd_lib.mae import ImageViT
from mvd_lib.probe import extract_features, fit_probe
from mvd_lib.recipes import (VERBS, DistillConfig, EvaluateConfig, FinetuneConfig, ProbeConfig, parse_ref, preset,
                             resolve_ref, validate)
from mvd_lib.runs import (ARTIFACTS, DEFAULT_RUNS, ConfigError, Run, adopt_artifact, command_line, config_dict,
                          config_hash, find_artifact, run_folder)
from mvd_lib.synthetic import SyntheticClips, SyntheticImages
from mvd_lib.target_cache import CachedTargets
from mvd_lib.tasks import (DistillTask, EMATeacher, FinetuneTask, MAETask, VideoMAETask, build_model,
                           encoder_from_run, labeled_clips, num_classes_of, pretrain_clips)
from mvd_lib.teachers import ImageTeacher, VideoTeacher
from mvd_lib.vit import VideoViT

REF_FIELDS = {"distill": ("image_teacher", "video_teacher"), "finetune": ("init",), "probe": ("encoder",),
              "evaluate": ("checkpoint",)}


@dataclass
class Session:
    """How to run (not what to run: none of this enters the config hash)."""

    root: Path = DEFAULT_RUNS  # runs folder
    artifacts: Path = ARTIFACTS  # shipped finished runs
    force: bool = False  # rerun even if finished
    progress: bool = True  # progress bars
    stop_after_steps: int | None = None  # stop each unfinished run (resumably) after this many optimizer steps
    dist: DistInfo = field(default_factory=DistInfo)  # torchrun process info
    command: str | None = None  # command line to record


@dataclass
class Dependency:
    kind: str  # "run" | "file" | "random" | "none"
    run: Run | None = None
    path: Path | None = None

    @property
    def fingerprint(self) -> str:
        if self.kind == "run":
            return f"run:{self.run.verb}:{self.run.hash}"
        if self.kind == "file":
            return f"file:{file_digest(self.path)}"
        return self.kind


def file_digest(path: Path) -> str:
    """sha256 of a checkpoint file (first 16 MiB plus size: stable and quick for multi-GB files)."""
    if not path.exists():
        raise ConfigError(f"checkpoint file not found: {path}")
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(16 << 20))
    return h.hexdigest()[:16]


def resolve_dependencies(verb: str, cfg: Any, session: Session) -> dict[str, Dependency]:
    deps = {}
    for name in REF_FIELDS.get(verb, ()):
        kind, target, sets = parse_ref(getattr(cfg, name))
        if kind == "run":
            dep_verb, dep_cfg = resolve_ref(getattr(cfg, name))
            # --force reruns the named run only; its finished dependencies are reused
            child = dataclasses.replace(session, force=False, command=command_line(dep_verb, dep_cfg.name, sets))
            deps[name] = Dependency("run", run=train_or_load(dep_verb, dep_cfg, session=child))
        elif kind == "file":
            deps[name] = Dependency("file", path=Path(target))
        else:
            deps[name] = Dependency(kind)
    return deps


def train_or_load(verb: str, cfg: Any, session: Session | None = None, **session_kwargs: Any) -> Run:
    """The finished run of `cfg` (see the module docstring). `session_kwargs` build a Session."""
    session = session or Session(**session_kwargs)
    if verb not in VERBS:
        raise ConfigError(f"unknown run type {verb!r}; choose one of {VERBS}")
    validate(verb, cfg)
    deps = resolve_dependencies(verb, cfg, session)
    h = config_hash(cfg, {k: d.fingerprint for k, d in deps.items()})
    run = Run(verb, cfg.name, h, run_folder(verb, cfg.name, h, session.root), cfg).reload()
    if run.finished and not session.force:
        return run
    waiting = [f"{d.run.verb} {d.run.name}" for d in deps.values() if d.kind == "run" and not d.run.finished]
    if waiting:  # a dependency stopped early (stop_after_steps): this run starts once it has finished
        run.metrics = {"status": "waiting", "waiting_for": waiting}
        return run
    shipped = find_artifact(verb, cfg.name, h, session.artifacts)
    if shipped is not None and not session.force:
        if session.dist.is_main:
            adopt_artifact(shipped, run.dir)
        distributed.barrier(session.dist)
        return run.reload()
    if session.dist.is_main:
        run.dir.mkdir(parents=True, exist_ok=True)
        write_json(run.dir / "config.json", {"verb": verb, "hash": h, "config": config_dict(cfg),
                                             "dependencies": {k: d.fingerprint for k, d in deps.items()}})
        (run.dir / "command.txt").write_text((session.command or command_line(verb, cfg.name)) + "\n")
    distributed.barrier(session.dist)
    metrics = EXECUTORS[verb](cfg, run.dir, deps, session)
    metrics.setdefault("status", "finished")
    metrics.update({"verb": verb, "hash": h, "device": describe_device(cfg), "torch": torch.__version__,
                    "world_size": session.dist.world, "host": platform.node()})
    if session.dist.is_main:
        write_json(run.dir / "metrics.json", metrics)
    distributed.barrier(session.dist)
    return run.reload()


def run_preset(verb: str, name: str, overrides: list[str] | None = None, **session_kwargs: Any) -> Run:
    """train_or_load of a named preset with `--set` style overrides; records the reproducing command."""
    cfg = preset(verb, name, overrides)
    session_kwargs.setdefault("command", command_line(verb, name, overrides))
    return train_or_load(verb, cfg, **session_kwargs)


# ------------------------------------------------------------------------------------------------ helpers
def device_and_dtype(cfg: Any) -> tuple[torch.device, torch.dtype]:
    dev = devices.resolve_device(cfg.device)
    if dev.type == "cuda" and os.environ.get("LOCAL_RANK"):
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev, devices.parse_dtype(cfg.dtype, dev)


def describe_device(cfg: Any) -> str:
    dev, dtype = device_and_dtype(cfg)
    return f"{devices.describe(dev)}, {str(dtype).replace('torch.', '')}"


def _train(verb: str, cfg: Any, folder: Path, task: Any, dataset: Any, session: Session,
           hooks: list[Callable] | None = None, on_finish: Callable[[nn.Module], dict] | None = None) -> dict:
    """Run the engine, save model.pth, and assemble the training metrics."""
    device, dtype = device_and_dtype(cfg)
    if cfg.checkpointing:
        if hasattr(task.model, "set_grad_checkpointing"):
            task.model.set_grad_checkpointing(True)
        else:
            task.model.grad_checkpointing = True
    trainer = Trainer(task, dataset, cfg.optim, folder, seed=cfg.seed, device=device, dtype=dtype,
                      dist_info=session.dist, num_workers=cfg.data.num_workers,
                      checkpoint_every=cfg.checkpoint_every, hooks=hooks, progress=session.progress,
                      stop_after_steps=session.stop_after_steps, description=f"{verb} {cfg.name}")
    state = trainer.fit()
    finished = state.epoch >= cfg.optim.epochs
    metrics: dict[str, Any] = {
        "status": "finished" if finished else "partial",
        "epochs": cfg.optim.epochs, "steps": state.step, "samples": state.samples,
        "steps_per_epoch": trainer.steps_per_epoch, "wall_time_s": state.wall_time_s,
        "train_flops": task.flops_per_sample() * state.samples,
        "loss_curve": state.loss_curve, "parts_curve": state.parts_curve, "lr_curve": state.lr_curve,
        "epoch_metrics": state.epoch_metrics,
        "final_loss": state.loss_curve[-1] if state.loss_curve else None,
    }
    inner = getattr(dataset, "dataset", dataset)  # through AugmentedClips
    metrics.update(_bad_inputs(folder, session, train=inner))
    if finished:
        if session.dist.is_main:
            save_checkpoint(folder / "model.pth", task.model, epoch=cfg.optim.epochs - 1, args=config_dict(cfg))
            trainer.last_checkpoint.unlink(missing_ok=True)  # the resumable state is no longer needed
        if on_finish is not None and session.dist.is_main:  # evaluation once, on the main process
            metrics.update(on_finish(task.model))
    return metrics


def probe_hook(cfg: Any, every: int, image: bool = False) -> Callable[[int, nn.Module], dict]:
    """A cheap linear probe during training (synthetic data): appearance and motion, time-ordered pooling."""
    data = cfg.data
    train = SyntheticClips("train", min(512, data.num_clips), data.synthetic, cache=True)
    test = SyntheticClips("test", min(256, data.num_test), data.synthetic, cache=True)
    epochs = cfg.optim.epochs

    def hook(epoch: int, model: nn.Module) -> dict:
        if epoch % every and epoch != epochs:
            return {}
        out = {}
        feats_tr = extract_features(model, train, poolings=("time",), progress=False)["time"]
        feats_te = extract_features(model, test, poolings=("time",), progress=False)["time"]
        tasks = ("appearance",) if image else ("appearance", "motion")
        for t in tasks:
            res = fit_probe(feats_tr.select(t), feats_te.select(t), c_grid=(1e-2, 1e-1, 1.0), seed=cfg.seed)
            out[f"probe_{t}"] = res.top1
        return out

    return hook


# ------------------------------------------------------------------------------------------------ executors
def run_pretrain_image(cfg, folder: Path, deps: dict, session: Session) -> dict:
    model = build_model("pretrain-image", cfg)
    data = SyntheticImages(cfg.data.num_images, cfg.data.synthetic, cache=cfg.data.memory_cache)
    hooks = [probe_hook(cfg, cfg.probe_every, image=True)] if cfg.probe_every else None
    return _train("pretrain-image", cfg, folder, MAETask(model, cfg.mask_ratio, cfg.seed), data, session, hooks)


def run_pretrain_video(cfg, folder: Path, deps: dict, session: Session) -> dict:
    model = build_model("pretrain-video", cfg)
    data = pretrain_clips(cfg.data, cfg.model, seed=cfg.seed)
    hooks = [probe_hook(cfg, cfg.probe_every)] if cfg.probe_every else None
    return _train("pretrain-video", cfg, folder, VideoMAETask(model, cfg.mask_ratio, cfg.mask_type, cfg.seed), data,
                  session, hooks)


def load_teacher(branch: str, dep: Dependency, cfg: DistillConfig) -> nn.Module | None:
    """A frozen teacher from a finished run or a checkpoint file (None for 'none')."""
    student = cfg.student.vit()
    if dep.kind == "none":
        return None
    if dep.kind == "run":
        encoder = encoder_from_run(dep.run.verb, dep.run.config, dep.run.model_path)
    else:
        arch = cfg.teacher_arch or DEFAULT_TEACHER[cfg.student.preset]
        encoder = (build_image_teacher if branch == "img" else build_video_teacher)(arch, student, seed=None).model
        print(load_checkpoint(encoder, dep.path, trust_pickle=cfg.trust_checkpoints))
    if branch == "img":
        if not isinstance(encoder, ImageViT):
            raise ConfigError(f"image_teacher must be an image model (a pretrain-image run), got {dep.fingerprint}")
        grid = encoder.grid_size
        if grid != student.img_size // student.patch_size:
            raise ConfigError(f"image teacher grid {grid}x{grid} does not match the student's")
        return ImageTeacher(encoder, tubelet_size=student.tubelet_size)
    if isinstance(encoder, ImageViT):
        raise ConfigError(f"video_teacher must be a video model, got {dep.fingerprint}")
    return VideoTeacher(encoder)


def run_distill(cfg: DistillConfig, folder: Path, deps: dict, session: Session) -> dict:
    device, dtype = device_and_dtype(cfg)
    teachers = {b: t for b, t in (("img", load_teacher("img", deps["image_teacher"], cfg)),
                                  ("vid", load_teacher("vid", deps["video_teacher"], cfg))) if t is not None}
    dims = {b: t.out_dim for b, t in teachers.items()}
    if cfg.ema:
        dims = {"ema": cfg.student.vit().width}
    model = build_model("distill", cfg, dims)
    if cfg.ema:
        teachers = {"ema": EMATeacher(model, cfg.ema_momentum)}
    for t in teachers.values():
        t.to(device)
    teacher_size = teachers["img"].model.cfg.img_size if "img" in teachers else None
    data = pretrain_clips(cfg.data, cfg.student, teacher_size=teacher_size, seed=cfg.seed)
    cached = None
    if cfg.cache_targets and not cfg.ema and teachers and getattr(data, "deterministic", False):
        root = Path(session.root) / "cache" / "targets"
        if session.dist.is_main:
            CachedTargets(teachers, data, root, config_dict(cfg.data), device=device, dtype=dtype,
                          progress=session.progress)
        distributed.barrier(session.dist)
        cached = CachedTargets(teachers, data, root, config_dict(cfg.data), device=device, dtype=dtype, fill=False,
                               progress=False)
    hooks = [probe_hook(cfg, cfg.probe_every)] if cfg.probe_every and cfg.data.source == "synthetic" else None
    metrics = _train("distill", cfg, folder, DistillTask(model, teachers, cfg, cached), data, session, hooks)
    metrics["targets_cached"] = cached is not None
    return metrics


def _classifier_init(model: VideoClassifier, dep: Dependency, trust: bool) -> dict:
    if dep.kind == "random":
        return {"init": "random"}
    path = dep.run.model_path if dep.kind == "run" else dep.path
    report = load_checkpoint(model, path, trust_pickle=trust)
    return {"init": dep.fingerprint, "init_report": str(report)}


def finetune_pos_embed(dep: Dependency) -> str:
    """VideoMAE encoders keep their 1-D sinusoid table when finetuned (as VideoMAE does); MVD students use 3-D."""
    return "sinusoid1d" if dep.kind == "run" and dep.run.verb == "pretrain-video" else "sincos3d"


def run_finetune(cfg: FinetuneConfig, folder: Path, deps: dict, session: Session) -> dict:
    device, dtype = device_and_dtype(cfg)
    num_classes = cfg.num_classes or num_classes_of(cfg.data)
    pos_embed = finetune_pos_embed(deps["init"])
    model = VideoClassifier(cfg.model.vit(), num_classes, fc_drop=cfg.fc_drop, seed=cfg.seed, pos_embed=pos_embed)
    init = _classifier_init(model, deps["init"], cfg.trust_checkpoints)
    train = labeled_clips(cfg.data, cfg.model, "train", seed=cfg.seed, train_aug=cfg.augment)
    aug = cfg.augment
    if cfg.data.source == "list":  # the list dataset already crops and flips in train mode
        import dataclasses

        aug = dataclasses.replace(aug, crop_scale=None, flip_prob=0.0)
    train = AugmentedClips(train, aug, seed=cfg.seed, out_size=cfg.model.img_size)
    test = labeled_clips(cfg.data, cfg.model, "test", seed=cfg.seed)

    def on_finish(m: nn.Module) -> dict:
        result = evaluate(m, test, batch_size=32, device=device, dtype=dtype, progress=session.progress)
        return {"test": result.to_dict()}

    metrics = _train("finetune", cfg, folder, FinetuneTask(model, cfg), train, session, on_finish=on_finish)
    metrics.update(init, pos_embed=pos_embed)
    return metrics


def probe_encoder(cfg: ProbeConfig, dep: Dependency) -> nn.Module:
    if dep.kind == "run":
        return encoder_from_run(dep.run.verb, dep.run.config, dep.run.model_path)
    model = VideoViT(cfg.model.vit(), seed=cfg.seed)
    if dep.kind == "file":
        print(load_checkpoint(model, dep.path, trust_pickle=cfg.trust_checkpoints))
    return model


def run_probe(cfg: ProbeConfig, folder: Path, deps: dict, session: Session) -> dict:
    device, dtype = device_and_dtype(cfg)
    encoder = probe_encoder(cfg, deps["encoder"])
    train = labeled_clips(cfg.data, cfg.model, "train", seed=cfg.seed)
    test = labeled_clips(cfg.data, cfg.model, "test", seed=cfg.seed)
    t0 = time.perf_counter()
    kw = dict(poolings=tuple(cfg.poolings), batch_size=cfg.batch_size, device=device, dtype=dtype,
              progress=session.progress)
    feats_tr, feats_te = extract_features(encoder, train, **kw), extract_features(encoder, test, **kw)
    results: dict[str, dict] = {}
    tasks = cfg.tasks if cfg.data.source == "synthetic" else ("label",)
    for task in tasks:
        for pooling in cfg.poolings:
            res = fit_probe(feats_tr[pooling].select(task), feats_te[pooling].select(task), c_grid=cfg.c_grid,
                            holdout_fraction=cfg.holdout_fraction, seed=cfg.seed)
            results.setdefault(task, {})[pooling] = {k: v for k, v in res.to_dict().items() if k != "test_pred"}
    out = {"probe": results, "wall_time_s": time.perf_counter() - t0, "encoder": deps["encoder"].fingerprint}
    out.update(_bad_inputs(folder, session, train=train, test=test))
    return out


def run_evaluate(cfg: EvaluateConfig, folder: Path, deps: dict, session: Session) -> dict:
    device, dtype = device_and_dtype(cfg)
    dep = deps["checkpoint"]
    pos = "sincos3d"
    if dep.kind == "run":
        if dep.run.verb != "finetune":
            raise ConfigError(f"evaluate needs a finetune run, got a {dep.run.verb} run")
        pos = dep.run.metrics.get("pos_embed", "sincos3d")  # the table the classifier was finetuned with
    model = VideoClassifier(cfg.model.vit(), cfg.num_classes or num_classes_of(cfg.data), seed=cfg.seed, pos_embed=pos)
    path = dep.run.model_path if dep.kind == "run" else dep.path
    report = load_checkpoint(model, path, trust_pickle=cfg.trust_checkpoints)
    if report.missing_allowed:
        raise ConfigError(f"{path} is not a finetuned classifier: {sorted(report.missing_allowed)} are missing")
    test = labeled_clips(cfg.data, cfg.model, "test", seed=cfg.seed)
    result = evaluate(model, test, batch_size=cfg.batch_size, device=device, dtype=dtype, progress=session.progress)
    out = {"test": result.to_dict()}
    out.update(_bad_inputs(folder, session, test=test))
    return out


def _bad_inputs(folder: Path, session: Session, **datasets: Any) -> dict:
    """Bad-input summaries of real-video datasets: printed, saved as bad_inputs.json, returned for metrics."""
    found = {name: ds.bad_inputs for name, ds in datasets.items() if getattr(ds, "bad_inputs", None) is not None}
    if not found:
        return {}
    if session.dist.is_main:
        write_json(folder / "bad_inputs.json", {name: b.to_dict() for name, b in found.items()})
        for name, b in found.items():
            if len(b):
                print(f"{name}: {b}")
    return {"bad_inputs": {name: b.to_dict() for name, b in found.items()}}


EXECUTORS: dict[str, Callable[..., dict]] = {
    "pretrain-image": run_pretrain_image, "pretrain-video": run_pretrain_video, "distill": run_distill,
    "finetune": run_finetune, "probe": run_probe, "evaluate": run_evaluate,
}
