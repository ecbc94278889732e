"""Runs as objects: a finished (or interrupted) run's folder, config, metrics and curves, and its models.

Every run lives in `runs/<verb>/<preset>-<hash>/` and holds

    config.json     record schema, run type, preset, hash, the full config, the profile it was made in, the
                    fingerprints of the runs and files it depends on, and the identity of its input lists
    metrics.json    status, loss / part / lr curves, in-training probes, final metrics, wall time, FLOPs, device
    command.txt     the command that reproduces it
    model.pth       final weights in the reference key layout (training run types)
    checkpoint-last.pth   resumable state while the run is unfinished

A `Run` hands back what a notebook needs, exactly as the rest of the library uses it:

    run.config, run.metrics, run.curves, run.folder, run.finished
    run.encoder()   the trained encoder, loaded strictly (video ViT, or MAE image ViT)
    run.teacher()   the frozen teacher whose forward gives the features distillation regresses (the last
                    block before the final norm; the image teacher reads the front frame of every tubelet)
    run.model()     the whole trained model (MAE / VideoMAE with decoder, MVD student with its decoders, classifier)

A `Run` is accepted wherever a reference string is (teachers, init, encoder): it stands for "<verb>@<hash>".
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvd_lib.config import CONFIG_TYPES, config_from_dict
from mvd_lib.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from mvd_lib.analysis import Curves

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = Path(os.environ.get("MVD_RUNS", "runs"))
ARTIFACTS = Path(os.environ.get("MVD_ARTIFACTS", REPO_ROOT / "artifacts"))
SCHEMA = 2  # version of config.json; records without it were made before runs had profiles


@dataclass
class Run:
    """A run's record (see the module docstring)."""

    verb: str  # run type, e.g. "distill"
    name: str  # run preset name, e.g. "laptop_img"
    hash: str  # config hash (with its dependencies' fingerprints)
    folder: Path  # its folder
    config: Any  # the config dataclass
    dependencies: dict[str, str] = field(default_factory=dict)  # reference field -> fingerprint
    _metrics: dict[str, Any] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ record
    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json ({} while the run has none)."""
        if self._metrics is None:
            self._metrics = read_json(self.folder / "metrics.json") if (self.folder / "metrics.json").exists() else {}
        return self._metrics

    @metrics.setter
    def metrics(self, value: dict[str, Any]) -> None:
        self._metrics = value

    def reload(self) -> "Run":
        self._metrics = None
        return self

    @property
    def status(self) -> str:
        return self.metrics.get("status", "not started")

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def model_path(self) -> Path:
        return self.folder / "model.pth"

    def weights(self) -> Path:
        """model.pth of this finished run, for loading; a CheckpointError that names the remedy when the run's
        record was kept without its weights (as in results/*/runs/, which hold records only)."""
        if not self.model_path.is_file():
            from mvd_lib.checkpoint import CheckpointError  # torch-based; records stay importable without it

            path = self.folder / "command.txt"
            command = path.read_text().strip() if path.is_file() else ""
            again = f"`{command} --force`" if command else "the call that made it with --force (force=True)"
            raise CheckpointError(
                f"{self.verb} {self.name} is {self.status} but its weights are missing ({self.model_path}; a record "
                f"kept without model.pth, as results/*/runs/ keep them): delete {self.folder} to have train-or-load "
                f"train it again, or run {again}")
        return self.model_path

    @property
    def ref(self) -> str:
        """The reference string that stands for this run ("<verb>@<hash>")."""
        return f"{self.verb}@{self.hash}"

    @property
    def curves(self) -> "Curves":
        """Loss, parts, lr and in-training probes against the optimizer step (analysis.Curves)."""
        from mvd_lib.analysis import Curves  # numpy-based; records stay importable without it

        return Curves.from_metrics(self.metrics)

    def __str__(self) -> str:
        return f"{self.verb} {self.name} ({self.status}) -> {self.folder}"

    # ------------------------------------------------------------------ models
    def encoder(self) -> "nn.Module":
        """The trained encoder, weights loaded strictly (eval mode)."""
        return _run_type(self).encoder(self).eval()

    def teacher(self) -> "nn.Module":
        """The frozen teacher made from this run: features exactly as distillation consumes them."""
        return _run_type(self).teacher(self)

    def model(self) -> "nn.Module":
        """The whole trained model, weights loaded strictly (eval mode)."""
        return _run_type(self).model(self).eval()

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Run":
        """The run recorded in `folder` (ConfigError naming the folder if its record cannot be read)."""
        folder = Path(folder)
        record = read_json(folder / "config.json")
        if record.get("schema") != SCHEMA:
            raise ConfigError(f"{folder} was recorded by an older mvd_lib (record schema {record.get('schema', 1)}, "
                              f"this one reads {SCHEMA}); rerun it (its folder can be deleted)")
        verb = record.get("verb")
        if verb not in CONFIG_TYPES:
            raise ConfigError(f"{folder / 'config.json'}: unknown run type {verb!r}")
        try:
            cfg = config_from_dict(CONFIG_TYPES[verb], record["config"])
        except (ConfigError, TypeError, KeyError) as err:
            raise ConfigError(f"{folder / 'config.json'}: its config does not match this mvd_lib ({err}); "
                              "rerun it (its folder can be deleted)") from None
        return cls(verb, record.get("name", cfg.name), record["hash"], folder, cfg, record.get("dependencies", {}))


def _run_type(run: Run):
    if not run.finished:
        raise ConfigError(f"{run.verb} {run.name} is {run.status}, not finished: it has no trained model yet")
    from mvd_lib.runtypes import RUN_TYPES  # run types build the models; records only describe them

    return RUN_TYPES[run.verb]


# ------------------------------------------------------------------------------------------------ files
def read_json(path: Path) -> dict[str, Any]:
    """A JSON record; a missing, empty or damaged file is a ConfigError that names it and the remedy."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        what = "is empty" if not text.strip() else f"is not valid JSON ({err.msg} at line {err.lineno})"
        raise ConfigError(f"{path} {what}: delete it to rerun the run, or rerun with --force") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object: delete it to rerun the run, or rerun with --force")
    return data


def run_folder(verb: str, name: str, cfg_hash: str, root: str | os.PathLike = DEFAULT_RUNS) -> Path:
    return Path(root) / verb / f"{name or 'custom'}-{cfg_hash}"


def find_run(verb: str, cfg_hash: str, roots: list[Path]) -> Path | None:
    """The folder of run `verb@cfg_hash` in the first of `roots` that holds one."""
    for root in roots:
        hits = sorted((Path(root) / verb).glob(f"*-{cfg_hash}")) if (Path(root) / verb).is_dir() else []
        if hits:
            return hits[0]
    return None


def find_artifact(verb: str, name: str, cfg_hash: str, artifacts: str | os.PathLike = ARTIFACTS) -> Path | None:
    """A shipped finished run with this exact hash, if the repository carries one."""
    folder = Path(artifacts) / verb / f"{name or 'custom'}-{cfg_hash}"
    metrics = folder / "metrics.json"
    if metrics.exists() and read_json(metrics).get("status") == "finished":
        return folder
    return None


def adopt_artifact(src: Path, dst: Path) -> None:
    """Copy a shipped run into the runs folder (so later runs can write beside it)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def command_line(verb: str, name: str, overrides: list[str] | tuple[str, ...] = (),
                 profile_overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The command that reproduces a run of a preset with profile-level and run-level overrides."""
    parts = [f"python -m mvd_lib {verb} --preset {shlex.quote(name)}"]
    parts += [f"--profile-set {shlex.quote(o)}" for o in profile_overrides]
    parts += [f"--set {shlex.quote(o)}" for o in overrides]
    return " ".join(parts)
