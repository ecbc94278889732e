"""Train or load: one path from a config (or a profile) to a finished run, with every dependency first.

    from mvd_lib import runner
    p = runner.profile("smoke")                               # a named scale (profiles.py)
    teacher = runner.run("pretrain-image", p)                 # trained, or loaded if it already finished
    student = runner.run("distill", p, image_teacher=teacher, video_teacher="none")
    student.encoder(), student.curves, student.metrics        # runs.Run

What calls what:  config -> run (plan: validate the whole chain, check every file, hash) -> execute each
dependency, then the run (runtypes.py: model + objective -> engine.Trainer) -> records (config.json,
metrics.json, model.pth) -> `Run`.

1. `plan` validates the run and every run it depends on, checks every referenced file and list, and computes
   every hash, before any compute: a mistake anywhere in the chain fails first, and no folder is made for it;
2. dependencies are trained or loaded first (recursively); a `Run` object given as a reference is used as is;
3. the run's folder is `runs/<verb>/<preset>-<hash>/`; a finished run there is returned, a shipped one
   (artifacts/) is adopted, an interrupted one resumes from checkpoint-last.pth;
4. otherwise the run type executes and its records are written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from mvd_lib import distributed
from mvd_lib.atomic import folder_lock, write_json, write_text
from mvd_lib.config import REFERENCE_FIELDS, VERBS, apply_overrides, config_dict, config_hash
from mvd_lib.datasets import SPLITS, list_files
from mvd_lib.engine import NonFiniteLossError, remove_resumable_state
from mvd_lib.checkpoint import describe_file
from mvd_lib.errors import ConfigError, DivergedRunError, UserError
from mvd_lib.identity import sha256_file
from mvd_lib.profiles import (PROFILES, Profile, parse_ref, profile, reproducing_command, resolve_run_ref, run_config,
                              split_preset, validate)
from mvd_lib.runs import ARTIFACTS, SCHEMA, Run, adopt_artifact, find_artifact, find_run, read_json, run_folder
from mvd_lib.runtypes import RUN_TYPES, Dependency, RunOptions, describe_device

__all__ = ["run", "profile", "clips", "load", "train_or_load", "plan", "Plan", "RunOptions", "Run"]


@dataclass
class Plan:
    """A run and its dependencies, validated and hashed, nothing computed yet."""

    verb: str
    cfg: Any
    profile: Profile
    deps: dict[str, "Plan | Dependency"]  # reference field -> a run to train or load first, or what it resolved to
    inputs: dict[str, str]  # identity of the annotation lists the run reads: file -> sha256
    hash: str = ""
    folder: Path = Path()

    def fingerprint(self) -> str:
        return f"run:{self.verb}:{self.hash}"


# ------------------------------------------------------------------------------------------------ planning
def file_digest(path: Path) -> str:
    """sha256 of a checkpoint file (first 16 MiB plus size: stable and quick for multi-GB files)."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(16 << 20))
    return h.hexdigest()[:16]


def _check_runs_folder(root: Path) -> None:
    """The runs folder must be creatable and writable (checked without creating anything)."""
    p = root.resolve()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"runs folder {root} lies under a file ({p}); choose another --runs folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"runs folder {root} is not writable ({p} is read-only); choose another --runs folder")


def _input_identity(verb: str, cfg: Any) -> dict[str, str]:
    """The annotation lists a run reads, each checked to exist and identified by its content's sha256."""
    data = cfg.data
    if data.source != "list":
        return {}
    folder = Path(data.list_dir)
    if not folder.exists():
        raise ConfigError(f"data.list_dir={data.list_dir!r} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"data.list_dir={data.list_dir!r} is a file; give the folder holding train.csv, val.csv, "
                          "test.csv")
    needed = {"pretrain-video": ["train"], "distill": ["train"], "finetune": ["train", getattr(cfg, "split", "test")],
              "probe": ["train", getattr(cfg, "split", "test")], "evaluate": ["test"],
              "extract": [s for s in SPLITS if verb == "extract" and s in cfg.splits]}.get(verb, [])
    out = {}
    for path in list_files(data, needed):
        if verb == "extract" and not path.exists():
            continue  # extraction reads the splits that exist
        if not path.is_file():
            raise ConfigError(f"annotation list {path} does not exist (data.list_dir={data.list_dir!r})")
        out[path.name] = sha256_file(path)[:16]
    if verb == "extract" and not out:
        raise ConfigError(f"data.list_dir={data.list_dir!r} holds none of {[f'{s}.csv' for s in cfg.splits]}")
    return out


def plan(verb: str, cfg: Any, p: Profile | None = None, options: RunOptions | None = None,
         given: dict[str, Run] | None = None, _depth: int = 0) -> Plan:
    """Validate `cfg` and every run it depends on, check their files, and hash them all. No compute, no folders.

    `p`: the profile whose overrides reach the dependencies (default: the one the preset name comes from).
    `given`: finished runs passed as objects, by their reference ("<verb>@<hash>")."""
    options = options or RunOptions()
    given = given or {}
    if verb not in VERBS:
        raise ConfigError(f"unknown run type {verb!r}; choose one of {VERBS}")
    if _depth > 8:
        raise ConfigError(f"run references nest too deep at {verb} {cfg.name}: is a run its own dependency?")
    if p is None:
        p = _profile_of(verb, cfg)
    validate(verb, cfg)
    if _depth == 0:
        _check_runs_folder(options.root)
    node = Plan(verb, cfg, p, {}, _input_identity(verb, cfg))
    for name in REFERENCE_FIELDS[verb]:
        value = getattr(cfg, name)
        ref = parse_ref(value)
        if ref.kind == "run":
            child_cfg = resolve_run_ref(ref, p)
            node.deps[name] = plan(ref.verb, child_cfg, p, options, given, _depth + 1)
        elif ref.kind == "hash":
            node.deps[name] = _finished_run_dependency(ref.verb, ref.name, value, options, given)
        elif ref.kind == "file":
            path = Path(ref.path).expanduser()
            if not path.is_file():
                raise ConfigError(f"{name}={value}: no such file")
            kind, what = describe_file(path)
            if kind not in ("zip", "legacy"):
                raise ConfigError(f"{name}={value}: cannot read this checkpoint: it {what}")
            node.deps[name] = Dependency("file", f"file:{file_digest(path)}", path=path)
        else:
            node.deps[name] = Dependency(ref.kind, ref.kind)
    fingerprints = {k: (d.fingerprint() if isinstance(d, Plan) else d.fingerprint) for k, d in node.deps.items()}
    fingerprints.update({f"input:{k}": v for k, v in node.inputs.items()})
    node.hash = config_hash(cfg, fingerprints)
    node.folder = run_folder(verb, cfg.name, node.hash, options.root)
    return node


def _profile_of(verb: str, cfg: Any) -> Profile:
    try:
        return PROFILES[split_preset(verb, cfg.name)[0]]
    except ConfigError:
        return Profile()  # a custom config: references resolve in a default profile


def _finished_run_dependency(verb: str, digest: str, value: str, options: RunOptions,
                             given: dict[str, Run]) -> Dependency:
    run = given.get(value)
    if run is None:
        folder = find_run(verb, digest, [options.root, Path(options.artifacts or ARTIFACTS)])
        if folder is None:
            raise ConfigError(f"{value}: no {verb} run with hash {digest} under {options.root} or the artifacts")
        run = Run.load(folder)
    if not run.finished:
        raise ConfigError(f"{value}: the run in {run.folder} is {run.status}, not finished")
    return Dependency("run", f"run:{run.verb}:{run.hash}", run=run)


# ------------------------------------------------------------------------------------------------ execution
def would_train(node: Plan, options: RunOptions) -> bool:
    """Whether `execute(node, options)` would train the run itself, rather than return it finished, adopt its
    shipped copy (artifacts/) or refuse it as diverged. Dependencies are not looked at."""
    if options.force:
        return True
    metrics = node.folder / "metrics.json"
    status = read_json(metrics).get("status") if metrics.is_file() else None
    if status in ("finished", "diverged"):
        return False
    return find_artifact(node.verb, node.cfg.name, node.hash, options.artifacts or ARTIFACTS) is None


def execute(node: Plan, options: RunOptions) -> Run:
    """Train or load the planned run, its dependencies first. `options.force` applies to this run only."""
    deps: dict[str, Dependency] = {}
    for name, dep in node.deps.items():
        if isinstance(dep, Plan):
            child_options = dataclasses.replace(options, force=False, command="")  # its own command, not ours
            child = execute(dep, child_options)
            deps[name] = Dependency("run", dep.fingerprint(), run=child)
        else:
            deps[name] = dep
    fingerprints = {k: d.fingerprint for k, d in deps.items()}
    run = Run(node.verb, node.cfg.name, node.hash, node.folder, node.cfg, fingerprints)
    shipped = None  # the shipped finished run of this hash (artifacts/), looked up once, where it can be adopted
    if not options.force:  # (a forced run does not read its old, possibly damaged, record, nor adopts one)
        if run.finished and run.model_path.is_file():
            return run
        # a finished record kept without its weights gives way to the shipped run of its hash, if there is one
        shipped = find_artifact(node.verb, node.cfg.name, node.hash, options.artifacts or ARTIFACTS)
        if run.finished and shipped is None:
            return run
        if run.status == "diverged":
            raise DivergedRunError(_diverged_message(run))
    waiting = [f"{d.run.verb} {d.run.name}" for d in deps.values() if d.kind == "run" and not d.run.finished]
    if waiting:  # a dependency stopped early (stop_after_steps): this run starts once it has finished
        run.metrics = {"status": "waiting", "waiting_for": waiting}
        return run
    dist = options.dist
    if shipped is not None:
        if dist.is_main:
            adopt_artifact(shipped, run.folder)
        distributed.barrier(dist)
        return run.reload()
    if not dist.is_main:
        return _execute(node, run, deps, options)
    existed = {p for p in (options.root, options.root / node.verb, run.folder) if p.exists()}
    try:
        with folder_lock(run.folder, wait=True, on_wait=lambda text: print(text, flush=True)):
            if not options.force and run.reload().finished:  # another process finished it while this one waited
                return run
            return _execute(node, run, deps, options)
    except UserError as err:
        if not isinstance(err, DivergedRunError):
            _remove_refused(run.folder, existed, options.root)
        raise


def _remove_refused(folder: Path, existed: set[Path], root: Path) -> None:
    """A run refused on its inputs (a bad checkpoint, list line or video found once it started) leaves no folder
    behind, unless the folder was there before or holds trained work."""
    if folder in existed or any((folder / f).exists() for f in ("checkpoint-last.pth", "model.pth", "metrics.json")):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in (folder.parent, root):
        if parent not in existed and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def _execute(node: Plan, run: Run, deps: dict[str, Dependency], options: RunOptions) -> Run:
    """Write the run's config and command, execute it, then its metrics; the resumable state goes last."""
    dist = options.dist
    if dist.is_main:
        if options.force:
            for stale in ("metrics.json", "model.pth"):
                (run.folder / stale).unlink(missing_ok=True)
            remove_resumable_state(run.folder)
        write_json(run.folder / "config.json", {
            "schema": SCHEMA, "verb": node.verb, "name": node.cfg.name, "hash": node.hash,
            "config": config_dict(node.cfg), "profile": node.profile.name,
            "profile_overrides": list(node.profile.overrides), "dependencies": run.dependencies,
            "inputs": node.inputs})
        command = options.command or reproducing_command(node.verb, node.cfg, node.profile)
        write_text(run.folder / "command.txt", command + "\n")
    distributed.barrier(dist)
    try:
        metrics = RUN_TYPES[node.verb].execute(node.cfg, run.folder, deps, options)
    except NonFiniteLossError as err:
        if dist.is_main:
            write_json(run.folder / "metrics.json", {**err.to_dict(), "verb": node.verb, "hash": node.hash})
        raise DivergedRunError(_diverged_message(run.reload())) from None
    metrics.setdefault("status", "finished")
    metrics.update({"verb": node.verb, "hash": node.hash, "device": describe_device(node.cfg),
                    "torch": torch.__version__, "world_size": dist.world, "host": platform.node()})
    if dist.is_main:
        write_json(run.folder / "metrics.json", metrics)
    distributed.barrier(dist)
    if dist.is_main and metrics["status"] == "finished":  # only now is the resumable state no longer needed
        remove_resumable_state(run.folder)
    return run.reload()


def _diverged_message(run: Run) -> str:
    """What a diverged run says, now and on every rerun: where it diverged, what is kept, what to change."""
    m, cfg = run.metrics, run.config
    lr = getattr(getattr(cfg, "optim", None), "lr", None)
    where = f"at step {m['step']}" if m.get("step") is not None else "early"
    kept = (f"its last finite checkpoint is {m['checkpoint']} (step {m['checkpoint_step']})" if m.get("checkpoint")
            else "no checkpoint of it was written")
    hint = f"lower optim.lr (now {lr:g}) or set optim.clip_grad" if lr is not None else "change its settings"
    return (f"{run.verb} {run.name} diverged {where} (non-finite {m.get('what', 'loss')}); {kept}; the same config "
            f"diverges again: {hint}, then rerun (or --force to retry this config) [{run.folder}]")


def train_or_load(verb: str, cfg: Any, p: Profile | str | None = None, options: RunOptions | None = None,
                  given: dict[str, Run] | None = None, **option_kwargs: Any) -> Run:
    """The finished run of `cfg` (trained, resumed, adopted from artifacts/ or loaded), dependencies first.
    `option_kwargs` build RunOptions (root, force, progress, probe_every, stop_after_steps, ...)."""
    options = options or RunOptions(**option_kwargs)
    if isinstance(p, str):
        p = profile(p)
    return execute(plan(verb, cfg, p, options, given), options)


def run(verb: str, p: Profile | str = "smoke", variant: str = "", *, overrides: Sequence[str] | dict | None = None,
        root: str | os.PathLike | None = None, force: bool = False, progress: bool = True, probe_every: int = 0,
        stop_after_steps: int | None = None, trust_checkpoints: bool = False,
        artifacts: str | os.PathLike | None = None, **settings: Any) -> Run:
    """Train or load a run of `verb` in profile `p` (a name or a Profile), variant `variant` ("" = the default).

    `settings`: top-level fields of the run config, e.g. `image_teacher=teacher_run` (a Run or a reference string),
    `seed=1`, `mask_ratio=0.95`; `overrides`: nested ones, e.g. {"optim.epochs": 5} or ["optim.epochs=5"].
    The run is recorded under `root` (default runs/) and reused on the next call. `artifacts`: the folder of
    shipped runs to adopt from (default: the repository's artifacts/)."""
    p = profile(p) if isinstance(p, str) else p
    given: dict[str, Run] = {}
    top: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Run):
            given[value.ref] = value
            value = value.ref
        top[key] = value
    cfg = run_config(verb, p, variant, top)
    cfg = apply_overrides(cfg, overrides)
    options = RunOptions(root=root, force=force, progress=progress, probe_every=probe_every,
                         stop_after_steps=stop_after_steps,
                         trust_checkpoints=trust_checkpoints,
                         artifacts=Path(artifacts) if artifacts is not None else None)
    return train_or_load(verb, cfg, p, options, given)


def clips(p: Profile | str = "smoke", split: str = "val", task: str | None = None):
    """Labeled clips of a profile's data: `split` "train", "val" or "test"; `task` the label set of "label"
    (default: the profile's). Items: {"video" [C, T, H, W], "index", "label", ...}."""
    from mvd_lib.datasets import labeled_clips

    p = profile(p) if isinstance(p, str) else p
    data = p.data if task is None else dataclasses.replace(p.data, task=task)
    return labeled_clips(data, p.model, split, seed=p.seed)


def load(folder: str | os.PathLike) -> Run:
    """The run recorded in `folder`."""
    return Run.load(folder)

