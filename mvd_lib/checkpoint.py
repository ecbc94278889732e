"""Checkpoint I/O in the reference key layouts: MAE, VideoMAE (pretrain, finetuned), MVD (pretrain, finetuned).

mvd_reference.md sections 3-4 give the layouts. What the reference does when loading (`run_mvd_pretraining.py`,
`run_class_finetuning.py`): take `model` or `module`, strip `backbone.`/`encoder.` prefixes, drop every
`pos_embed`, then load NON-STRICTLY AND SILENTLY. What mvd_lib does instead:

- every file key is accounted for: loaded, or dropped for a NAMED reason that applies to this target model
  (a pretraining decoder when building a teacher or a classifier, the pretraining `norm` when finetuning, ...);
- every model key is accounted for: loaded, a fixed positional table (rebuilt, as the reference does; the
  file's table is compared with ours and any difference reported), or allowed to be missing for a named
  reason (a fresh classifier head);
- anything else (an unexpected key, a missing key, a shape mismatch) raises `CheckpointMismatchError`, naming
  every offending key and both shapes;
- files holding pickled Python objects (the reference stores its argparse `args`) load only with
  `trust_pickle=True`, because unpickling runs code from the file.

Our own checkpoints (`save_checkpoint`) use the same layout, `{model, optimizer, epoch, scaler, args}`, with
`args` as a plain dict, so they load with `weights_only=True` here and with the official code there.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from mvd_lib.atomic import atomic_write
from mvd_lib.classifier import VideoClassifier
from mvd_lib.mae import ImageViT, MAEPretrain
from mvd_lib.student import MVDStudent, TokenDistillStudent
from mvd_lib.videomae import VideoMAEPretrain
from mvd_lib.vit import VideoViT

PREFIXES = ("module.", "backbone.", "encoder.")
_FIXED_TABLE = re.compile(r"^(\w+\.)?(pos_embed(_\w+)?|decoder_pos_embed)$")
_DECODER = re.compile(
    r"^(decoder|decoder_(img|vid|pix|ema)|down_(img|vid|pix|ema)|mask_token(_(img|vid|pix|ema))?|encoder_to_decoder|"
    r"decoder_embed|decoder_blocks|decoder_norm|decoder_pred|heads)(\.|$)"
)
_CLASSIFIER = re.compile(r"^(head|fc_norm)\.")
_FINAL_NORM = re.compile(r"^norm\.")

Rule = tuple[re.Pattern, str]


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model."""


class UntrustedCheckpointError(CheckpointError):
    """The file contains pickled Python objects and `trust_pickle` was not given."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of a checkpoint do not match the model (every offending key is named)."""


@dataclass
class LoadReport:
    """What happened to every key. `loaded`: names; the other fields map a key to its reason or shapes."""

    source: str
    loaded: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # file keys not loaded, with the reason
    rebuilt: dict[str, str] = field(default_factory=dict)  # fixed tables recomputed, with the comparison
    missing_allowed: dict[str, str] = field(default_factory=dict)  # model keys left at init, with the reason
    stripped_prefixes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.stripped_prefixes:
            lines.append(f"  stripped prefixes: {', '.join(self.stripped_prefixes)}")
        for title, items in (("dropped", self.dropped), ("fixed tables rebuilt", self.rebuilt),
                             ("left at initialisation", self.missing_allowed)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {k}: {v}" for k, v in _summarise(items)]
        return "\n".join(lines)


def _summarise(items: Mapping[str, str], limit: int = 12) -> list[tuple[str, str]]:
    """Group keys with the same reason, e.g. 'decoder_img.* (38 keys)'."""
    by_reason: dict[str, list[str]] = {}
    for k, v in items.items():
        by_reason.setdefault(v, []).append(k)
    out = []
    for reason, keys in by_reason.items():
        if len(keys) <= 3:
            out += [(k, reason) for k in keys]
        else:
            heads = sorted({k.split(".")[0] for k in keys})
            out.append((", ".join(h + ".*" for h in heads[:limit]) + f" ({len(keys)} keys)", reason))
    return out


# ----------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint on CPU, refusing pickled objects unless `trust_pickle`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler met a Python object
        if not trust_pickle:
            raise UntrustedCheckpointError(
                f"{path} holds pickled Python objects (the reference scripts store their argparse `args` this way), "
                f"and unpickling can run code from the file. If you trust where this file came from, load it with "
                f"trust_pickle=True (command line: --trust-checkpoint). Detail: {str(err).splitlines()[0]}"
            ) from err
        obj = _load(path, weights_only=False)
    except Exception as err:  # truncated, damaged or not a torch file at all
        raise CheckpointError(f"could not read {path}: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors or a checkpoint dict")
    return obj


def _load(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"could not read {path}: {type(err).__name__}: {err}") from err


def model_state(ckpt: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str | None]:
    """The weights of a checkpoint: its `model` or `module` entry, or the dict itself if it is a state dict."""
    for key in ("model", "module", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            return dict(ckpt[key]), key
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return dict(ckpt), None
    raise CheckpointError(f"no weights found: expected a 'model' or 'module' entry, got keys {sorted(ckpt)[:10]}")


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove leading prefixes (repeatedly, e.g. 'module.backbone.'). Returns (new dict, prefixes seen)."""
    out, seen = {}, []
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
                    if p not in seen:
                        seen.append(p)
        if k in out:
            raise CheckpointMismatchError(f"two file keys map to {k!r} after stripping prefixes {prefixes}")
        out[k] = v
    return out, seen


# ----------------------------------------------------------------------------------------------- rules
def _target_rules(model: nn.Module) -> tuple[tuple[str, ...], list[Rule], list[Rule]]:
    """(prefixes to strip, drop rules, allowed-missing rules) for a target model type."""
    if isinstance(model, VideoMAEPretrain):
        return ("module.", "backbone."), [], []
    if isinstance(model, MAEPretrain):
        return ("module.", "backbone."), [], []
    if isinstance(model, ImageViT):
        return PREFIXES, [
            (_DECODER, "MAE pixel decoder (not part of the image encoder)"),
            (_CLASSIFIER, "classification layers of a finetuned model"),
        ], []
    if isinstance(model, VideoClassifier):
        return PREFIXES, [
            (_DECODER, "pretraining decoder (not part of the finetuning model)"),
            (_FINAL_NORM, "final norm of the pretraining encoder (finetuning mean-pools, then applies a new fc_norm)"),
        ], [(_CLASSIFIER, "new classification layers, initialised fresh")]
    if isinstance(model, (MVDStudent, TokenDistillStudent)):
        return PREFIXES, [], []
    if isinstance(model, VideoViT):
        return PREFIXES, [
            (_DECODER, "pretraining decoder (not part of the encoder)"),
            (_CLASSIFIER, "classification layers of a finetuned model"),
        ], []
    raise CheckpointError(f"no loading rules for {type(model).__name__}")


def _match(key: str, rules: Iterable[Rule]) -> str | None:
    for pattern, reason in rules:
        if pattern.search(key):
            return reason
    return None


def _fixed_tables(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's fixed positional tables by state-dict name (also those not stored in the state dict)."""
    return {name: buf for name, buf in model.named_buffers() if _FIXED_TABLE.match(name)}


# ----------------------------------------------------------------------------------------------- loading
def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    trust_pickle: bool = False,
    drop: Iterable[str] = (),
    allow_missing: Iterable[str] = (),
    verbose: bool = False,
) -> LoadReport:
    """Load MAE / VideoMAE / MVD weights (file path or loaded dict) into an mvd_lib model, accounting for every key.

    `drop` / `allow_missing`: extra regular expressions for file keys to skip / model keys to leave at
    initialisation, for cases the built-in rules do not cover (e.g. `allow_missing=[r"^norm\\."]` to build a
    teacher from a finetuned file). Raises CheckpointMismatchError naming every unexplained key or shape.
    """
    name = str(source) if not isinstance(source, Mapping) else "<state dict>"
    ckpt = read_checkpoint(source, trust_pickle) if not isinstance(source, Mapping) else source
    state, _ = model_state(ckpt)
    prefixes, drop_rules, missing_rules = _target_rules(model)
    state, stripped = strip_prefixes(state, prefixes)
    drop_rules = drop_rules + [(re.compile(p), "dropped on request") for p in drop]
    missing_rules = missing_rules + [(re.compile(p), "left at initialisation on request") for p in allow_missing]

    report = LoadReport(source=name, stripped_prefixes=stripped)
    ours = model.state_dict()
    tables = _fixed_tables(model)
    to_load: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state.items():
        if _FIXED_TABLE.match(key):
            report.rebuilt[key] = _compare_table(key, value, tables.get(key))
        elif (reason := _match(key, drop_rules)) is not None:
            report.dropped[key] = reason
        elif key not in ours:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(ours[key].shape):
            mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(ours[key].shape)}")
        else:
            to_load[key] = value
    missing = []
    for key in ours:
        if key in to_load:
            continue
        if _FIXED_TABLE.match(key):
            report.rebuilt.setdefault(key, "not in the file; computed")
        elif (reason := _match(key, missing_rules)) is not None:
            report.missing_allowed[key] = reason
        else:
            missing.append(key)
    if unexpected or missing or mismatched:
        parts = [f"checkpoint {name} does not fit {type(model).__name__}:"]
        if mismatched:
            parts.append(f"  shape mismatch ({len(mismatched)}): " + "; ".join(mismatched))
        if unexpected:
            parts.append(f"  unexpected keys in the file ({len(unexpected)}): " + ", ".join(unexpected))
        if missing:
            parts.append(f"  model keys missing from the file ({len(missing)}): " + ", ".join(missing))
        parts.append("  (pass drop=[regex] / allow_missing=[regex] to skip keys knowingly)")
        raise CheckpointMismatchError("\n".join(parts))
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    if verbose:
        print(report)
    return report


def _compare_table(key: str, value: torch.Tensor, ours: torch.Tensor | None) -> str:
    if ours is None:
        return "the file's table is not used by this model"
    if tuple(value.shape) != tuple(ours.shape):
        return f"file table {tuple(value.shape)} differs in shape from ours {tuple(ours.shape)}; ours is used"
    diff = (value.float() - ours.float().cpu()).abs().max().item()
    if diff > 1e-4:
        return f"file table DIFFERS from ours (max |diff| {diff:.3g}); ours is used"
    return f"file table matches ours (max |diff| {diff:.1e})"


# ----------------------------------------------------------------------------------------------- saving
def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    scaler: Any = None,
    args: Mapping[str, Any] | Any = None,
    **extra: Any,
) -> Path:
    """Write {model, optimizer, epoch, scaler, args, **extra} atomically (temp file, then rename)."""
    model = getattr(model, "module", model)  # unwrap DDP
    payload: dict[str, Any] = {"model": model.state_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if epoch is not None:
        payload["epoch"] = epoch
    if scaler is not None:
        payload["scaler"] = scaler.state_dict() if hasattr(scaler, "state_dict") else scaler
    if args is not None:
        payload["args"] = dict(args) if isinstance(args, Mapping) else dict(vars(args))  # plain dict: weights-only loadable
    payload.update(extra)
    return atomic_save(payload, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path` (atomic.py)."""
    return atomic_write(path, lambda f: torch.save(obj, f))
