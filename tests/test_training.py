"""Training engine and run types: smoke runs of every verb, exact resume after a kill, atomic checkpoints,
bad overrides, non-finite losses, frozen teachers, shipped artifacts, and 2-process DDP = 1 process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mvd_lib import recipes
from mvd_lib.checkpoint import read_checkpoint
from mvd_lib.engine import NonFiniteLossError, OptimConfig, Trainer
from mvd_lib.workflow import EXECUTORS, run_preset, train_or_load

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cli(*args: str, runs: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvd_lib", *args, "--runs", str(runs), "--no-progress"],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    """One tree of finished smoke runs (both teachers, student, finetune, evaluate, probe) shared by the tests."""
    root = tmp_path_factory.mktemp("runs")
    run_preset("evaluate", "smoke", root=root, progress=False)
    run_preset("probe", "smoke", root=root, progress=False)
    return root


def only(root: Path, verb: str) -> Path:
    (folder,) = [p for p in (root / verb).iterdir() if p.name.startswith("smoke-")]
    return folder


def test_smoke_run_of_every_verb(smoke_runs):
    for verb in recipes.VERBS:
        folder = only(smoke_runs, verb)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "finished", verb
        assert (folder / "config.json").exists() and (folder / "command.txt").exists()
        assert (folder / "command.txt").read_text().startswith(f"python -m mvd_lib {verb} --preset smoke")
        if verb in ("pretrain-image", "pretrain-video", "distill", "finetune"):
            assert (folder / "model.pth").exists() and not (folder / "checkpoint-last.pth").exists()
            assert len(metrics["loss_curve"]) == metrics["steps"] > 0
            assert all(map(lambda x: x == x, metrics["loss_curve"]))  # finite, not NaN
            assert metrics["train_flops"] > 0 and metrics["wall_time_s"] > 0
    distill = json.loads((only(smoke_runs, "distill") / "metrics.json").read_text())
    assert set(distill["parts_curve"]) == {"img", "vid"} and distill["targets_cached"] is True
    probe = json.loads((only(smoke_runs, "probe") / "metrics.json").read_text())["probe"]
    assert set(probe) == {"appearance", "motion"} and set(probe["motion"]) == {"mean", "time"}
    assert "test" in json.loads((only(smoke_runs, "evaluate") / "metrics.json").read_text())


def test_finished_runs_are_loaded_not_repeated(smoke_runs, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a finished run was executed again")

    for verb in EXECUTORS:
        monkeypatch.setitem(EXECUTORS, verb, boom)
    run = run_preset("evaluate", "smoke", root=smoke_runs, progress=False)
    assert run.finished


def test_dependency_change_changes_the_hash(tmp_path, monkeypatch):
    """A student of a different teacher is a different run (the teacher's hash enters the student's)."""
    for verb in EXECUTORS:
        monkeypatch.setitem(EXECUTORS, verb, lambda *a, **k: {"status": "finished"})
    a = run_preset("distill", "smoke", root=tmp_path, progress=False)
    again = run_preset("distill", "smoke", root=tmp_path, progress=False)
    changed_teacher = recipes.apply_overrides(recipes.preset("pretrain-image", "smoke"), ["optim.lr=0.002"])
    monkeypatch.setitem(recipes.PRESETS_BY_VERB["pretrain-image"], "smoke", changed_teacher)
    b = run_preset("distill", "smoke", root=tmp_path, progress=False)
    assert a.config == b.config  # the student's own config is unchanged ...
    assert a.hash == again.hash and a.hash != b.hash  # ... but its teacher changed, so it is another run


def test_shipped_artifact_is_adopted(tmp_path, monkeypatch):
    cfg = recipes.preset("pretrain-image", "smoke")
    from mvd_lib.runs import config_hash

    h = config_hash(cfg, {})
    art = tmp_path / "artifacts" / "pretrain-image" / f"smoke-{h}"
    art.mkdir(parents=True)
    (art / "metrics.json").write_text(json.dumps({"status": "finished", "final_loss": 1.0}))
    monkeypatch.setitem(EXECUTORS, "pretrain-image", lambda *a, **k: pytest.fail("should not train"))
    run = train_or_load("pretrain-image", cfg, root=tmp_path / "runs", artifacts=tmp_path / "artifacts", progress=False)
    assert run.finished and run.dir == tmp_path / "runs" / "pretrain-image" / f"smoke-{h}"
    assert run.metrics["final_loss"] == 1.0


@pytest.mark.parametrize("args,message", [
    (["--set", "optim.lrr=1"], "unknown setting 'optim.lrr'"),
    (["--set", "optim.lr=fast"], "expected a number"),
    (["--set", "optim.epochs=2.5"], "expected an integer"),
    (["--set", "mask_type=cube"], "must be one of"),
    (["--set", "data.synthetic.frames=4"], "clips are 4x16x16 but the model takes 8x16x16"),
    (["--set", "image_teacher=pretrain-image:nope"], "unknown pretrain-image preset 'nope'"),
    (["--set", "lambda_img"], "key=value"),
])
def test_bad_overrides_fail_before_compute(tmp_path, args, message):
    t0 = time.perf_counter()
    out = cli("distill", "--preset", "smoke", *args, runs=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert not (tmp_path / "distill").exists() and not (tmp_path / "pretrain-image").exists()
    assert time.perf_counter() - t0 < 60


def _copy_teachers(src: Path, dst: Path) -> None:
    for verb in ("pretrain-image", "pretrain-video"):
        shutil.copytree(only(src, verb), dst / verb / only(src, verb).name)


def test_resume_after_kill_gives_the_same_curve(smoke_runs, tmp_path):
    """Kill a distillation subprocess mid-run (SIGKILL), resume it, and compare with an uninterrupted run."""
    sets = ["--set", "optim.epochs=8", "--set", "checkpoint_every=1"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    for root in (full, killed):
        _copy_teachers(smoke_runs, root)
    out = cli("distill", "--preset", "smoke", *sets, runs=full)
    assert out.returncode == 0, out.stderr
    reference = json.loads(next((full / "distill").glob("smoke-*/metrics.json")).read_text())

    proc = subprocess.Popen([sys.executable, "-m", "mvd_lib", "distill", "--preset", "smoke", *sets, "--runs",
                             str(killed), "--no-progress"], env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    step, deadline = 0, time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = list((killed / "distill").glob("smoke-*/checkpoint-last.pth")) if (killed / "distill").exists() else []
        if ckpts:
            try:
                step = read_checkpoint(ckpts[0])["train_state"]["step"]
            except Exception:
                step = 0
            if 5 <= step:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    total = reference["steps"]
    assert 5 <= step < total
    assert not list((killed / "distill").glob("smoke-*/metrics.json"))
    out = cli("distill", "--preset", "smoke", *sets, runs=killed)
    assert out.returncode == 0, out.stderr
    resumed = json.loads(next((killed / "distill").glob("smoke-*/metrics.json")).read_text())
    assert resumed["loss_curve"] == reference["loss_curve"]
    assert resumed["parts_curve"] == reference["parts_curve"]
    assert resumed["lr_curve"] == reference["lr_curve"]
    a = read_checkpoint(next((full / "distill").glob("smoke-*/model.pth")))["model"]
    b = read_checkpoint(next((killed / "distill").glob("smoke-*/model.pth")))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_survives_a_kill_during_save(tmp_path):
    path = tmp_path / "checkpoint-last.pth"
    code = textwrap.dedent(f"""
        import os, signal, torch
        import mvd_lib
        from mvd_lib.checkpoint import atomic_save
        atomic_save({{"step": 1, "w": torch.arange(10.)}}, {str(path)!r})
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"PK\\x03\\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        atomic_save({{"step": 2, "w": torch.zeros(10)}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.arange(10.0))


class _ToyTask:
    """y = w x regression whose loss turns NaN at a chosen step."""

    def __init__(self, nan_at: int):
        self.model = torch.nn.Linear(4, 1)
        self.nan_at, self.calls = nan_at, 0

    def param_groups(self, optim):
        return [{"params": list(self.model.parameters()), "weight_decay": 0.0, "lr_scale": 1.0}]

    def loss(self, net, batch, epoch):
        self.calls += 1
        loss = (net(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        if self.calls > self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}


class _ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return {"x": x, "y": x.sum(), "index": i}


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    task = _ToyTask(nan_at=5)
    optim = OptimConfig(epochs=4, warmup_epochs=0, batch_size=8, lr=0.01, scale_lr=False)
    trainer = Trainer(task, _ToyData(), optim, tmp_path, checkpoint_every=2, progress=False)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5"):
        trainer.fit()
    state = read_checkpoint(tmp_path / "checkpoint-last.pth")["train_state"]
    assert state["step"] == 4 and all(v == v for v in state["loss_curve"])


def test_teachers_are_frozen_and_outside_the_optimizer(smoke_runs):
    from mvd_lib.tasks import DistillTask
    from mvd_lib.workflow import Dependency, load_teacher
    from mvd_lib.runs import Run

    cfg = recipes.preset("distill", "smoke")
    dep = Dependency("run", run=Run("pretrain-video", "smoke", "", only(smoke_runs, "pretrain-video"),
                                    recipes.preset("pretrain-video", "smoke")))
    teacher = load_teacher("vid", dep, cfg)
    from mvd_lib.tasks import build_model

    student = build_model("distill", cfg, {"vid": teacher.out_dim})
    task = DistillTask(student, {"vid": teacher}, cfg)
    in_opt = {id(p) for g in task.param_groups(cfg.optim) for p in g["params"]}
    assert not any(id(p) in in_opt for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.AdamW(task.param_groups(cfg.optim), lr=1e-2)
    batch = {"video": torch.randn(2, 3, 8, 16, 16), "index": torch.arange(2)}
    teacher.train()
    loss, _ = task.loss(student, batch, 0)
    loss.backward()
    opt.step()
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("sets,parts", [
    (["pixel=true"], {"img", "vid", "pix"}),
    (["mode=token", "image_teacher=none"], {"vid"}),
    (["ema=true", "image_teacher=none", "video_teacher=none", "probe_every=1"], {"ema"}),
])
def test_distill_variants_run(smoke_runs, tmp_path, sets, parts):
    _copy_teachers(smoke_runs, tmp_path)
    run = run_preset("distill", "smoke", sets, root=tmp_path, progress=False)
    assert run.finished and set(run.metrics["parts_curve"]) == parts
    if "probe_every=1" in sets:
        probes = [m for m in run.metrics["epoch_metrics"] if "probe_motion" in m]
        assert len(probes) == 2 and all(0 <= m["probe_appearance"] <= 100 for m in probes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_one_process(smoke_runs, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 8 = 2 x 4: the same loss curve as 1 process, batch 8."""
    sets = ["--set", "optim.epochs=2"]
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        _copy_teachers(smoke_runs, root)
    out = cli("distill", "--preset", "smoke", *sets, runs=one)
    assert out.returncode == 0, out.stderr
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "mvd_lib", "distill", "--preset", "smoke", *sets, "--runs", str(two), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    a = json.loads(next((one / "distill").glob("smoke-*/metrics.json")).read_text())
    b = json.loads(next((two / "distill").glob("smoke-*/metrics.json")).read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert len(a["loss_curve"]) == len(b["loss_curve"]) == a["steps"]
    assert torch.allclose(torch.tensor(a["loss_curve"]), torch.tensor(b["loss_curve"]), rtol=1e-4, atol=1e-5)
    wa = read_checkpoint(next((one / "distill").glob("smoke-*/model.pth")))["model"]
    wb = read_checkpoint(next((two / "distill").glob("smoke-*/model.pth")))["model"]
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-3, atol=1e-5) for k in wa)


def test_stop_after_steps_splits_a_chain_over_calls(tmp_path):
    """A step budget stops the first unfinished run resumably; its dependants wait; repeated calls finish all."""
    kw = dict(root=tmp_path, progress=False, stop_after_steps=3)
    first = run_preset("distill", "smoke", **kw)
    assert first.metrics["status"] == "waiting"  # each unfinished run in the chain spent its own budget
    assert first.metrics["waiting_for"] == ["pretrain-image smoke", "pretrain-video smoke"]
    partial = json.loads(only(tmp_path, "pretrain-image").joinpath("metrics.json").read_text())
    assert partial["status"] == "partial" and partial["steps"] == 3
    for _ in range(10):
        run = run_preset("distill", "smoke", **kw)
        if run.finished:
            break
    assert run.finished and run.metrics["steps"] == 8


def test_force_reruns_only_the_named_run(smoke_runs, tmp_path, monkeypatch):
    _copy_teachers(smoke_runs, tmp_path)
    calls = []
    real = EXECUTORS["distill"]
    monkeypatch.setitem(EXECUTORS, "distill", lambda *a, **k: calls.append("distill") or real(*a, **k))
    for verb in ("pretrain-image", "pretrain-video"):
        monkeypatch.setitem(EXECUTORS, verb, lambda *a, **k: pytest.fail("a finished teacher was retrained"))
    run_preset("distill", "smoke", root=tmp_path, progress=False)
    run_preset("distill", "smoke", root=tmp_path, progress=False, force=True)
    assert calls == ["distill", "distill"]


def test_teacher_pretraining_records_in_training_probes(tmp_path):
    """Pixel losses barely move at small scale, so runs can record a cheap probe accuracy as they train."""
    image = run_preset("pretrain-image", "smoke", ["probe_every=1"], root=tmp_path, progress=False)
    video = run_preset("pretrain-video", "smoke", ["probe_every=2"], root=tmp_path, progress=False)
    assert [sorted(m) for m in image.metrics["epoch_metrics"]] == [["epoch", "probe_appearance", "step"]] * 2
    assert "probe_motion" not in str(image.metrics["epoch_metrics"])  # one frame cannot tell motion
    assert [("probe_motion" in m) for m in video.metrics["epoch_metrics"]] == [False, True]


def test_finetune_with_the_reference_augmentation_recipe(tmp_path):
    """Repeated augmentation x2, RandAugment, cube erasing, mixup/cutmix: the paper recipe runs end to end."""
    import dataclasses

    from mvd_lib.augment import REFERENCE

    cfg = dataclasses.replace(recipes.preset("finetune", "smoke"), augment=REFERENCE, init="random")
    run = train_or_load("finetune", cfg, root=tmp_path, progress=False)
    assert run.finished and run.metrics["samples"] == 8 * run.metrics["steps"]  # clips, before repetition
    assert set(run.metrics["parts_curve"]) == {"ce", "train_top1"} and run.metrics["init"] == "random"
    assert 0 <= run.metrics["test"]["top1"] <= 100


def test_real_video_lists_through_finetune_probe_and_evaluate(tmp_path):
    """data_samples/ mp4 files through decord: train, multi-view test, probe, evaluate; a missing video is
    skipped, counted and named in the run's records instead of stopping the run."""
    lists = tmp_path / "lists"
    shutil.copytree(REPO / "data_samples", lists)
    lines = (lists / "train.csv").read_text().splitlines()
    # each video listed 4 times (enough rows for the probe's held-out split), plus one missing file
    (lists / "train.csv").write_text("\n".join(lines * 4 + ["videos/does_not_exist.mp4 3"]) + "\n")
    data = ["data.source=list", f"data.list_dir={lists}", "data.dataset=ucf101", "data.task=label",
            "data.test_clips=2", "data.test_crops=3"]
    ft = run_preset("finetune", "smoke", ["init=random", "num_classes=10", *data], root=tmp_path, progress=False)
    assert ft.finished and ft.metrics["steps_per_epoch"] == 41 // 8 and ft.metrics["test"]["num_videos"] == 5 and ft.metrics["test"]["num_views"] == 30
    bad = json.loads((ft.dir / "bad_inputs.json").read_text())["train"]
    assert [(f["path"], f["reason"]) for f in bad["files"]] == [(str(lists / "videos" / "does_not_exist.mp4"), "missing")]
    ev = run_preset("evaluate", "smoke", [f"checkpoint=file:{ft.model_path}", "num_classes=10", *data],
                    root=tmp_path, progress=False)
    assert ev.metrics["test"]["top1"] == ft.metrics["test"]["top1"]  # the same weights, the same views
    pr = run_preset("probe", "smoke", ["encoder=random", *data], root=tmp_path, progress=False)
    assert set(pr.metrics["probe"]) == {"label"} and pr.metrics["probe"]["label"]["time"]["num_test"] == 30


def test_training_leaves_the_callers_random_stream_alone(tmp_path):
    task = _ToyTask(nan_at=10**6)  # built first: its initial weights draw from the global generator
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer(task, _ToyData(), OptimConfig(epochs=1, warmup_epochs=0, batch_size=8, lr=0.01), tmp_path,
            progress=False).fit()
    assert torch.equal(torch.rand(3), expected)
