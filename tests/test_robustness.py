"""What a run survives and how it says so: divergence never poisons the last checkpoint, damaged resumable state
names its remedy, a full disk says "No space left on device", records follow the umask, a run folder has one
writer, inputs have an identity, DataLoader workers' bad-input findings reach the main process, and the
resumable state outlives the end of training until the run is finished."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import ToyData

import mvd_lib  # noqa: F401
from mvd_lib import atomic
from mvd_lib.atomic import AtomicWriteError, FolderLockedError, atomic_write, folder_lock, write_json
from mvd_lib.checkpoint import CheckpointError, atomic_save, read_checkpoint
from mvd_lib.engine import NonFiniteLossError, OptimConfig, Trainer
from mvd_lib.identity import changed_inputs, file_identity, input_identity

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
OPTIM = OptimConfig(epochs=3, warmup_epochs=0, batch_size=8, lr=0.01, scale_lr=False)


class ToyObjective:
    """y = w x regression. From optimizer step `poison_at` on, the loss stays finite but its gradient is NaN
    (torch.where's unused sqrt branch), so the weights turn NaN in the optimizer step."""

    def __init__(self, poison_at: int | None = None):
        self.model = torch.nn.Linear(4, 1)
        self.poison_at, self.steps, self.calls = poison_at, 0, 0

    def param_groups(self, optim):
        return [{"params": list(self.model.parameters()), "weight_decay": 0.0, "lr_scale": 1.0}]

    def loss(self, net, batch, epoch):
        self.calls += 1
        pred = net(batch["x"]).squeeze(-1)
        loss = (pred - batch["y"]).pow(2).mean()
        if self.poison_at is not None and self.steps >= self.poison_at:
            w = net.weight.sum()
            loss = loss + torch.where(w > -1e30, torch.zeros_like(w), torch.sqrt(-w - 1e30))  # finite, NaN grad
        return loss, {"mse": loss.detach()}

    def after_step(self, step):
        self.steps = step + 1

    def extra_state(self):  # saved in checkpoints, so a resumed run knows its step here too
        return {"steps": self.steps}

    def load_extra_state(self, state):
        self.steps = state["steps"]


def one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("kwargs, setting", [
    ({"checkpoint_every": -1}, "checkpoint_every"),
    ({"stop_after_steps": 0}, "stop_after_steps"),
    ({"stop_after_steps": -3}, "stop_after_steps"),
    ({"num_workers": -1}, "num_workers"),
])
def test_trainer_rejects_bad_settings(tmp_path, kwargs, setting):
    with pytest.raises(ValueError, match=setting) as err:
        Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, progress=False, **kwargs)
    assert str(kwargs[setting]) in one_line(err.value)


# ---------------------------------------------------------------------------------------------- divergence
def test_weights_gone_non_finite_are_never_checkpointed(tmp_path):
    """The loss stays finite while the optimizer step makes the weights NaN: the checkpoint due at that step is
    not written, the previous one (finite) is named, and the error carries the facts as fields."""
    trainer = Trainer(ToyObjective(poison_at=5), ToyData(), OPTIM, tmp_path, checkpoint_every=1, progress=False)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    err = info.value
    path = tmp_path / "checkpoint-last.pth"
    assert err.what == "weights" and err.step == 6 and err.epoch == 1
    assert err.checkpoint == path and err.checkpoint_step == 5
    assert err.tensors == ["weight", "optimizer[weight].exp_avg", "optimizer[weight].exp_avg_sq"]
    msg = one_line(err)
    assert f"the last finite checkpoint is {path} (step 5)" in msg and "optim.lr" in msg
    ckpt = read_checkpoint(path)
    assert ckpt["train_state"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    record = err.to_dict()
    assert record["status"] == "diverged" and record["checkpoint"] == str(path) and record["checkpoint_step"] == 5
    # rerunning resumes from the finite checkpoint (and, the run being deterministic, diverges at the same step)
    again = Trainer(ToyObjective(poison_at=5), ToyData(), OPTIM, tmp_path, checkpoint_every=1, progress=False)
    with pytest.raises(NonFiniteLossError) as info2:
        again.fit()
    assert info2.value.step == 6 and info2.value.checkpoint_step == 5


def test_divergence_before_any_checkpoint_says_there_is_none(tmp_path):
    trainer = Trainer(ToyObjective(poison_at=0), ToyData(), OPTIM, tmp_path, progress=False)  # NaN weights at step 1
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    err = info.value
    assert err.what == "loss" and err.step == 1 and err.checkpoint is None and err.checkpoint_step is None
    assert np.isnan(err.parts["mse"]) and "no checkpoint of this run was written" in one_line(err)
    assert not (tmp_path / "checkpoint-last.pth").exists()
    assert err.to_dict()["parts"] == {"mse": "nan"}  # JSON-ready


def test_non_finite_resumable_state_is_refused_with_the_remedy(tmp_path):
    trainer = Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, stop_after_steps=2, progress=False)
    trainer.fit()
    path = tmp_path / "checkpoint-last.pth"
    ckpt = read_checkpoint(path)
    ckpt["model"]["weight"][0, 1] = float("nan")  # as an older version could leave it
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, progress=False).fit()
    msg = one_line(info.value)
    assert str(path) in msg and "non-finite" in msg and "weight" in msg
    assert f"delete {path} to restart this run from step 0, or rerun with --force" in msg


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "not resumable"])
def test_damaged_resumable_state_names_file_and_remedy(tmp_path, damage):
    Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, stop_after_steps=2, progress=False).fit()
    path = tmp_path / "checkpoint-last.pth"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("checkpoint\n")
    else:
        torch.save({"model": read_checkpoint(path)["model"]}, path)
    with pytest.raises(CheckpointError) as info:
        Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, progress=False).fit()
    msg = one_line(info.value)
    assert msg.startswith("cannot resume") and str(path) in msg and "--force" in msg and "delete" in msg


# ---------------------------------------------------------------------------------------------- full disk
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _torch_no_space(obj, f, *args, **kwargs):
    """What torch.save does when the disk fills: its writer fails with a RuntimeError over the OSError."""
    f.write(b"PK\x03\x04 partial")
    try:
        _no_space()
    except OSError as e:
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed") from e


@pytest.mark.parametrize("how", ["torch.save", "fsync"])
def test_full_disk_keeps_the_checkpoint_and_says_so_last(tmp_path, monkeypatch, how):
    trainer = Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, checkpoint_every=1, stop_after_steps=3, progress=False)
    trainer.fit()
    path = tmp_path / "checkpoint-last.pth"
    before = path.read_bytes()
    if how == "torch.save":
        monkeypatch.setattr(torch, "save", _torch_no_space)
    else:
        monkeypatch.setattr(atomic.os, "fsync", _no_space)
    resumed = Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, checkpoint_every=1, progress=False)
    with pytest.raises(AtomicWriteError) as info:
        resumed.fit()
    monkeypatch.undo()
    err = info.value
    msg = one_line(err)
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "No space left on device" in msg and str(path) in msg and "the previous checkpoint-last.pth is kept" in msg
    assert path.read_bytes() == before and read_checkpoint(path)["train_state"]["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-last.pth"]  # no temporary file left


def test_full_disk_on_a_new_file_says_it_was_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "fsync", _no_space)
    with pytest.raises(AtomicWriteError, match="No space left on device") as info:
        write_json(tmp_path / "metrics.json", {"top1": 1.0})
    assert "metrics.json was not written" in one_line(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        files = [write_json(tmp_path / "metrics.json", {"a": 1}),
                 atomic_save({"w": torch.zeros(2)}, tmp_path / "model.pth"),
                 atomic_write(tmp_path / "raw.bin", lambda f: f.write(b"x"))]
        plain = tmp_path / "command.txt"
        plain.write_text("python -m mvd_lib\n")  # what an ordinary open() gives, for comparison
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: mode for p in files}
    assert plain.stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------------------------------------- folder lock
HOLDER = textwrap.dedent("""
    import sys, time
    from mvd_lib.atomic import folder_lock
    with folder_lock(sys.argv[1], wait=False):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
""")


def _start_holder(folder: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_folder_lock_reports_waits_for_and_outlives_its_holder(tmp_path):
    run = tmp_path / "run"
    holder = _start_holder(run, 60)
    try:
        with pytest.raises(FolderLockedError) as info:
            with folder_lock(run, wait=False):
                pass
        msg = one_line(info.value)
        assert str(run) in msg and f"process {holder.pid}" in msg and "python" in msg
        t0 = time.monotonic()
        with pytest.raises(FolderLockedError, match="after waiting 0.3 s"):
            with folder_lock(run, wait=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3
        holder.send_signal(signal.SIGKILL)  # a killed holder releases the lock
        holder.wait(timeout=30)
        told: list[str] = []
        with folder_lock(run, wait=10, on_wait=told.append) as folder:
            assert folder == run and atomic.holds_lock(run)
            with folder_lock(run, wait=False):  # re-entrant within the process
                pass
            assert atomic.lock_holder(run)["pid"] == os.getpid()
        assert not atomic.holds_lock(run)
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_folder_lock_waits_for_a_holder_that_finishes(tmp_path):
    run = tmp_path / "run"
    holder = _start_holder(run, 1.0)
    told: list[str] = []
    try:
        with folder_lock(run, wait=True, on_wait=told.append):
            assert holder.stdout.readline().strip() == "released"  # we got it only after the holder let go
        assert len(told) == 1 and f"process {holder.pid}" in told[0]
    finally:
        holder.kill()
        holder.wait(timeout=30)


# ---------------------------------------------------------------------------------------------- input identity
def test_input_identity_and_what_changed(tmp_path):
    lst, ckpt = tmp_path / "train.csv", tmp_path / "init.pth"
    lst.write_text("a.mp4 0\nb.mp4 1\n")
    ckpt.write_bytes(b"\x00" * 5000)
    before = input_identity({"train_list": lst, "init": ckpt})
    assert before["train_list"] == {"path": str(lst.resolve()), "size": 16, "mtime": lst.stat().st_mtime,
                                    "sha256": hashlib.sha256(b"a.mp4 0\nb.mp4 1\n").hexdigest()}
    assert before["init"]["sha256"] == hashlib.sha256(b"\x00" * 5000).hexdigest()
    os.utime(lst, (time.time() + 100, time.time() + 100))  # touched: the same input
    assert changed_inputs(before, input_identity({"train_list": lst, "init": ckpt})) == []
    lst.write_text("a.mp4 0\nb.mp4 2\n")  # same size, other content
    ckpt.unlink()
    now = input_identity({"train_list": lst, "init": ckpt})
    assert now["init"] == {"path": str(ckpt.resolve()), "missing": True}
    changes = changed_inputs(before, now)
    assert len(changes) == 2
    assert changes[0] == f"init: {ckpt.resolve()} is missing now"
    assert changes[1].startswith(f"train_list: {lst.resolve()} changed content (sha256 ") and "16 -> 16 bytes" in changes[1]
    assert changed_inputs(before, {"train_list": now["train_list"]})[0] == f"init: no longer an input (was {ckpt.resolve()})"
    assert file_identity(lst) == input_identity([lst])[str(lst)]


# ---------------------------------------------------------------------------------------------- end of training
def test_resumable_state_is_kept_until_finish(tmp_path):
    trainer = Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path, progress=False)
    state = trainer.fit()
    assert trainer.finished and (tmp_path / "checkpoint-last.pth").exists()
    # a rerun (say, after a kill during the final evaluation) resumes at the end: no training step again
    task = ToyObjective()
    again = Trainer(task, ToyData(), OPTIM, tmp_path, progress=False)
    assert again.fit().loss_curve == state.loss_curve and task.calls == 0 and again.finished
    assert all(torch.equal(a, b) for a, b in zip(task.model.state_dict().values(),
                                                 trainer.objective.model.state_dict().values()))
    again.finish()
    assert not (tmp_path / "checkpoint-last.pth").exists()
    partial = Trainer(ToyObjective(), ToyData(), OPTIM, tmp_path / "p", stop_after_steps=1, progress=False)
    partial.fit()
    with pytest.raises(RuntimeError, match="before the end of training"):
        partial.finish()
    assert (tmp_path / "p" / "checkpoint-last.pth").exists()


# ---------------------------------------------------------------------------------------------- workers in the engine
class MeanTask:
    """Regress the clip mean from a linear layer on 3 channel means: enough to drive the engine over videos."""

    def __init__(self):
        self.model = torch.nn.Linear(3, 1)

    def param_groups(self, optim):
        return [{"params": list(self.model.parameters()), "weight_decay": 0.0, "lr_scale": 1.0}]

    def loss(self, net, batch, epoch):
        x = batch["video"].mean(dim=(2, 3, 4))  # [B, C]
        loss = (net(x).squeeze(-1) - x.mean(1)).pow(2).mean()
        return loss, {}


def test_engine_workers_report_bad_videos(tmp_path):
    """pretrain-style training with num_workers=2 over a list with bad videos: the dataset's summary, read in
    the main process after training, names every bad file."""
    from mvd_lib.samples import SAMPLES_DIR
    from mvd_lib.video_data import VideoPretrainDataset

    (tmp_path / "v").mkdir()
    good = sorted((SAMPLES_DIR / "videos").glob("train_*.mp4"))[:6]
    lines = []
    for i, src in enumerate(good):
        shutil.copy(src, tmp_path / "v" / src.name)
        (tmp_path / "v" / f"text{i}.mp4").write_text("not a video\n" * 200)
        lines += [f"v/{src.name} 0", f"v/text{i}.mp4 0"]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    data = VideoPretrainDataset(tmp_path / "train.csv", clip_len=4, stride=2, input_size=16)
    optim = OptimConfig(epochs=2, warmup_epochs=0, batch_size=4, lr=0.01, scale_lr=False)
    Trainer(MeanTask(), data, optim, tmp_path / "run", num_workers=2, progress=False).fit()
    summary = data.bad_inputs
    assert sorted(summary.files) == [str(tmp_path / "v" / f"text{i}.mp4") for i in range(6)]
    assert summary.counts() == {"undecodable": 6}
    assert summary.replaced == 2 * 6  # 12 items a epoch, the 6 bad ones served by their successor, 2 epochs
