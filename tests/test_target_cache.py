"""Teacher-target cache (mvd_lib/target_cache.py): cached targets give the distillation loss of on-the-fly ones.

Tolerance: targets are stored in float16 (11 significant bits, relative rounding <= 2**-11 ~ 4.9e-4), so the
cached and on-the-fly MVD losses must agree to rtol 1e-3, and each target element to rtol 2e-3 / atol 2e-3;
they must NOT be bit-identical to the float32 targets (the file really holds float16).

The dataset here is a small dict dataset whose clips are a function of (seed, index) only; its "teacher_video"
differs from "video" (frames reversed), so a cache that fed the image teacher the wrong view would fail.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mvd_lib  # noqa: F401  (before timm/torchvision)
from mvd_lib.build import build_distillation
from mvd_lib.distill import mvd_loss, teacher_targets
from mvd_lib.masking import tube_mask
from mvd_lib.rng import generator
from mvd_lib.target_cache import (CachedTargets, CacheMissError, NonDeterministicDatasetError, StaleCacheError,
                                  TargetCache, dataset_fingerprint, fill, teacher_fingerprint)

N_ITEMS = 6
DATA_CONFIG = {"name": "test_clips", "seed": 3, "items": N_ITEMS, "clip": [3, 16, 32, 32]}


class ClipDataset(torch.utils.data.Dataset):
    """Deterministic clips: item i is drawn from a generator seeded with (seed, i)."""

    deterministic = True

    def __init__(self, n: int = N_ITEMS, seed: int = 3, fail_at: int | None = None, hang_at: int | None = None):
        self.n, self.seed, self.fail_at, self.hang_at = n, seed, fail_at, hang_at
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        if self.fail_at is not None and i == self.fail_at:
            raise RuntimeError(f"simulated kill while reading item {i}")
        if self.hang_at is not None and i == self.hang_at:
            time.sleep(120)  # the process is killed while waiting here
        video = torch.randn(3, 16, 32, 32, generator=generator(self.seed * 1000 + i))  # [C, T, H, W]
        return {"video": video, "teacher_video": video.flip(1), "index": i, "label": i % 2}


class RandomClips(ClipDataset):
    """Not deterministic: declares nothing."""

    deterministic = False


def batch_of(ds: ClipDataset, indices: list[int]) -> dict[str, torch.Tensor]:
    items = [ds[i] for i in indices]
    return {"video": torch.stack([it["video"] for it in items]),
            "teacher_video": torch.stack([it["teacher_video"] for it in items]),
            "index": torch.tensor(indices)}


@pytest.fixture(scope="module")
def models():
    student, teachers = build_distillation("vit_nano", seed=0)
    return student.eval(), teachers


def test_cached_and_on_the_fly_targets_give_the_same_loss(models, tmp_path):
    student, teachers = models
    ds = ClipDataset()
    cached = CachedTargets(teachers, ds, tmp_path, DATA_CONFIG, batch_size=4, progress=False, verify=True)
    assert cached.computed == {"img": N_ITEMS, "vid": N_ITEMS} and cached.complete

    batch = batch_of(ds, [4, 1, 3])
    fly = teacher_targets(teachers, batch["video"], batch["teacher_video"])
    from_cache = cached(batch["index"])
    for k in ("img", "vid"):
        assert from_cache[k].dtype == torch.float32 and from_cache[k].shape == fly[k].shape
        torch.testing.assert_close(from_cache[k], fly[k], rtol=2e-3, atol=2e-3)
        assert not torch.equal(from_cache[k], fly[k]), "cache should hold float16, not float32 copies"
    # the image teacher saw the teacher view: its targets differ from those of the student view
    assert not torch.allclose(teachers["img"](batch["video"]), from_cache["img"], rtol=1e-2, atol=1e-2)

    mask = tube_mask(3, student.cfg.grid, 0.75, generator(0))
    with torch.no_grad():
        loss_fly, parts_fly = mvd_loss(student, batch["video"], mask, fly)
        loss_cached, parts_cached = mvd_loss(student, batch["video"], mask, from_cache)
    assert torch.isfinite(loss_fly)
    torch.testing.assert_close(loss_cached, loss_fly, rtol=1e-3, atol=0.0)
    for k in ("img", "vid"):
        torch.testing.assert_close(parts_cached[k], parts_fly[k], rtol=1e-3, atol=0.0)


def test_second_fill_computes_nothing_and_reopen_reuses(models, tmp_path):
    _, teachers = models
    ds = ClipDataset()
    first = CachedTargets(teachers, ds, tmp_path, DATA_CONFIG, progress=False)
    assert first.computed == {"img": N_ITEMS, "vid": N_ITEMS}
    assert first.fill(progress=False) == {"img": N_ITEMS, "vid": N_ITEMS}  # nothing added
    assert fill(first.caches["vid"], teachers["vid"], ds, progress=False) == 0
    again = CachedTargets(teachers, ds, tmp_path, DATA_CONFIG, progress=False)
    assert again.computed == {"img": 0, "vid": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(c.dir.name for c in first.caches.values())
    torch.testing.assert_close(again([0, 5])["img"], first([0, 5])["img"], rtol=0, atol=0)


def test_branches_share_one_pass_and_fill_only_what_each_lacks(models, tmp_path):
    _, teachers = models
    ds = ClipDataset()
    img_only = CachedTargets({"img": teachers["img"]}, ds, tmp_path, DATA_CONFIG, progress=False)
    assert img_only.computed == {"img": N_ITEMS}
    both = CachedTargets(teachers, ds, tmp_path, DATA_CONFIG, fill=False, progress=False)
    with pytest.raises(CacheMissError):
        both([0])
    ds.reads = 0
    assert both.fill(batch_size=4, progress=False) == {"img": 0, "vid": N_ITEMS}
    assert ds.reads == N_ITEMS  # every clip read once, for the one teacher that needed it
    assert both.complete


def test_killed_fill_resumes_and_completes(models, tmp_path):
    _, teachers = models
    teacher, ds = teachers["vid"], ClipDataset()
    probe = teacher(ds[0]["video"][None])  # [1, N, D]
    n_tok, dim = probe.shape[1:]
    cache = TargetCache(tmp_path, "vid", N_ITEMS, n_tok, dim)
    with pytest.raises(RuntimeError, match="simulated kill"):
        fill(cache, teacher, ClipDataset(fail_at=4), batch_size=2, progress=False)
    np.testing.assert_array_equal(cache.missing(), [4, 5])  # batches {0,1}, {2,3} were committed
    # a torn write: row 4 half written, its flag never set
    cache.array[4, : n_tok // 2] = np.float16(123.0)
    cache.array.flush()
    with pytest.raises(CacheMissError, match="4"):
        cache.get([3, 4])

    reopened = TargetCache(tmp_path, "vid", N_ITEMS, n_tok, dim)  # as a new process would
    assert fill(reopened, teacher, ds, batch_size=2, progress=False) == 2
    assert reopened.complete and reopened.missing().size == 0
    full = teacher(torch.stack([ds[i]["video"] for i in range(N_ITEMS)]))
    torch.testing.assert_close(reopened.get(range(N_ITEMS)), full, rtol=2e-3, atol=2e-3)


KILLED_FILL = """
import mvd_lib
from mvd_lib.build import build_distillation
from mvd_lib.target_cache import TargetCache, fill
from test_target_cache import ClipDataset
_, teachers = build_distillation("vit_nano", seed=0)
fill(TargetCache({root!r}, "vid", 6, {n}, {d}), teachers["vid"], ClipDataset(hang_at=4), batch_size=2, progress=False)
"""


def test_fill_killed_by_sigkill_resumes(models, tmp_path):
    _, teachers = models
    teacher, ds = teachers["vid"], ClipDataset()
    n_tok, dim = teacher(ds[0]["video"][None]).shape[1:]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", KILLED_FILL.format(root=str(tmp_path), n=n_tok, d=dim)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done_file, deadline = tmp_path / "vid" / "done.npy", time.monotonic() + 60
    try:  # wait until the child has committed batches {0, 1} and {2, 3} and hangs reading item 4
        while not (done_file.exists() and (tmp_path / "vid" / "meta.json").exists()
                   and np.load(done_file, mmap_mode="r")[:4].all()):
            assert child.poll() is None, child.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline, "the child fill made no progress"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    cache = TargetCache(tmp_path, "vid", N_ITEMS, n_tok, dim)
    np.testing.assert_array_equal(cache.missing(), [4, 5])
    assert fill(cache, teacher, ds, batch_size=2, progress=False) == 2 and cache.complete
    full = teacher(torch.stack([ds[i]["video"] for i in range(N_ITEMS)]))
    torch.testing.assert_close(cache.get(range(N_ITEMS)), full, rtol=2e-3, atol=2e-3)


def test_other_teacher_gets_another_key(models, tmp_path):
    _, teachers = models
    _, same = build_distillation("vit_nano", seed=0)
    _, other = build_distillation("vit_nano", seed=1)
    fp = {k: teacher_fingerprint(t) for k, t in teachers.items()}
    assert fp == {k: teacher_fingerprint(t) for k, t in same.items()}  # same weights, same key
    assert fp["img"] != fp["vid"]
    for k in fp:
        assert teacher_fingerprint(other[k]) != fp[k]
    # the same architecture given other weights (a different checkpoint) changes the key, theirs gives it back
    same["vid"].load_state_dict(other["vid"].state_dict())
    assert teacher_fingerprint(same["vid"]) == teacher_fingerprint(other["vid"])

    ds = ClipDataset(n=2)
    config = {**DATA_CONFIG, "items": 2}
    a = CachedTargets({"vid": teachers["vid"]}, ds, tmp_path, config, progress=False)
    b = CachedTargets({"vid": other["vid"]}, ds, tmp_path, config, progress=False)
    c = CachedTargets({"vid": teachers["vid"]}, ds, tmp_path, {**config, "seed": 4}, progress=False)
    dirs = {x.caches["vid"].dir for x in (a, b, c)}
    assert len(dirs) == 3 and b.computed == {"vid": 2} and c.computed == {"vid": 2}
    assert dataset_fingerprint({"a": 1, "b": 2}) == dataset_fingerprint({"b": 2, "a": 1})
    meta = json.loads((a.caches["vid"].dir / "meta.json").read_text())
    assert meta["key_parts"]["teacher"] == fp["vid"] and meta["key_parts"]["view"] == "video"


def test_non_deterministic_dataset_is_refused(models, tmp_path):
    _, teachers = models
    with pytest.raises(NonDeterministicDatasetError, match="deterministic = True"):
        CachedTargets(teachers, RandomClips(), tmp_path, DATA_CONFIG, progress=False)
    plain = torch.utils.data.TensorDataset(torch.zeros(2, 3, 16, 32, 32))  # no attribute at all
    cache = TargetCache(tmp_path, "x", 2, 512, 64)
    with pytest.raises(NonDeterministicDatasetError):
        fill(cache, teachers["vid"], plain, progress=False)
    assert cache.missing().tolist() == [0, 1]
    assert not any(tmp_path.glob("img-*")), "nothing should be created for a refused dataset"


def test_reopen_with_another_shape_is_an_error(tmp_path):
    TargetCache(tmp_path, "k", 4, 8, 16)
    with pytest.raises(ValueError, match=r"\(4, 8, 16\).*\(4, 8, 32\)"):
        TargetCache(tmp_path, "k", 4, 8, 32)
    assert TargetCache.open(tmp_path, "k").shape == (4, 8, 16)


def test_file_is_float16_and_memory_mapped(tmp_path):
    cache = TargetCache(tmp_path, "k", 5, 8, 16, key_parts={"note": "unit"})
    assert isinstance(cache.array, np.memmap) and cache.array.dtype == np.float16
    on_disk = np.load(tmp_path / "k" / "targets.f16.npy", mmap_mode="r")
    assert on_disk.dtype == np.float16 and on_disk.shape == (5, 8, 16)
    assert (tmp_path / "k" / "targets.f16.npy").stat().st_size >= 5 * 8 * 16 * 2
    meta = json.loads((tmp_path / "k" / "meta.json").read_text())
    assert meta["shape"] == [5, 8, 16] and meta["dtype"] == "float16" and meta["key_parts"] == {"note": "unit"}

    x = torch.randn(2, 8, 16, generator=generator(0))
    cache.put([3, 1], x)
    assert cache.missing().tolist() == [0, 2, 4] and not cache.complete
    got = cache.get(torch.tensor([1, 3, 1]))
    assert got.dtype == torch.float32 and got.shape == (3, 8, 16)
    torch.testing.assert_close(got, x[[1, 0, 1]].half().float(), rtol=0, atol=0)
    with pytest.raises(CacheMissError, match=r"0, 2"):
        cache.get([2, 1, 0])
    with pytest.raises(ValueError, match="expected"):
        cache.put([0], torch.zeros(1, 8, 15))
    with pytest.raises(ValueError, match="float16"):
        cache.put([0], torch.full((1, 8, 16), 1e5))
    with pytest.raises(IndexError, match="5"):
        cache.get([5])
    assert cache.missing().tolist() == [0, 2, 4]  # failed puts wrote no flags


def test_verify_catches_a_stale_cache(models, tmp_path):
    _, teachers = models
    ds = ClipDataset(n=3)
    cached = CachedTargets({"vid": teachers["vid"]}, ds, tmp_path, {**DATA_CONFIG, "items": 3},
                           progress=False, verify=True)
    cached([2, 0])  # passes
    arr = cached.caches["vid"].array
    arr[2] = arr[2] + np.float16(0.5)  # the clip changed under the same key
    arr.flush()
    with pytest.raises(StaleCacheError, match="item 2"):
        cached([2, 0])
    cached.verify = False
    cached([2, 0])  # off by default: no check, no error
