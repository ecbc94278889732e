"""The training loop shared by every run type: schedule, precision, checkpoints, exact resume, DDP.

Mirrors what the reference spreads over `run_*.py`, `engine_for_*.py` and `utils.py`
(mvd_reference.md sections 5-6): AdamW with per-group `lr_scale`, the learning rate set every step from a
linear-warmup + cosine schedule (lr scaled by total_batch / 256), optional gradient clipping, bf16 autocast
on GPUs, gradient accumulation (the reference's `update_freq`).

What it adds:
- exact resume: a checkpoint holds model, optimizer, scaler, epoch, step within the epoch, RNG state and
  the metrics so far; the data order is a function of (seed, epoch) and a resumed epoch skips the batches
  already seen, so a run killed at any point and resumed produces the same loss curve as an uninterrupted one
  (on CPU, bit for bit). Checkpoints are written atomically (temp file, then rename);
- a non-finite loss stops the run (`NonFiniteLossError`, with the step, epoch, loss parts and the last
  checkpoint as fields); a checkpoint is only ever written from finite weights and optimizer state, so the one
  left behind is the last good one; a damaged or non-finite `checkpoint-last.pth` is refused with the remedy;
- the resumable state is kept after the last epoch until `finish()`: a run killed while its results are being
  written (e.g. during the final evaluation) resumes at its end instead of training again;
- progress bars (tqdm.auto) with loss, lr and clips/s; optional hooks (e.g. a cheap probe) after each epoch;
- torchrun DDP: each process reads its share of each global batch; the recorded loss is the global mean.

An `Objective` supplies the model, its loss on a batch and its parameter groups (see objectives.py).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mvd_lib import devices
from mvd_lib.checkpoint import CheckpointError, atomic_save, name_some, non_finite_tensors, read_checkpoint
from mvd_lib.config import OptimConfig
from mvd_lib.distributed import DistInfo, ResumableSampler, all_reduce_mean, any_true
from mvd_lib.errors import ConfigError
from mvd_lib.optim import apply_schedule, cosine_schedule, scaled_lr


class Objective(Protocol):
    """What the engine trains. `net` is the model, or its DDP wrapper, to call in `loss` (so gradients sync)."""

    model: nn.Module

    def param_groups(self, optim: OptimConfig) -> list[dict]: ...

    def loss(self, net: nn.Module, batch: dict[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


class NonFiniteLossError(RuntimeError):
    """The run diverged: a loss, or the weights about to be checkpointed, hold NaN or inf.

    Nothing is written from non-finite values, so `checkpoint` (the run's checkpoint-last.pth, or None if the run
    diverged before its first checkpoint) holds the last finite state, at `checkpoint_step`. `to_dict()` gives a
    JSON-ready record for the run's metrics (status "diverged")."""

    def __init__(self, message: str, *, what: str = "loss", step: int | None = None, epoch: int | None = None,
                 parts: dict[str, float] | None = None, lr: float | None = None, checkpoint: Path | None = None,
                 checkpoint_step: int | None = None, tensors: list[str] | None = None):
        super().__init__(message)
        self.what = what  # "loss" (a non-finite loss) or "weights" (non-finite weights / optimizer state)
        self.step, self.epoch, self.lr = step, epoch, lr  # where it happened; lr: the scheduled lr of that step
        self.parts = dict(parts or {})  # the loss parts of that step (NaN / inf included)
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step  # last finite checkpoint, or None
        self.tensors = list(tensors or [])  # non-finite tensors (what == "weights")

    def to_dict(self) -> dict[str, Any]:
        return {"status": "diverged", "what": self.what, "step": self.step, "epoch": self.epoch, "lr": self.lr,
                "parts": {k: (v if math.isfinite(v) else str(v)) for k, v in self.parts.items()},
                "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
                "checkpoint_step": self.checkpoint_step, "tensors": self.tensors, "message": str(self)}


def remove_resumable_state(run_dir: str | os.PathLike) -> None:
    """Delete a finished run's resumable state: checkpoint-last.pth and every process's RNG file."""
    run_dir = Path(run_dir)
    for path in [run_dir / "checkpoint-last.pth", *run_dir.glob("rng-rank*.pth")]:
        path.unlink(missing_ok=True)


@dataclass
class TrainState:
    """Position and history of a run (saved in every checkpoint)."""

    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # optimizer steps already done in the current epoch
    step: int = 0  # optimizer steps done in total
    samples: int = 0  # training samples seen
    wall_time_s: float = 0.0  # training time over all sessions of this run
    loss_curve: list[float] = field(default_factory=list)  # global mean loss per optimizer step
    parts_curve: dict[str, list[float]] = field(default_factory=dict)  # per-part losses per step
    lr_curve: list[float] = field(default_factory=list)  # base lr per step
    epoch_metrics: list[dict[str, Any]] = field(default_factory=list)  # hook outputs per epoch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Train `objective.model` on `dataset` with `optim`; state and checkpoints live in `run_dir`.

    Args:
        checkpoint_every: also checkpoint every this many optimizer steps (0: only at epoch ends).
        hooks: callables (epoch, model) -> dict of metrics, run on the main process after every epoch.
        stop_after_steps: stop (with a checkpoint) after this many optimizer steps in this session; for tests
            and for splitting long runs over several sessions.
    """

    def __init__(
        self,
        objective: Objective,
        dataset: Dataset,
        optim: OptimConfig,
        run_dir: str | os.PathLike,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        dist_info: DistInfo = DistInfo(),
        num_workers: int = 0,
        checkpoint_every: int = 0,
        hooks: list[Callable[[int, nn.Module], dict[str, Any]]] | None = None,
        progress: bool = True,
        stop_after_steps: int | None = None,
        description: str = "train",
    ):
        self.objective, self.dataset, self.optim = objective, dataset, optim
        self.run_dir = Path(run_dir)
        self.seed, self.device, self.dtype = seed, torch.device(device), dtype
        self.dist, self.num_workers = dist_info, num_workers
        self.checkpoint_every, self.hooks = checkpoint_every, hooks or []
        self.progress, self.stop_after_steps, self.description = progress, stop_after_steps, description
        for setting, value in (("checkpoint_every", checkpoint_every), ("num_workers", num_workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{setting} must be an integer >= 0, got {value!r}")
        if stop_after_steps is not None and (isinstance(stop_after_steps, bool) or not isinstance(stop_after_steps, int)
                                             or stop_after_steps < 1):
            raise ValueError(f"stop_after_steps must be an integer >= 1 (or None to train to the end), "
                             f"got {stop_after_steps!r}")
        self._checkpoint_step: int | None = None  # step of the checkpoint this trainer wrote or resumed from

        per_step = optim.batch_size // optim.accum_steps
        if per_step % dist_info.world:
            raise ValueError(f"batch {optim.batch_size} / accum {optim.accum_steps} is not divisible by {dist_info.world} processes")
        self.batch_per_process = per_step // dist_info.world
        self.sampler = ResumableSampler(dataset, self.batch_per_process, dist_info, seed=seed)
        self.steps_per_epoch = self.sampler.batches_per_epoch() // optim.accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the training set holds {len(dataset)} samples, fewer than one batch "
                              f"(optim.batch_size={optim.batch_size}): use more data or a smaller batch")
        lr = scaled_lr(optim.lr, optim.batch_size) if optim.scale_lr else optim.lr
        min_lr = scaled_lr(optim.min_lr, optim.batch_size) if optim.scale_lr else optim.min_lr
        self.lr_schedule = cosine_schedule(lr, min_lr, optim.epochs, self.steps_per_epoch, optim.warmup_epochs)

        objective.model.to(self.device)
        self.net: nn.Module = objective.model
        if dist_info.enabled:
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(objective.model, device_ids=ids, broadcast_buffers=False)
        self.optimizer = torch.optim.AdamW(objective.param_groups(optim), lr=lr, betas=optim.betas)
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None
        self.state = TrainState()

    # ------------------------------------------------------------------ checkpoints
    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoint-last.pth"

    def _rng_file(self) -> Path:
        return self.run_dir / f"rng-rank{self.dist.rank}.pth"

    @property
    def finished(self) -> bool:
        """True once every epoch has been trained."""
        return self.state.epoch >= self.optim.epochs

    def non_finite_state(self) -> list[str]:
        """Names of the weights, buffers and optimizer-state tensors holding NaN or inf (one device sync);
        optimizer state is named `optimizer[<parameter>].<entry>`."""
        names = {id(p): n for n, p in self.objective.model.named_parameters()}
        tensors = [(k, v) for k, v in self.objective.model.state_dict().items() if v.is_floating_point()]
        for param, st in self.optimizer.state.items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    tensors.append((f"optimizer[{names.get(id(param), '?')}].{k}", v))
        if not tensors:
            return []
        flags = torch.stack([torch.isfinite(v).all().to(self.device) for _, v in tensors]).cpu()
        return [name for (name, _), ok in zip(tensors, flags.tolist()) if not ok]

    def _last_good(self) -> tuple[Path | None, str]:
        """(checkpoint path or None, a phrase for messages) of the last checkpoint written or resumed from."""
        if self._checkpoint_step is not None and self.last_checkpoint.exists():
            return self.last_checkpoint, f"the last finite checkpoint is {self.last_checkpoint} (step {self._checkpoint_step})"
        return None, "no checkpoint of this run was written before it"

    def _diverged(self, what: str, detail: str, parts: dict[str, float] | None = None, lr: float | None = None,
                  tensors: list[str] | None = None) -> NonFiniteLossError:
        path, phrase = self._last_good()
        msg = (f"{detail}; {phrase}; training is deterministic, so rerunning it unchanged diverges again: lower "
               f"optim.lr (now {self.optim.lr:g}), set optim.clip_grad, or train in float32/bf16")
        return NonFiniteLossError(msg, what=what, step=self.state.step, epoch=self.state.epoch, parts=parts, lr=lr,
                                  checkpoint=path, checkpoint_step=self._checkpoint_step if path else None,
                                  tensors=tensors)

    def save(self) -> None:
        """Atomically write the resumable state (main process; every process saves its own RNG stream).

        Raises NonFiniteLossError, writing nothing, if any weight or optimizer-state tensor is NaN or inf."""
        bad = self.non_finite_state()
        if any_true(bool(bad), self.dist, self.device):
            raise self._diverged("weights", f"non-finite weights after step {self.state.step} (epoch "
                                 f"{self.state.epoch}): {len(bad)} weight or optimizer-state tensors hold NaN or "
                                 f"inf ({name_some(bad, 4)}); not checkpointed", tensors=bad)
        if self.dist.enabled:
            atomic_save({"torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, self._rng_file())
        if not self.dist.is_main:
            self._checkpoint_step = self.state.step
            return
        extra = self.objective.extra_state() if hasattr(self.objective, "extra_state") else {}
        payload = {
            "model": self.objective.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.state.epoch,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "train_state": asdict(self.state),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "objective": extra,
        }
        atomic_save(payload, self.last_checkpoint)
        self._checkpoint_step = self.state.step

    def resume(self) -> bool:
        """Load `checkpoint-last.pth` if present. Returns True if the run continues from it.

        A checkpoint that cannot be read, does not fit, or holds non-finite values raises CheckpointError, one line
        naming the file and the remedy (delete it to restart the run, or rerun with --force)."""
        path = self.last_checkpoint
        if not path.exists():
            return False
        remedy = f"delete {path} to restart this run from step 0, or rerun with --force"
        try:
            ckpt = read_checkpoint(path)
            for key in ("model", "optimizer", "train_state", "rng"):
                if key not in ckpt:
                    raise CheckpointError(f"{path} has no {key!r} entry: it is not a resumable checkpoint")
            bad = non_finite_tensors({"model": ckpt["model"], "optimizer": ckpt["optimizer"].get("state", {})})
            if bad:
                raise CheckpointError(f"{path} holds non-finite values (NaN or inf) in {len(bad)} tensors, e.g. "
                                      f"{name_some(bad, 4)}: it was saved by a run that diverged")
            self.objective.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            state = TrainState(**ckpt["train_state"])
            rng = read_checkpoint(self._rng_file()) if self.dist.enabled and self._rng_file().exists() else ckpt["rng"]
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            if hasattr(self.objective, "load_extra_state"):
                self.objective.load_extra_state(ckpt.get("objective", {}))
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume: {err}; {remedy}") from None
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise CheckpointError(f"cannot resume from {path}: {type(err).__name__}: {first}; {remedy}") from None
        self.state = state
        self._checkpoint_step = state.step
        return True

    def finish(self) -> None:
        """Delete the resumable state (checkpoint-last.pth and the per-rank RNG files) of a finished run.

        Call it last, once the run's results (final weights, evaluation, metrics) are safely written: until then a
        rerun resumes at the end of training instead of training again. Every process removes its own RNG file;
        the main process removes the checkpoint."""
        if not self.finished:
            raise RuntimeError(f"finish() before the end of training (epoch {self.state.epoch} of "
                               f"{self.optim.epochs}); the resumable state is kept")
        self._rng_file().unlink(missing_ok=True)
        if self.dist.is_main:
            remove_resumable_state(self.run_dir)

    # ------------------------------------------------------------------ loop
    def _loader(self) -> DataLoader:
        self.sampler.set_position(self.state.epoch, self.state.batch_in_epoch * self.optim.accum_steps)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.state.epoch)
        # datasets that return several samples per item (repeated augmentation) bring their own collate
        return DataLoader(self.dataset, batch_size=self.batch_per_process, sampler=self.sampler,
                          num_workers=self.num_workers, drop_last=True, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, collate_fn=getattr(self.dataset, "collate", None))

    def _record(self, loss: float, parts: dict[str, float], lr: float) -> None:
        s = self.state
        s.loss_curve.append(loss)
        for k, v in parts.items():
            s.parts_curve.setdefault(k, []).append(v)
        s.lr_curve.append(lr)

    def fit(self) -> TrainState:
        """Train to the end (or `stop_after_steps`), resuming from the last checkpoint if there is one.

        Dropout and drop path draw from the global torch generator; the run seeds (or restores) its own stream
        inside a fork of the caller's RNG state, so a notebook's random stream is left where it was."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            return self._fit()

    def _fit(self) -> TrainState:
        if self.state.step == 0:
            resumed = self.resume()
            if not resumed:
                torch.manual_seed(self.seed + self.dist.rank)  # dropout / drop path stream of this run
        total_steps = self.optim.epochs * self.steps_per_epoch
        session_steps = 0
        bar = tqdm(total=total_steps, initial=self.state.step, desc=self.description, unit="step",
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        self.objective.model.train()
        while self.state.epoch < self.optim.epochs:
            batches = iter(self._loader())
            while self.state.batch_in_epoch < self.steps_per_epoch:
                t0 = time.perf_counter()
                lr = float(self.lr_schedule[self.state.step])
                apply_schedule(self.optimizer, lr)
                loss, parts = self._optimizer_step(batches)
                self._record(loss, parts, lr)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                self.state.samples += self.optim.batch_size
                dt = time.perf_counter() - t0
                self.state.wall_time_s += dt
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{self.optim.batch_size / dt:.1f}",
                                epoch=self.state.epoch)
                session_steps += 1
                stop = self.stop_after_steps is not None and session_steps >= self.stop_after_steps
                if self.checkpoint_every and self.state.step % self.checkpoint_every == 0 and not stop:
                    self.save()
                if stop:
                    self.save()
                    bar.close()
                    return self.state
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._run_hooks()
            self.save()
        bar.close()
        return self.state

    def _optimizer_step(self, batches) -> tuple[float, dict[str, float]]:
        """One optimizer step over accum_steps micro-batches. Returns the global mean loss and parts."""
        self.optimizer.zero_grad(set_to_none=True)
        total, parts_sum = 0.0, {}
        for micro in range(self.optim.accum_steps):
            batch = to_device(next(batches), self.device)
            with devices.autocast(self.device, self.dtype):
                loss, parts = self.objective.loss(self.net, batch, self.state.epoch)
            bad = not math.isfinite(loss.item())
            if any_true(bad, self.dist, self.device):
                values = {k: float(v) for k, v in parts.items()} or {"loss": float(loss.item())}
                lr = float(self.lr_schedule[self.state.step])
                raise self._diverged("loss", f"non-finite loss at step {self.state.step} (epoch {self.state.epoch}, "
                                     f"lr {lr:.3g}): {values}", parts=values, lr=lr)
            scaled = loss / self.optim.accum_steps
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
            total += float(all_reduce_mean(loss.detach(), self.dist)) / self.optim.accum_steps
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(all_reduce_mean(v.detach(), self.dist)) / self.optim.accum_steps
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.optim.clip_grad > 0:
            nn.utils.clip_grad_norm_(self.objective.model.parameters(), self.optim.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if hasattr(self.objective, "after_step"):
            self.objective.after_step(self.state.step)
        return total, parts_sum

    def _run_hooks(self) -> None:
        if not self.hooks:
            return
        record: dict[str, Any] = {"epoch": self.state.epoch, "step": self.state.step}
        if self.dist.is_main:
            rng = torch.get_rng_state()
            self.objective.model.eval()
            for hook in self.hooks:
                record.update(hook(self.state.epoch, self.objective.model))
            self.objective.model.train()
            torch.set_rng_state(rng)  # hooks must not shift the training stream
        self.state.epoch_metrics.append(record)
