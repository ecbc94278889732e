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
  `trust_pickle=True`, because unpickling runs code from the file; a file that is no checkpoint at all (empty,
  text, an HTML page, a Git LFS pointer, truncated, random bytes) raises `CheckpointError` saying what it is;
- weights holding NaN or inf (saved by a run that diverged) are refused (`NonFiniteCheckpointError`).

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
from mvd_lib.errors import UserError
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


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be read or does not fit the model."""


class UntrustedCheckpointError(CheckpointError):
    """The file contains pickled Python objects and `trust_pickle` was not given."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of a checkpoint do not match the model (every offending key is named)."""


class NonFiniteCheckpointError(CheckpointError):
    """The checkpoint holds NaN or infinite weights (e.g. saved by a run that diverged); the tensors are named."""


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
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickled torch MAGIC_NUMBER (pre-1.6 format)
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([A-Za-z_][\w.]*\.[A-Za-z_]\w*) was not an allowed")


def describe_file(path: str | os.PathLike) -> tuple[str, str]:
    """(kind, description) of what a file looks like from its first bytes, without unpickling anything.

    kind: "zip" (a PyTorch checkpoint, the format of torch >= 1.6), "legacy" (PyTorch's older pickle format),
    or, for files torch cannot load, "empty", "damaged_zip", "zip_not_torch", "pickle", "lfs_pointer", "html",
    "text" or "unknown"; description is a short phrase for messages ("is empty (0 bytes)")."""
    import zipfile

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty", "is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            return "damaged_zip", (f"is a damaged or truncated PyTorch checkpoint ({size} bytes; its zip archive "
                                   f"cannot be read: {err})")
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "zip_not_torch", f"is a zip archive without data.pkl, not a PyTorch checkpoint ({len(names)} entries)"
        return "zip", "is a PyTorch checkpoint"
    if head.startswith(_LEGACY_MAGIC):
        return "legacy", "is a PyTorch checkpoint in the legacy (pre-1.6) format"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle", "is a plain Python pickle, not a PyTorch checkpoint (torch.save writes a zip archive)"
    text = _as_text(head)
    if text is not None:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        if text.startswith("version https://git-lfs"):
            return "lfs_pointer", "is a Git LFS pointer, not the checkpoint itself (fetch it with `git lfs pull`)"
        if text.lstrip().lower().startswith(("<!doctype html", "<html")):
            return "html", f"is an HTML page, not a checkpoint (a failed download?); it starts with {first!r}"
        return "text", f"is a text file, not a PyTorch checkpoint; it starts with {first!r}"
    return "unknown", (f"is not a PyTorch checkpoint (neither a zip archive nor a pickle; {size} bytes starting "
                       f"with {head[:8].hex(' ')})")


def _as_text(head: bytes) -> str | None:
    """`head` decoded as UTF-8 if it looks like text (a cut multi-byte character at the end is allowed)."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    return text if all(c.isprintable() or c in "\t\r\n\f" for c in text) else None


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint on CPU, refusing pickled objects unless `trust_pickle`.

    Raises CheckpointError, one line naming the file and saying what it is when it is not a readable checkpoint
    (missing, empty, text, truncated, not a PyTorch file), and UntrustedCheckpointError only for a sound
    checkpoint whose single problem is a pickled Python object the weights-only unpickler refuses."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    kind, what = describe_file(path)
    if kind not in ("zip", "legacy"):
        raise CheckpointError(f"cannot read checkpoint {path}: it {what}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler met something it does not allow
        found = _UNSUPPORTED_GLOBAL.search(str(err))
        if found is None:  # not a refused class: the pickle itself is broken
            raise CheckpointError(f"cannot read checkpoint {path}: it {what} but its contents are damaged "
                                  f"({_last_line(err)})") from None
        if not trust_pickle:
            raise UntrustedCheckpointError(
                f"{path} holds pickled Python objects ({found.group(1)}; the reference scripts store their argparse "
                f"`args` this way), and unpickling can run code from the file; if you trust where this file came "
                f"from, load it with trust_pickle=True (command line: --trust-checkpoint)") from None
        obj = _load(path, weights_only=False)
    except Exception as err:  # truncated or damaged inside an intact archive
        raise CheckpointError(f"cannot read checkpoint {path}: it {what} but could not be loaded "
                              f"({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors or a checkpoint dict")
    return obj


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("Check the doc")]
    return lines[-1].split(" Please use")[0][:300] if lines else type(err).__name__


def _load(path: Path, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {_first_line(err)}") from None


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in `state` holding NaN or inf (nested dicts / lists are searched,
    names joined with '.'); meta tensors are skipped."""
    found: list[str] = []

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if (value.is_floating_point() or value.is_complex()) and not value.is_meta \
                    and not bool(torch.isfinite(value).all()):
                found.append(prefix)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                visit(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{prefix}.{i}" if prefix else str(i), v)

    visit("", state)
    return found


def name_some(names: list[str], limit: int = 8) -> str:
    """'a, b, c' or 'a, b, ... (+N more)'."""
    return ", ".join(names[:limit]) + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


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
        parts = []
        if mismatched:
            parts.append(f"shape mismatch ({len(mismatched)}): " + "; ".join(mismatched))
        if unexpected:
            parts.append(f"unexpected keys in the file ({len(unexpected)}): " + ", ".join(unexpected))
        if missing:
            parts.append(f"model keys missing from the file ({len(missing)}): " + ", ".join(missing))
        raise CheckpointMismatchError(f"checkpoint {name} does not fit {type(model).__name__}: " + " | ".join(parts)
                                      + " (pass drop=[regex] / allow_missing=[regex] to skip keys knowingly)")
    bad = non_finite_tensors(to_load)
    if bad:
        raise NonFiniteCheckpointError(
            f"checkpoint {name} holds non-finite weights (NaN or inf) in {len(bad)} of {len(to_load)} tensors: "
            f"{name_some(bad)}; it was probably saved by a run that diverged")
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
