"""Run records: typed overrides, config hashes, run folders, and train-or-load.

Every run (teacher pretraining, distillation, finetuning, probing, evaluation) is a config dataclass
(recipes.py). Its folder is named from the config's hash, `runs/<verb>/<name>-<hash10>/`, and holds:

    config.json     the full config (and the hashes of the runs it depends on)
    metrics.json    loss curve, final metrics, wall time, estimated training FLOPs, device, status
    command.txt     the command that reproduces it
    checkpoint-last.pth / model.pth   resumable state / final weights in the reference key layout

`train_or_load(cfg)` returns the finished run if its folder says so, otherwise takes it from the shipped
artifacts folder (small laptop-scale runs committed to the repository, each with config.json, metrics.json
and command.txt), otherwise resumes or starts it. Changing any field, or any field of a run it depends on,
changes the hash, so finished work is never repeated and stale work is never reused.

Overrides (`--set optim.lr=1e-3`) are parsed against the dataclass field types: an unknown key or a value of
the wrong type fails with a clear message before any compute.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = Path(os.environ.get("MVD_RUNS", "runs"))
ARTIFACTS = Path(os.environ.get("MVD_ARTIFACTS", REPO_ROOT / "artifacts"))


class ConfigError(ValueError):
    """An override or config value is unknown, ill-typed or inconsistent (raised before any compute)."""


# ------------------------------------------------------------------------------------------- overrides
def _parse(text: str, tp: Any, key: str) -> Any:
    """Parse `text` as a value of type `tp` (the field's annotation)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}={text!r}: not a valid {tp} ({'; '.join(errors)})")
    if origin is Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ConfigError(f"{key}={text!r}: must be one of {list(args)}")
    if origin is tuple:
        items = [s for s in text.strip("()[] ").split(",") if s.strip() != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(s.strip(), args[0], key) for s in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_parse(s.strip(), a, key) for s, a in zip(items, args))
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a number") from None
    if tp is str:
        return text
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{key} is a group of settings; set its fields, e.g. {key}.<field>=...")
    raise ConfigError(f"{key}: values of type {tp} cannot be set from the command line")


def _check_type(value: Any, tp: Any, key: str) -> None:
    """Type-check a Python value given through the API (overrides as a dict)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        for a in args:
            try:
                _check_type(value, a, key)
                return
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r}: expected {tp}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}={value!r}: expected None")
        return
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r}: must be one of {list(args)}")
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise ConfigError(f"{key}={value!r}: expected a tuple")
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            raise ConfigError(f"{key}={value!r}: expected {len(args)} values")
        for v, a in zip(value, inner):
            _check_type(v, a, key)
        return
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if tp is bool and isinstance(value, bool):
        return
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return
    if tp is str and isinstance(value, str):
        return
    if dataclasses.is_dataclass(tp) and isinstance(value, tp):
        return
    if tp is Any:
        return
    raise ConfigError(f"{key}={value!r}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")


def _fields(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any] | None) -> Any:
    """A copy of the (nested, frozen) dataclass `cfg` with `overrides` applied.

    `overrides`: ["optim.lr=1e-3", "data.num_clips=500"] (strings, parsed by field type) or
    {"optim.lr": 1e-3} (values, type-checked). Raises ConfigError on unknown or ill-typed keys."""
    if not overrides:
        return cfg
    items: list[tuple[str, Any, bool]] = []
    if isinstance(overrides, dict):
        items = [(k, v, False) for k, v in overrides.items()]
    else:
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"override {o!r} must look like key=value (e.g. optim.lr=1e-3)")
            k, v = o.split("=", 1)
            items.append((k.strip(), v.strip(), True))
    for key, value, is_text in items:
        cfg = _set(cfg, key.split("."), value, is_text, key)
    return cfg


def _set(obj: Any, path: list[str], value: Any, is_text: bool, full: str) -> Any:
    fields = _fields(type(obj))
    name = path[0]
    if name not in fields:
        raise ConfigError(f"unknown setting {full!r}: {type(obj).__name__} has {sorted(fields)}")
    tp = fields[name]
    if len(path) > 1:
        child = getattr(obj, name)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"{'.'.join(full.split('.')[:-len(path) + 1])} is not a group of settings")
        return dataclasses.replace(obj, **{name: _set(child, path[1:], value, is_text, full)})
    if is_text:
        value = _parse(value, tp, full)
    else:
        _check_type(value, tp, full)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (ValueError, TypeError) as err:  # the dataclass's own validation
        raise ConfigError(f"{full}={value!r}: {err}") from None


def config_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_hash(cfg: Any, dependencies: dict[str, str] | None = None) -> str:
    """10 hex digits of sha256 over the canonical JSON of the config and its dependencies' hashes."""
    payload = {"config": config_dict(cfg), "dependencies": dependencies or {}}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------- run records
@dataclass
class Run:
    """A run's folder and what it recorded."""

    verb: str  # run type, e.g. "distill"
    name: str  # preset name (or "custom")
    hash: str  # config hash
    dir: Path  # its folder
    config: Any  # the config dataclass
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json contents

    @property
    def finished(self) -> bool:
        return self.metrics.get("status") == "finished"

    @property
    def model_path(self) -> Path:
        return self.dir / "model.pth"

    def reload(self) -> "Run":
        path = self.dir / "metrics.json"
        self.metrics = json.loads(path.read_text()) if path.exists() else {}
        return self


def run_folder(verb: str, name: str, cfg_hash: str, root: str | os.PathLike = DEFAULT_RUNS) -> Path:
    return Path(root) / verb / f"{name or 'custom'}-{cfg_hash}"


def command_line(verb: str, name: str, overrides: list[str] | None = None) -> str:
    """The command that reproduces a run of a preset with overrides."""
    sets = " ".join(f"--set {o}" for o in overrides or [])
    return f"python -m mvd_lib {verb} --preset {name} {sets}".strip()


def find_artifact(verb: str, name: str, cfg_hash: str, artifacts: str | os.PathLike = ARTIFACTS) -> Path | None:
    """A shipped finished run with this exact hash, if the repository carries one."""
    folder = Path(artifacts) / verb / f"{name or 'custom'}-{cfg_hash}"
    metrics = folder / "metrics.json"
    if metrics.exists() and json.loads(metrics.read_text()).get("status") == "finished":
        return folder
    return None


def adopt_artifact(src: Path, dst: Path) -> None:
    """Copy a shipped run into the runs folder (so later runs can write beside it)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def python_command() -> str:
    """How this process was started (recorded in command.txt when no preset command applies)."""
    return " ".join([Path(sys.executable).name, *sys.argv])


__all__ = [
    "ConfigError", "apply_overrides", "config_dict", "config_hash", "Run", "run_folder", "command_line",
    "find_artifact", "adopt_artifact", "DEFAULT_RUNS", "ARTIFACTS",
]
