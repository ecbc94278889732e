"""Run types: for each verb, how its model and objective are prepared, how it runs, and how a finished run's
models are loaded back.

    pretrain-image   MAE on stills (MAEObjective)                    -> encoder: ImageViT, teacher: ImageTeacher
    pretrain-video   VideoMAE on clips (VideoMAEObjective)           -> encoder: VideoViT (1-D sinusoid), VideoTeacher
    distill          MVD student from frozen teachers (DistillObjective) -> encoder: the student's VideoViT
    finetune         classifier, reference recipe, then `split` scored   -> encoder: the classifier's VideoViT
    probe            frozen-feature probes (no training loop)
    evaluate         multi-view evaluation of a finetuned classifier (no training loop)
    extract          frozen features of every clip written to .npy (no training loop)

`prepare(cfg, deps, device)` builds exactly what a real run trains (model, teachers, objective) and is what
`bench` times; `execute(cfg, folder, deps, options)` runs it and returns the metrics that runner.py records.
Models are built by build.py, one builder per model kind.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from mvd_lib import build, devices, distributed
from mvd_lib.atomic import write_json
from mvd_lib.augment import AugmentedClips
from mvd_lib.checkpoint import load_checkpoint, save_checkpoint
from mvd_lib.config import (DEFAULT_TEACHER, DistillConfig, EvaluateConfig, ExtractConfig, FinetuneConfig,
                            PretrainImageConfig, PretrainVideoConfig, ProbeConfig, config_dict)
from mvd_lib.datasets import labeled_clips, num_classes_of, pretrain_clips, stills
from mvd_lib.distributed import DistInfo
from mvd_lib.engine import Trainer
from mvd_lib.errors import ConfigError
from mvd_lib.evaluate import evaluate
from mvd_lib.mae import ImageViT
from mvd_lib.objectives import DistillObjective, FinetuneObjective, MAEObjective, VideoMAEObjective
from mvd_lib.probe import extract_features, fit_probe, save_features
from mvd_lib.probe_protocols import ProtocolJob, low_shot_curve, run_protocols
from mvd_lib.runs import DEFAULT_RUNS
from mvd_lib.synthetic import SyntheticClips
from mvd_lib.target_cache import CachedTargets
from mvd_lib.teachers import EMATeacher, FrozenTeacher, ImageTeacher, VideoTeacher


@dataclass
class RunOptions:
    """How to run, not what to run: none of this enters a run's hash."""

    root: Path | None = None  # runs folder (None: runs.DEFAULT_RUNS, runs/ or $MVD_RUNS)
    artifacts: Path | None = None  # shipped finished runs (None: the repository's artifacts/)
    force: bool = False  # rerun the named run even if it finished (its dependencies are reused)
    progress: bool = True  # progress bars
    probe_every: int = 0  # in-training linear probe every N epochs on the val split (0: off); observation only
    stop_after_steps: int | None = None  # stop each unfinished run (resumably) after this many optimizer steps
    trust_checkpoints: bool = False  # allow "file:" checkpoints that hold pickled Python objects (trusted files)
    dist: DistInfo = field(default_factory=DistInfo)  # torchrun process info
    command: str | None = None  # the command to record in command.txt (None: profiles.reproducing_command)

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else DEFAULT_RUNS
        if self.probe_every < 0:
            raise ConfigError(f"probe_every must be >= 0 (0: off), got {self.probe_every}")
        if self.stop_after_steps is not None and self.stop_after_steps < 1:
            raise ConfigError(f"stop_after_steps must be >= 1, got {self.stop_after_steps}")


@dataclass
class Dependency:
    """What a reference field resolved to."""

    kind: str  # "run" | "file" | "random" | "none"
    fingerprint: str  # what enters the dependant's hash
    run: Any = None  # kind "run": the finished runs.Run
    path: Path | None = None  # kind "file"


@dataclass
class Prepared:
    """What one step of a run type needs: the model, the objective (training types) and the teachers."""

    model: nn.Module
    objective: Any = None
    teachers: dict[str, nn.Module] = field(default_factory=dict)


def device_and_dtype(cfg: Any) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype of a run (torchrun: this process's GPU)."""
    dev = devices.resolve_device(cfg.device)
    if dev.type == "cuda" and os.environ.get("LOCAL_RANK"):
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev, devices.parse_dtype(cfg.dtype, dev)


def describe_device(cfg: Any) -> str:
    dev, dtype = device_and_dtype(cfg)
    return f"{devices.describe(dev)}, {str(dtype).replace('torch.', '')}"


def _decoder_overrides(cfg: Any) -> dict[str, int]:
    return {k: v for k, v in (("width", cfg.decoder_width), ("depth", cfg.decoder_depth),
                              ("heads", cfg.decoder_heads)) if v}


def _trust(options: RunOptions | None) -> bool:
    return options.trust_checkpoints if options is not None else False


def _load(model: nn.Module, path: Path, **kw: Any) -> nn.Module:
    load_checkpoint(model, path, **kw)
    return model


# ================================================================================================ base
class RunType:
    """A verb. Subclasses override what applies to them; the defaults say clearly what does not."""

    verb = ""

    def prepare(self, cfg: Any, deps: dict[str, Dependency], device: torch.device,
                options: RunOptions | None = None) -> Prepared:
        raise NotImplementedError

    def execute(self, cfg: Any, folder: Path, deps: dict[str, Dependency], options: RunOptions) -> dict:
        raise NotImplementedError

    def encoder(self, run: Any) -> nn.Module:
        raise ConfigError(f"a {self.verb} run has no encoder of its own")

    def teacher(self, run: Any) -> FrozenTeacher:
        return VideoTeacher(self.encoder(run))

    def model(self, run: Any) -> nn.Module:
        raise ConfigError(f"a {self.verb} run has no model of its own")


def train(verb: str, cfg: Any, folder: Path, prepared: Prepared, dataset: Any, options: RunOptions,
          on_finish: Callable[[nn.Module], dict] | None = None, other_splits: dict[str, Any] | None = None) -> dict:
    """Run the engine to the end (or the step budget), save model.pth, and assemble the training metrics.

    Order that never throws trained work away: model.pth is written atomically first, then `on_finish` (e.g. the
    test evaluation); the resumable checkpoint stays until runner.py has written metrics.json, so a run killed
    during its evaluation resumes straight to the evaluation."""
    device, dtype = device_and_dtype(cfg)
    model = prepared.model
    if cfg.checkpointing:
        if hasattr(model, "set_grad_checkpointing"):
            model.set_grad_checkpointing(True)
        else:
            model.grad_checkpointing = True
    hooks = [probe_hook(cfg, options.probe_every, image=verb == "pretrain-image")] \
        if options.probe_every and cfg.data.source == "synthetic" else None
    trainer = Trainer(prepared.objective, dataset, cfg.optim, folder, seed=cfg.seed, device=device, dtype=dtype,
                      dist_info=options.dist, num_workers=cfg.data.num_workers,
                      checkpoint_every=cfg.checkpoint_every, hooks=hooks, progress=options.progress,
                      stop_after_steps=options.stop_after_steps, description=f"{verb} {cfg.name}")
    state = trainer.fit()
    finished = state.epoch >= cfg.optim.epochs
    metrics: dict[str, Any] = {
        "status": "finished" if finished else "partial",
        "epochs": cfg.optim.epochs, "steps": state.step, "samples": state.samples,
        "steps_per_epoch": trainer.steps_per_epoch, "wall_time_s": state.wall_time_s,
        "train_flops": prepared.objective.flops_per_sample() * state.samples,
        "loss_curve": state.loss_curve, "parts_curve": state.parts_curve, "lr_curve": state.lr_curve,
        "epoch_metrics": state.epoch_metrics,
        "final_loss": state.loss_curve[-1] if state.loss_curve else None,
    }
    if finished and options.dist.is_main:
        save_checkpoint(folder / "model.pth", model, epoch=cfg.optim.epochs - 1, args=config_dict(cfg))
        if on_finish is not None:  # evaluation once, on the main process
            metrics.update(on_finish(model))
    inner = getattr(dataset, "dataset", dataset)  # through AugmentedClips
    metrics.update(bad_inputs(folder, options, train=inner, **(other_splits or {})))
    return metrics


def probe_hook(cfg: Any, every: int, image: bool = False) -> Callable[[int, nn.Module], dict]:
    """A cheap linear probe during training, on the VAL split (choices may be made on it): appearance and motion,
    time-ordered pooling. An image model (which reads every frame here) is probed on appearance only."""
    data = cfg.data
    train_clips = SyntheticClips("train", min(512, data.num_clips), data.synthetic, cache=True)
    val_clips = SyntheticClips("val", min(256, data.num_val), data.synthetic, cache=True)
    epochs = cfg.optim.epochs

    def hook(epoch: int, model: nn.Module) -> dict:
        if epoch % every and epoch != epochs:
            return {}
        feats_tr = extract_features(model, train_clips, poolings=("time",), progress=False)["time"]
        feats_va = extract_features(model, val_clips, poolings=("time",), progress=False)["time"]
        out = {}
        for task in (("appearance",) if image else ("appearance", "motion")):
            res = fit_probe(feats_tr.select(task), feats_va.select(task), c_grid=(1e-2, 1e-1, 1.0), seed=cfg.seed)
            out[f"probe_{task}"] = res.top1
        return out

    return hook


def bad_inputs(folder: Path, options: RunOptions, **datasets: Any) -> dict:
    """Bad-input summaries of real-video datasets: printed, saved as bad_inputs.json, returned for metrics."""
    found = {name: ds.bad_inputs for name, ds in datasets.items() if getattr(ds, "bad_inputs", None) is not None}
    if not found:
        return {}
    if options.dist.is_main:
        write_json(folder / "bad_inputs.json", {name: b.to_dict() for name, b in found.items()})
        for name, b in found.items():
            if len(b):
                print(f"{name}: {b}")
    return {"bad_inputs": {name: b.to_dict() for name, b in found.items()}}


# ================================================================================================ pretraining
class PretrainImage(RunType):
    verb = "pretrain-image"

    @staticmethod
    def build(cfg: PretrainImageConfig, seed: int | None) -> nn.Module:
        return build.build_mae(cfg.model.arch, cfg.model.vit(), seed=seed, **_decoder_overrides(cfg))

    def prepare(self, cfg, deps, device, options=None) -> Prepared:
        model = self.build(cfg, cfg.seed)
        return Prepared(model, MAEObjective(model, cfg.mask_ratio, cfg.seed))

    def execute(self, cfg, folder, deps, options) -> dict:
        return train(self.verb, cfg, folder, self.prepare(cfg, deps, None), stills(cfg.data), options)

    def encoder(self, run) -> nn.Module:
        cfg = run.config.model
        return _load(build.image_encoder(cfg.arch, cfg.vit()), run.weights())

    def teacher(self, run) -> FrozenTeacher:
        return ImageTeacher(self.encoder(run), tubelet_size=run.config.model.tubelet_size)

    def model(self, run) -> nn.Module:
        return _load(self.build(run.config, None), run.weights())


class PretrainVideo(RunType):
    verb = "pretrain-video"

    @staticmethod
    def build(cfg: PretrainVideoConfig, seed: int | None) -> nn.Module:
        return build.build_videomae(cfg.model.arch, cfg.model.vit(), seed=seed, **_decoder_overrides(cfg))

    def prepare(self, cfg, deps, device, options=None) -> Prepared:
        model = self.build(cfg, cfg.seed)
        return Prepared(model, VideoMAEObjective(model, cfg.mask_ratio, cfg.mask_type, cfg.seed, cfg.norm_pix_loss))

    def execute(self, cfg, folder, deps, options) -> dict:
        data = pretrain_clips(cfg.data, cfg.model, seed=cfg.seed)
        return train(self.verb, cfg, folder, self.prepare(cfg, deps, None), data, options)

    def encoder(self, run) -> nn.Module:
        cfg = run.config.model
        return _load(build.video_encoder(cfg.arch, cfg.vit()), run.weights())

    def model(self, run) -> nn.Module:
        return _load(self.build(run.config, None), run.weights())


# ================================================================================================ distillation
def load_teacher(branch: str, dep: Dependency, cfg: DistillConfig, trust: bool = False) -> FrozenTeacher | None:
    """The frozen teacher of a branch ("img" or "vid") from a finished run, a checkpoint file or random weights
    (None for "none"). The image teacher reads the front frame of each of the student's tubelets."""
    if dep.kind == "none":
        return None
    student = cfg.student.vit()
    arch = cfg.teacher_arch or DEFAULT_TEACHER[cfg.student.arch]
    if dep.kind == "run":
        encoder = dep.run.encoder()
    elif branch == "img":
        encoder = build.image_encoder(arch, student, seed=cfg.seed + 100 if dep.kind == "random" else None)
    else:
        encoder = build.video_encoder(arch, student, seed=cfg.seed + 200 if dep.kind == "random" else None)
    if dep.kind == "file":
        print(load_checkpoint(encoder, dep.path, trust_pickle=trust))
    if branch == "img":
        if not isinstance(encoder, ImageViT):
            raise ConfigError(f"image_teacher must be an image model (a pretrain-image run or MAE weights), "
                              f"got {dep.fingerprint}")
        grid = encoder.grid_size
        if grid != student.img_size // student.patch_size:
            raise ConfigError(f"the image teacher's {grid}x{grid} grid does not match the student's")
        return ImageTeacher(encoder, tubelet_size=student.tubelet_size)
    if isinstance(encoder, ImageViT):
        raise ConfigError(f"video_teacher must be a video model, got {dep.fingerprint}")
    if encoder.cfg.grid != student.grid:
        raise ConfigError(f"the video teacher's token grid {encoder.cfg.grid} does not match the student's {student.grid}")
    return VideoTeacher(encoder)


class Distill(RunType):
    verb = "distill"

    @staticmethod
    def build(cfg: DistillConfig, teacher_dims: dict[str, int], seed: int | None) -> nn.Module:
        vit = cfg.student.vit()
        if cfg.mode == "token":
            return build.build_token_student(vit, teacher_dims, seed=seed)
        return build.build_student(vit, teacher_dims, pixel=cfg.pixel, seed=seed, **_decoder_overrides(cfg))

    def prepare(self, cfg, deps, device, options=None, cached=None) -> Prepared:
        trust = _trust(options)
        teachers = {b: t for b, t in (("img", load_teacher("img", deps["image_teacher"], cfg, trust)),
                                      ("vid", load_teacher("vid", deps["video_teacher"], cfg, trust))) if t is not None}
        dims = {"ema": cfg.student.vit().width} if cfg.ema else {b: t.out_dim for b, t in teachers.items()}
        model = self.build(cfg, dims, cfg.seed)
        if cfg.ema:
            teachers = {"ema": EMATeacher(model, cfg.ema_momentum)}
        for t in teachers.values():
            t.to(device)
        return Prepared(model, DistillObjective(model, teachers, cfg, cached), teachers)

    def execute(self, cfg, folder, deps, options) -> dict:
        device, dtype = device_and_dtype(cfg)
        prepared = self.prepare(cfg, deps, device, options)
        teachers = prepared.teachers
        teacher_size = teachers["img"].model.cfg.img_size if "img" in teachers else None
        data = pretrain_clips(cfg.data, cfg.student, teacher_size=teacher_size, seed=cfg.seed)
        if cfg.cache_targets and not cfg.ema and teachers and getattr(data, "deterministic", False):
            root = Path(options.root) / "cache" / "targets"
            if options.dist.is_main:
                CachedTargets(teachers, data, root, config_dict(cfg.data), device=device, dtype=dtype,
                              progress=options.progress)
            distributed.barrier(options.dist)
            prepared.objective.cached = CachedTargets(teachers, data, root, config_dict(cfg.data), device=device,
                                                      dtype=dtype, fill=False, progress=False)
        metrics = train(self.verb, cfg, folder, prepared, data, options)
        metrics["targets_cached"] = prepared.objective.cached is not None
        # cached targets cost the teachers' forward pass once per clip; otherwise train_flops counts it per step
        metrics["target_flops"] = 2 * prepared.objective.teacher_macs() * len(data) if metrics["targets_cached"] else 0
        metrics["teacher_dims"] = prepared.model.out_dims if hasattr(prepared.model, "out_dims") else {}
        return metrics

    def encoder(self, run) -> nn.Module:
        return _load(build.student_encoder(run.config.student.vit()), run.weights())

    def model(self, run) -> nn.Module:
        dims = run.metrics.get("teacher_dims")
        if not dims:
            raise ConfigError(f"{run.folder}/metrics.json does not record the teachers' widths; rerun it")
        return _load(self.build(run.config, dims, None), run.weights())


# ================================================================================================ finetuning
class Finetune(RunType):
    verb = "finetune"

    @staticmethod
    def pos_embed(dep: Dependency) -> str:
        """VideoMAE encoders keep their 1-D sinusoid table when finetuned (as VideoMAE does); MVD students 3-D."""
        return "sinusoid1d" if dep.kind == "run" and dep.run.verb == "pretrain-video" else "sincos3d"

    def prepare(self, cfg, deps, device, options=None) -> Prepared:
        dep = deps["init"]
        model = build.build_classifier(cfg.model.vit(), cfg.num_classes or num_classes_of(cfg.data),
                                       fc_drop=cfg.fc_drop, seed=cfg.seed, pos_embed=self.pos_embed(dep))
        if dep.kind != "random":
            load_checkpoint(model, dep.run.weights() if dep.kind == "run" else dep.path, trust_pickle=_trust(options))
        return Prepared(model, FinetuneObjective(model, cfg))

    def execute(self, cfg, folder, deps, options) -> dict:
        device, dtype = device_and_dtype(cfg)
        prepared = self.prepare(cfg, deps, device, options)
        aug = cfg.augment
        if cfg.data.source == "list":  # the list dataset already crops and flips in train mode
            aug = dataclasses.replace(aug, crop_scale=None, flip_prob=0.0)
        train_set = AugmentedClips(labeled_clips(cfg.data, cfg.model, "train", seed=cfg.seed, train_aug=cfg.augment),
                                   aug, seed=cfg.seed, out_size=cfg.model.img_size)
        scored = labeled_clips(cfg.data, cfg.model, cfg.split, seed=cfg.seed)

        def on_finish(m: nn.Module) -> dict:
            result = evaluate(m, scored, batch_size=32, device=device, dtype=dtype, progress=options.progress)
            return {cfg.split: result.to_dict()}

        metrics = train(self.verb, cfg, folder, prepared, train_set, options, on_finish=on_finish,
                        other_splits={cfg.split: scored})
        metrics.update(init=deps["init"].fingerprint, pos_embed=self.pos_embed(deps["init"]),
                       num_classes=prepared.model.num_classes, split=cfg.split)
        return metrics

    def encoder(self, run) -> nn.Module:
        return _load(build.classifier_encoder(run.config.model.vit(), run.metrics.get("pos_embed", "sincos3d")),
                     run.weights(), allow_missing=[r"^norm\."])

    def model(self, run) -> nn.Module:
        m = build.build_classifier(run.config.model.vit(), run.metrics["num_classes"], fc_drop=run.config.fc_drop,
                                   seed=None, pos_embed=run.metrics.get("pos_embed", "sincos3d"))
        return _load(m, run.weights())


# ================================================================================================ frozen features
def frozen_encoder(cfg: Any, dep: Dependency, trust: bool = False) -> nn.Module:
    """The encoder a probe or extraction reads: a finished run's (an image teacher reads the front frame of each
    tubelet, as distillation does), a checkpoint file's, or random weights (the floor)."""
    if dep.kind == "run":
        return dep.run.teacher() if dep.run.verb == "pretrain-image" else dep.run.encoder()
    model = build.random_encoder(cfg.model.vit(), seed=cfg.seed if dep.kind == "random" else None)
    if dep.kind == "file":
        print(load_checkpoint(model, dep.path, trust_pickle=trust))
    return model


class FrozenFeatures(RunType):
    """Run types that read a frozen encoder's features (probe, extract)."""

    def prepare(self, cfg, deps, device, options=None) -> Prepared:
        return Prepared(frozen_encoder(cfg, deps["encoder"], _trust(options)).to(device).eval())


class Probe(FrozenFeatures):
    verb = "probe"

    def execute(self, cfg: ProbeConfig, folder, deps, options) -> dict:
        device, dtype = device_and_dtype(cfg)
        encoder = self.prepare(cfg, deps, device, options).model
        train_set = labeled_clips(cfg.data, cfg.model, "train", seed=cfg.seed)
        scored = labeled_clips(cfg.data, cfg.model, cfg.split, seed=cfg.seed)
        t0 = time.perf_counter()
        poolings = tuple(dict.fromkeys([*cfg.poolings, *(("time",) if cfg.low_shot else ()),
                                        *(("tokens",) if "attentive" in cfg.protocols else ())]))
        kw = dict(poolings=poolings, batch_size=cfg.batch_size, device=device, dtype=dtype, progress=options.progress)
        feats_tr, feats_sc = extract_features(encoder, train_set, **kw), extract_features(encoder, scored, **kw)
        # the attentive probe reads every token; linear and k-NN probes read each pooling
        keys = [(protocol, task, pooling) for protocol in cfg.protocols for task in cfg.tasks
                for pooling in (("tokens",) if protocol == "attentive" else cfg.poolings)]
        jobs = [ProtocolJob(protocol, feats_tr[pooling].select(task), feats_sc[pooling].select(task),
                            {"holdout_fraction": cfg.holdout_fraction,
                             **({"c_grid": cfg.c_grid} if protocol == "linear" else
                                {"lr_grid": cfg.attentive_lrs} if protocol == "attentive" else {})})
                for protocol, task, pooling in keys]
        results: dict[str, dict] = {}
        for (protocol, task, pooling), res in zip(keys, run_protocols(jobs, seed=cfg.seed)):
            results.setdefault(protocol, {}).setdefault(task, {})[pooling] = _without_predictions(res)
        out: dict[str, Any] = {"probe": results, "split": cfg.split, "encoder": deps["encoder"].fingerprint}
        if cfg.low_shot:
            out["low_shot"] = {task: low_shot_curve(feats_tr["time"].select(task), feats_sc["time"].select(task),
                                                    shots=(*cfg.low_shot, None), seed=cfg.seed).to_dict()
                               for task in cfg.tasks}
        out["wall_time_s"] = time.perf_counter() - t0
        out.update(bad_inputs(folder, options, train=train_set, **{cfg.split: scored}))
        return out


def _without_predictions(result: Any) -> dict:
    return {k: v for k, v in result.to_dict().items() if k != "test_pred"}


class Evaluate(RunType):
    verb = "evaluate"

    def prepare(self, cfg, deps, device, options=None) -> Prepared:
        dep = deps["checkpoint"]
        pos = "sincos3d"
        if dep.kind == "run":
            if dep.run.verb != "finetune":
                raise ConfigError(f"evaluate needs a finetune run, got a {dep.run.verb} run ({dep.run.folder})")
            pos = dep.run.metrics.get("pos_embed", "sincos3d")  # the table the classifier was finetuned with
        model = build.build_classifier(cfg.model.vit(), cfg.num_classes or num_classes_of(cfg.data), seed=cfg.seed,
                                       pos_embed=pos)
        if dep.kind != "random":  # random weights: what `bench` times
            path = dep.run.weights() if dep.kind == "run" else dep.path
            report = load_checkpoint(model, path, trust_pickle=_trust(options))
            if report.missing_allowed:
                raise ConfigError(f"{path} is not a finetuned classifier: {sorted(report.missing_allowed)} are missing")
        return Prepared(model.to(device).eval())

    def execute(self, cfg: EvaluateConfig, folder, deps, options) -> dict:
        device, dtype = device_and_dtype(cfg)
        model = self.prepare(cfg, deps, device, options).model
        test = labeled_clips(cfg.data, cfg.model, "test", seed=cfg.seed)
        result = evaluate(model, test, batch_size=cfg.batch_size, device=device, dtype=dtype, progress=options.progress)
        out = {"test": result.to_dict()}
        out.update(bad_inputs(folder, options, test=test))
        return out


class Extract(FrozenFeatures):
    verb = "extract"

    def execute(self, cfg: ExtractConfig, folder, deps, options) -> dict:
        from mvd_lib.datasets import list_files

        device, dtype = device_and_dtype(cfg)
        encoder = self.prepare(cfg, deps, device, options).model
        splits = [s for s in cfg.splits if cfg.data.source == "synthetic" or list_files(cfg.data, [s])[0].exists()]
        written: dict[str, Any] = {}
        reports: dict[str, Any] = {}
        for split in splits:
            data = labeled_clips(cfg.data, cfg.model, split, seed=cfg.seed)
            feats = extract_features(encoder, data, (cfg.pooling,), batch_size=cfg.batch_size, device=device,
                                     dtype=dtype, progress=options.progress, layer=None if cfg.layer < 0 else cfg.layer)
            meta = {"encoder": deps["encoder"].fingerprint, "split": split,
                    "list": str(list_files(cfg.data, [split])[0]) if cfg.data.source == "list" else "synthetic"}
            save_features(feats, folder / split, meta=meta)
            x = feats[cfg.pooling].x
            written[split] = {"rows": int(x.shape[0]), "shape": list(x.shape), "dtype": str(x.dtype),
                              "folder": f"{split}/{cfg.pooling}"}
            reports[split] = data
        out = {"features": written, "layer": cfg.layer, "pooling": cfg.pooling, "encoder": deps["encoder"].fingerprint}
        out.update(bad_inputs(folder, options, **reports))
        return out


RUN_TYPES: dict[str, RunType] = {t.verb: t for t in (PretrainImage(), PretrainVideo(), Distill(), Finetune(), Probe(),
                                                      Evaluate(), Extract())}
