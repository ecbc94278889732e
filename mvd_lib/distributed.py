"""Multi-process training through torchrun: process group, ranks, a resumable distributed sampler.

World size 1 needs no launcher: everything here degrades to a single process. Under
`torchrun --nproc_per_node N -m mvd_lib <verb> ...` the environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) is read, the process group starts with NCCL on GPUs and gloo on CPUs, and each process
reads its share of every global batch through `ResumableSampler` (a DistributedSampler that can start
mid-epoch, so a resumed run sees exactly the batches an uninterrupted one would).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    world: int = 1  # number of processes
    local_rank: int = 0  # rank within the node (GPU index)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str = "cpu") -> DistInfo:
    """Start the process group if launched by torchrun (WORLD_SIZE > 1); else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over processes (returns a new tensor; unchanged for one process)."""
    if not info.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process if `flag` is True on any (e.g. a non-finite loss on one rank stops all)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every process (picklable objects, e.g. each rank's
    BadInputSummary, since every process reads its own share of the data); [obj] for one process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch, last partial batch dropped) that can skip the first
    `start_batch` batches of the current epoch. Global batch s of the run is the same set of samples for
    any world size: indices[s*B : (s+1)*B] of the epoch's permutation, split across ranks."""

    def __init__(self, dataset: Dataset, batch_per_process: int, info: DistInfo, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=info.world, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.batch_per_process = batch_per_process
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.set_epoch(epoch)
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_per_process

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        usable = self.batches_per_epoch() * self.batch_per_process
        return iter(indices[self.start_batch * self.batch_per_process: usable])

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_per_process
