"""Training engine and run types: smoke runs of every verb, exact resume after a kill, atomic checkpoints,
non-finite losses, frozen teachers, shipped artifacts, step budgets, forced reruns, and 2-process DDP = 1 process."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
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
from toys import ToyData

from mvd_lib import runner
from mvd_lib.checkpoint import CheckpointError, read_checkpoint
from mvd_lib.config import VERBS, OptimConfig, config_hash
from mvd_lib.engine import NonFiniteLossError, Trainer
from mvd_lib.profiles import preset
from mvd_lib.runtypes import RUN_TYPES

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cli(*args: str, runs: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvd_lib", *args, "--runs", str(runs), "--no-progress"],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    """One tree of finished smoke runs (both teachers, student, finetune, evaluate, probe, extract)."""
    root = tmp_path_factory.mktemp("runs")
    for verb in ("evaluate", "probe", "extract"):
        runner.run(verb, "smoke", root=root, progress=False)
    return root


def only(root: Path, verb: str) -> Path:
    (folder,) = [p for p in (root / verb).iterdir() if p.name.startswith("smoke")]
    return folder


def test_smoke_run_of_every_verb(smoke_runs):
    for verb in VERBS:
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
    probe = json.loads((only(smoke_runs, "probe") / "metrics.json").read_text())["probe"]["linear"]
    assert set(probe) == {"appearance", "motion"} and set(probe["motion"]) == {"mean", "time"}
    assert "test" in json.loads((only(smoke_runs, "evaluate") / "metrics.json").read_text())
    extract = only(smoke_runs, "extract")
    x = __import__("numpy").load(extract / "test" / "mean" / "x.npy")
    assert x.shape == (16, 64)  # 16 test clips x the vit_nano width (mean pooling)


def test_finished_runs_are_loaded_not_repeated(smoke_runs, monkeypatch):
    for run_type in RUN_TYPES.values():
        monkeypatch.setattr(run_type, "execute", lambda *a, **k: pytest.fail("a finished run was executed again"))
    run = runner.run("evaluate", "smoke", root=smoke_runs, progress=False)
    assert run.finished


def test_the_recorded_command_of_an_api_run_finds_the_same_run(smoke_runs, tmp_path, capsys, monkeypatch):
    """A run made through the API with settings, a Run object and nested overrides records the command line that
    names it: the command, run as given, loads that run (nothing trained) instead of making another."""
    from mvd_lib.cli import main

    root = tmp_path / "runs"
    shutil.copytree(smoke_runs, root)  # the shared smoke runs keep one probe
    student = runner.run("distill", "smoke", root=root, progress=False)
    p = runner.profile("smoke", seed=3)
    probe = runner.run("probe", p, encoder=student, overrides={"c_grid": (0.1, 1.0)}, root=root, progress=False)
    command = (probe.folder / "command.txt").read_text().strip()
    assert command == (f"python -m mvd_lib probe --preset smoke --profile-set seed=3 --set encoder={student.ref} "
                       "--set c_grid=0.1,1.0")
    for run_type in RUN_TYPES.values():
        monkeypatch.setattr(run_type, "execute", lambda *a, **k: pytest.fail("the recorded command trained a run"))
    assert main([*shlex.split(command)[3:], "--runs", str(root), "--no-progress"]) == 0
    assert f"-> {probe.folder}" in capsys.readouterr().out


def test_a_command_that_cannot_rebuild_its_config_says_where_the_settings_are():
    from mvd_lib.profiles import reproducing_command

    cfg = preset("distill", "smoke", {"seed": 4})
    assert reproducing_command("distill", cfg, runner.profile("smoke")) == \
        "python -m mvd_lib distill --preset smoke --set seed=4"
    custom = dataclasses.replace(cfg, name="my_student")
    assert reproducing_command("distill", custom).endswith("# no such preset: config.json holds the settings")


def test_a_teacher_named_two_ways_is_one_run_and_a_changed_teacher_another(smoke_runs, tmp_path, monkeypatch):
    _copy_teachers(smoke_runs, tmp_path)
    teacher = runner.run("pretrain-image", "smoke", root=tmp_path, progress=False)
    by_default = runner.run("distill", "smoke", root=tmp_path, progress=False)
    by_object = runner.run("distill", "smoke", image_teacher=teacher, root=tmp_path, progress=False)
    assert by_object.hash == by_default.hash and by_object.folder == by_default.folder
    for name in ("pretrain-image", "pretrain-video", "distill"):
        monkeypatch.setattr(RUN_TYPES[name], "execute", lambda *a, **k: {"status": "finished"})
    other = runner.run("distill", "smoke", image_teacher="pretrain-image;optim.lr=0.002", root=tmp_path,
                       progress=False)
    assert other.config.student == by_default.config.student and other.hash != by_default.hash


def test_profile_overrides_reach_every_dependency(tmp_path, monkeypatch):
    for run_type in RUN_TYPES.values():
        monkeypatch.setattr(run_type, "execute", lambda *a, **k: {"status": "finished"})
    p = runner.profile("smoke", ["data.num_clips=24"], seed=3)
    student = runner.run("distill", p, root=tmp_path, progress=False)
    assert student.config.seed == 3 and student.config.data.num_clips == 24
    for verb in ("pretrain-image", "pretrain-video"):
        (folder,) = (tmp_path / verb).iterdir()
        record = json.loads((folder / "config.json").read_text())
        assert record["config"]["seed"] == 3 and record["config"]["data"]["num_clips"] == 24
        assert record["profile_overrides"] == ["data.num_clips=24", "seed=3"]
    # the same profile overrides from the command line name the same runs
    assert runner.run("distill", runner.profile("smoke", ["data.num_clips=24", "seed=3"]), root=tmp_path,
                      progress=False).hash == student.hash


def test_overrides_of_one_group_apply_together_in_any_order():
    """A shorter recipe is one setting: ["epochs=3", "warmup_epochs=1"] must not fail on the way (3 epochs while
    the warmup is still 5), at run level and at profile level; the range check still judges the result."""
    from mvd_lib.config import apply_overrides
    from mvd_lib.errors import ConfigError

    base = OptimConfig(epochs=10, warmup_epochs=5)
    for order in (["optim.epochs=3", "optim.warmup_epochs=1"], ["optim.warmup_epochs=1", "optim.epochs=3"]):
        cfg = apply_overrides(preset("distill", "smoke", overrides={"optim": base}), order)
        assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (3, 1)
    p = runner.profile("laptop", ["finetune_optim.epochs=3", "finetune_optim.warmup_epochs=1"])
    assert (p.finetune_optim.epochs, p.finetune_optim.warmup_epochs) == (3, 1)
    assert p.overrides == ("finetune_optim.epochs=3", "finetune_optim.warmup_epochs=1")
    assert apply_overrides(base, ["lr=1", "lr=2"]).lr == 2.0  # the last value of a key wins
    with pytest.raises(ConfigError, match=r"optim.epochs=3: warmup_epochs must be in \[0, epochs=3\], got 5"):
        apply_overrides(preset("distill", "smoke", overrides={"optim": base}), ["optim.epochs=3"])
    with pytest.raises(ConfigError, match="sets a field of 'optim', which another override sets as a whole"):
        apply_overrides(preset("distill", "smoke"), [("optim", base), "optim.lr=1"])


def test_shipped_artifact_is_adopted(tmp_path, monkeypatch):
    cfg = preset("pretrain-image", "smoke")
    h = config_hash(cfg, {})
    art = tmp_path / "artifacts" / "pretrain-image" / f"smoke-{h}"
    art.mkdir(parents=True)
    (art / "metrics.json").write_text(json.dumps({"status": "finished", "final_loss": 1.0}))
    monkeypatch.setattr(RUN_TYPES["pretrain-image"], "execute", lambda *a, **k: pytest.fail("should not train"))
    run = runner.train_or_load("pretrain-image", cfg, root=tmp_path / "runs", artifacts=tmp_path / "artifacts",
                               progress=False)
    assert run.finished and run.folder == tmp_path / "runs" / "pretrain-image" / f"smoke-{h}"
    assert run.metrics["final_loss"] == 1.0


def test_a_bad_dependency_fails_before_any_compute(tmp_path):
    from mvd_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="mask_ratio must be in"):
        runner.run("distill", "smoke", image_teacher="pretrain-image;mask_ratio=1.0", root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="no such file"):
        runner.run("finetune", "smoke", overrides={"data.task": "motion"}, init="file:/no/such.pth", root=tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def _copy_teachers(src: Path, dst: Path) -> None:
    for verb in ("pretrain-image", "pretrain-video"):
        shutil.copytree(only(src, verb), dst / verb / only(src, verb).name)


@pytest.mark.slow
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


class _ToyObjective:
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


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    objective = _ToyObjective(nan_at=5)
    optim = OptimConfig(epochs=4, warmup_epochs=0, batch_size=8, lr=0.01, scale_lr=False)
    trainer = Trainer(objective, ToyData(), optim, tmp_path, checkpoint_every=2, progress=False)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5"):
        trainer.fit()
    state = read_checkpoint(tmp_path / "checkpoint-last.pth")["train_state"]
    assert state["step"] == 4 and all(v == v for v in state["loss_curve"])


def test_teachers_are_frozen_and_outside_the_optimizer(smoke_runs):
    from mvd_lib.runtypes import Dependency

    video_teacher = runner.run("pretrain-video", "smoke", root=smoke_runs, progress=False)
    cfg = preset("distill", "smoke_vid")
    deps = {"image_teacher": Dependency("none", "none"),
            "video_teacher": Dependency("run", "run", run=video_teacher)}
    prepared = RUN_TYPES["distill"].prepare(cfg, deps, torch.device("cpu"))
    teacher, objective, student = prepared.teachers["vid"], prepared.objective, prepared.model
    in_opt = {id(p) for g in objective.param_groups(cfg.optim) for p in g["params"]}
    assert not any(id(p) in in_opt for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.AdamW(objective.param_groups(cfg.optim), lr=1e-2)
    batch = {"video": torch.randn(2, 3, 8, 16, 16), "index": torch.arange(2)}
    teacher.train()
    loss, _ = objective.loss(student, batch, 0)
    loss.backward()
    opt.step()
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("variant,parts", [
    ("pix", {"img", "vid", "pix"}),
    ("token", {"vid"}),
    ("ema", {"ema"}),
    ("random", {"img", "vid"}),
])
def test_distill_variants_run(smoke_runs, tmp_path, variant, parts):
    _copy_teachers(smoke_runs, tmp_path)
    run = runner.run("distill", "smoke", variant, root=tmp_path, progress=False, probe_every=1)
    assert run.finished and set(run.metrics["parts_curve"]) == parts
    probes = [m for m in run.metrics["epoch_metrics"] if "probe_motion" in m]
    assert len(probes) == 2  # in-training probes every epoch (observation only: not in the hash)
    assert run.hash == runner.run("distill", "smoke", variant, root=tmp_path, progress=False).hash
    if variant == "random":
        assert run.dependencies == {"image_teacher": "random", "video_teacher": "random"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
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
    first = runner.run("distill", "smoke", **kw)
    assert first.metrics["status"] == "waiting"  # each unfinished run in the chain spent its own budget
    assert first.metrics["waiting_for"] == ["pretrain-image smoke", "pretrain-video smoke"]
    partial = json.loads(only(tmp_path, "pretrain-image").joinpath("metrics.json").read_text())
    assert partial["status"] == "partial" and partial["steps"] == 3
    for _ in range(10):
        run = runner.run("distill", "smoke", **kw)
        if run.finished:
            break
    assert run.finished and run.metrics["steps"] == 8


def test_force_reruns_only_the_named_run(smoke_runs, tmp_path, monkeypatch):
    _copy_teachers(smoke_runs, tmp_path)
    calls = []
    real = RUN_TYPES["distill"].execute
    monkeypatch.setattr(RUN_TYPES["distill"], "execute", lambda *a, **k: calls.append("distill") or real(*a, **k))
    for verb in ("pretrain-image", "pretrain-video"):
        monkeypatch.setattr(RUN_TYPES[verb], "execute", lambda *a, **k: pytest.fail("a finished teacher was retrained"))
    runner.run("distill", "smoke", root=tmp_path, progress=False)
    runner.run("distill", "smoke", root=tmp_path, progress=False, force=True)
    assert calls == ["distill", "distill"]


def test_a_record_kept_without_its_weights_names_the_remedy(smoke_runs, tmp_path):
    """A finished run whose model.pth is gone (the records of results/*/runs/ restored into runs/) still serves
    its record, but loading it, or training on it, fails with one CheckpointError naming the folder and the
    remedy; deleting the folder lets train-or-load train it again."""
    _copy_teachers(smoke_runs, tmp_path)
    teacher = runner.run("pretrain-video", "smoke", root=tmp_path, progress=False)
    kept = json.loads((teacher.folder / "metrics.json").read_text())
    teacher.model_path.unlink()
    again = runner.run("pretrain-video", "smoke", root=tmp_path, progress=False)
    assert again.finished and again.metrics == kept  # the record is still read, not retrained
    for load in (again.encoder, lambda: runner.run("distill", "smoke", "vid", root=tmp_path, progress=False)):
        with pytest.raises(CheckpointError) as err:
            load()
        msg = str(err.value)
        assert "weights are missing" in msg and f"delete {again.folder}" in msg, msg
        command = (again.folder / "command.txt").read_text().strip()
        assert f"`{command} --force`" in msg and command.startswith("python -m mvd_lib pretrain-video"), msg
        assert "\n" not in msg
    shutil.rmtree(again.folder)
    retrained = runner.run("pretrain-video", "smoke", root=tmp_path, progress=False)
    assert retrained.model_path.is_file() and retrained.metrics["loss_curve"] == pytest.approx(kept["loss_curve"], abs=1e-5)


def test_teacher_pretraining_records_in_training_probes(tmp_path):
    """Pixel losses barely move at small scale, so runs can record a cheap probe accuracy as they train."""
    image = runner.run("pretrain-image", "smoke", root=tmp_path, progress=False, probe_every=1)
    video = runner.run("pretrain-video", "smoke", root=tmp_path / "v", progress=False, probe_every=2)
    assert [sorted(m) for m in image.metrics["epoch_metrics"]] == [["epoch", "probe_appearance", "step"]] * 2
    assert "probe_motion" not in str(image.metrics["epoch_metrics"])  # one frame cannot tell motion
    assert [("probe_motion" in m) for m in video.metrics["epoch_metrics"]] == [False, True]
    curves = video.curves
    assert curves.probes["motion"][0].tolist() == [video.metrics["steps"]]  # step of the epoch-2 probe


def test_finetune_with_the_reference_augmentation_recipe(tmp_path):
    """Repeated augmentation x2, RandAugment, cube erasing, mixup/cutmix: the paper recipe runs end to end."""
    from mvd_lib.config import REFERENCE

    run = runner.run("finetune", "smoke", augment=REFERENCE, init="random", root=tmp_path, progress=False)
    assert run.finished and run.metrics["samples"] == 8 * run.metrics["steps"]  # clips, before repetition
    assert set(run.metrics["parts_curve"]) == {"ce", "train_top1"} and run.metrics["init"] == "random"
    assert run.metrics["test"]["num_videos"] == 16


def test_finetune_scores_val_when_asked_and_keeps_the_hashes_of_test_runs(tmp_path):
    """`split=val` scores the val split (to choose a setting such as the budget); the default, test, leaves the
    config hash as it was before `split` existed, so recorded finetunes (runs/finetune/quick_motion-5e1ae063f7 and
    its kin) are found again."""
    from mvd_lib.profiles import preset

    for name, pinned in (("smoke_appearance", "6469c14cda"), ("quick_appearance", "974dd1bd9d"),
                         ("quick_motion", "5e1ae063f7")):
        assert config_hash(preset("finetune", name, ["init=random"]), {"init": "random"}) == pinned
        assert config_hash(preset("finetune", name, ["init=random", "split=val"]), {"init": "random"}) != pinned
    kw = dict(init="random", root=tmp_path, progress=False, overrides={"data.num_val": 12})
    val = runner.run("finetune", "smoke", split="val", **kw)
    assert val.metrics["split"] == "val" and "test" not in val.metrics
    assert val.metrics["val"]["num_videos"] == 12
    test = runner.run("finetune", "smoke", **kw)
    assert test.hash != val.hash and test.metrics["test"]["num_videos"] == 16
    assert val.metrics["loss_curve"] == test.metrics["loss_curve"]  # the same training; only the scored split differs


def test_real_video_lists_through_finetune_probe_evaluate_and_extract(tmp_path):
    """data_samples/ mp4 files through decord: train, multi-view test, probe, evaluate, extract; a missing video
    is skipped, counted and named in the run's records instead of stopping the run."""
    lists = tmp_path / "lists"
    shutil.copytree(REPO / "data_samples", lists)
    lines = (lists / "train.csv").read_text().splitlines()
    # each video listed 4 times (enough rows for the probe's held-out split), plus one missing file
    (lists / "train.csv").write_text("\n".join(lines * 4 + ["videos/does_not_exist.mp4 3"]) + "\n")
    data = {"data.source": "list", "data.list_dir": str(lists), "data.dataset": "ucf101", "data.task": "label",
            "data.test_clips": 2, "data.test_crops": 3}
    kw = dict(root=tmp_path / "runs", progress=False)
    ft = runner.run("finetune", "smoke", init="random", num_classes=10, overrides=data, **kw)
    assert ft.finished and ft.metrics["steps_per_epoch"] == 41 // 8
    assert ft.metrics["test"]["num_videos"] == 5 and ft.metrics["test"]["num_views"] == 30
    bad = json.loads((ft.folder / "bad_inputs.json").read_text())["train"]
    assert [(f["path"], f["reason"]) for f in bad["files"]] == [(str(lists / "videos" / "does_not_exist.mp4"), "missing")]
    ev = runner.run("evaluate", "smoke", checkpoint=f"file:{ft.model_path}", num_classes=10, overrides=data, **kw)
    assert ev.metrics["test"]["top1"] == ft.metrics["test"]["top1"]  # the same weights, the same views
    pr = runner.run("probe", "smoke", encoder="random", tasks=("label",), protocols=("linear", "knn", "attentive"),
                    overrides=data, **kw)
    assert set(pr.metrics["probe"]) == {"linear", "knn", "attentive"}
    assert pr.metrics["probe"]["linear"]["label"]["time"]["num_test"] == 30
    assert pr.metrics["probe"]["attentive"]["label"]["tokens"]["num_test"] == 30
    ex = runner.run("extract", "smoke", encoder="random", layer=0, pooling="time", overrides=data, **kw)
    import numpy as np

    assert np.load(ex.folder / "test" / "time" / "x.npy").shape == (30, 4 * 64)  # 30 views, 4 time slots x 64
    assert np.load(ex.folder / "val" / "time" / "label_label.npy").shape == (30,)
    assert json.loads((ex.folder / "test" / "time" / "features.json").read_text())["layer"] == 0


def test_training_leaves_the_callers_random_stream_alone(tmp_path):
    objective = _ToyObjective(nan_at=10**6)  # built first: its initial weights draw from the global generator
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer(objective, ToyData(), OptimConfig(epochs=1, warmup_epochs=0, batch_size=8, lr=0.01), tmp_path,
            progress=False).fit()
    assert torch.equal(torch.rand(3), expected)


def test_probe_attentive_lrs_one_value_fits_once_without_a_held_out_choice(tmp_path):
    kw = dict(root=tmp_path / "runs", progress=False, encoder="random", protocols=("attentive",), tasks=("motion",))
    grid = runner.run("probe", "smoke", **kw).metrics["probe"]["attentive"]["motion"]["tokens"]
    assert [s["lr"] for s in grid["grid"]] == [1e-3, 3e-3, 1e-2] and grid["num_holdout"] > 0
    assert len(grid["holdout_top1"]) == 3
    fixed = runner.run("probe", "smoke", attentive_lrs=(3e-3,), **kw)
    r = fixed.metrics["probe"]["attentive"]["motion"]["tokens"]
    assert r["chosen"]["lr"] == 3e-3 and r["num_holdout"] == 0 and r["holdout_top1"] == []
    assert fixed.hash != runner.run("probe", "smoke", **kw).hash  # the lrs are part of the run's identity
    assert runner.profile("laptop").attentive_lrs == (1e-3,)
