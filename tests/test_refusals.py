"""Every refusal clear and early: a table of bad inputs (settings, references, checkpoint files, list files,
videos, runs folders) walked through the command line in-process. For each: exit code 2, one line naming the
culprit, no traceback, and no run folder left behind. Then divergence, damaged records, changed inputs,
concurrent launches and file modes, through the run API."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mvd_lib import runner
from mvd_lib.cli import main
from mvd_lib.errors import ConfigError, DivergedRunError
from mvd_lib.samples import write_mp4

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data_samples"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Bad checkpoint files and annotation-list folders, made once."""
    d = tmp_path_factory.mktemp("bad")
    out: dict[str, Path] = {}
    out["empty"] = d / "empty.pth"
    out["empty"].write_bytes(b"")
    out["text"] = d / "notes.pth"
    out["text"].write_text("these are my notes, not weights\n")
    out["random"] = d / "random.pth"
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    good = d / "good.pth"
    torch.save({"model": {"w": torch.zeros(3)}}, good)
    out["truncated"] = d / "truncated.pth"
    out["truncated"].write_bytes(good.read_bytes()[:200])
    out["html"] = d / "download.pth"
    out["html"].write_text("<!DOCTYPE html><html><body>404</body></html>")
    # a finetuned-classifier-shaped file of NaN weights
    from mvd_lib.build import build_classifier
    from mvd_lib.checkpoint import save_checkpoint
    from mvd_lib.profiles import preset

    cfg = preset("evaluate", "smoke")
    model = build_classifier(cfg.model.vit(), 16)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    out["nan"] = d / "nan_classifier.pth"
    save_checkpoint(out["nan"], model, epoch=0)

    def lists(name: str, train: list[str], test: list[str] | None = None) -> Path:
        folder = d / name
        shutil.copytree(SAMPLES / "videos", folder / "videos")
        (folder / "train.csv").write_text("".join(f"{line}\n" for line in train))
        (folder / "test.csv").write_text("".join(f"{line}\n" for line in (test or train)))
        return folder

    good_lines = (SAMPLES / "train.csv").read_text().splitlines()
    out["malformed"] = lists("malformed", [*good_lines[:3], "videos/train_00_right_digit_8.mp4"])
    out["label"] = lists("label", [*good_lines[:3], "videos/train_00_right_digit_8.mp4 999"])
    out["no_test"] = lists("no_test", good_lines)
    (out["no_test"] / "test.csv").unlink()
    out["unreadable"] = lists("unreadable", [f"videos/missing_{i}.mp4 {i}" for i in range(10)])
    strict = lists("strict", [*good_lines, "videos/broken.mp4 3"])
    (strict / "videos" / "broken.mp4").write_text("not a video\n" * 50)
    out["strict"] = strict
    out["a_file"] = d / "a_file.txt"
    out["a_file"].write_text("x")
    return out


LIST = ["--set", "data.source=list", "--set", "data.dataset=ucf101", "--set", "data.task=label",
        "--set", "num_classes=10", "--set", "init=random"]


def cases(f: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    """(what, command line, a piece of the message that names the culprit)."""
    smoke = ["distill", "--preset", "smoke"]
    probe = ["probe", "--preset", "smoke", "--set", "tasks=label", "--set", "data.source=list",
             "--set", "data.dataset=ucf101", "--set", "data.task=label", "--set", f"data.list_dir={SAMPLES}"]
    finetune = ["finetune", "--preset", "smoke", *LIST]
    evaluate = ["evaluate", "--preset", "smoke"]
    claims = ["claims", "--profile", "smoke", "--claims", "C2", "--out", str(f["a_file"].parent / "no_results")]
    return [
        # settings out of range or unknown
        ("mask ratio 1", [*smoke, "--set", "mask_ratio=1.0"], "mask_ratio=1.0"),
        ("mask ratio 0", [*smoke, "--set", "mask_ratio=0"], "mask_ratio=0.0"),
        ("batch 0", [*smoke, "--set", "optim.batch_size=0"], "optim.batch_size=0"),
        ("batch negative", [*smoke, "--set", "optim.batch_size=-8"], "optim.batch_size=-8"),
        ("negative lr", [*smoke, "--set", "optim.lr=-1e-3"], "optim.lr=-0.001"),
        ("accum 0", [*smoke, "--set", "optim.accum_steps=0"], "optim.accum_steps=0"),
        ("no clips", [*smoke, "--set", "data.num_clips=0"], "data.num_clips=0"),
        ("unknown device", [*smoke, "--set", "device=tpu"], "device='tpu'"),
        ("unknown dataset", [*finetune, "--set", f"data.list_dir={SAMPLES}", "--set", "data.dataset=kinetics"],
         "data.dataset='kinetics'"),
        ("checkpoint every -1", [*smoke, "--set", "checkpoint_every=-1"], "checkpoint_every=-1"),
        ("stop after 0 steps", [*smoke, "--stop-after-steps", "0"], "--stop-after-steps"),
        ("mistyped key", [*smoke, "--set", "optim.lrr=1"], "optim.lrr"),
        ("wrong type", [*smoke, "--set", "optim.epochs=two"], "optim.epochs='two'"),
        ("profile key", [*smoke, "--profile-set", "seed=-1"], "seed"),
        ("unknown preset", ["distill", "--preset", "huge"], "'huge'"),
        # references
        ("missing teacher file", [*smoke, "--set", "image_teacher=file:/no/such.pth"], "/no/such.pth"),
        ("teacher of the wrong kind", [*smoke, "--set", "image_teacher=pretrain-video"], "image_teacher=pretrain-video"),
        ("evaluate a pretraining run", [*evaluate, "--set", "checkpoint=pretrain-video:smoke"], "checkpoint="),
        ("unknown run hash", [*smoke, "--set", "video_teacher=pretrain-video@0123456789"], "0123456789"),
        ("bad dependency setting", [*smoke, "--set", "image_teacher=pretrain-image;mask_ratio=1.0"], "mask_ratio"),
        # checkpoint files
        *[(f"checkpoint: {k}", [*evaluate, "--set", f"checkpoint=file:{f[k]}"], str(f[k]))
          for k in ("empty", "text", "random", "truncated", "html", "nan")],
        ("checkpoint is a folder", [*evaluate, "--set", f"checkpoint=file:{f['malformed']}"], str(f["malformed"])),
        # list files and videos
        ("list_dir missing", [*probe, "--set", "data.list_dir=/no/such/lists"], "/no/such/lists"),
        ("list_dir is a file", [*probe, "--set", f"data.list_dir={f['a_file']}"], str(f["a_file"])),
        ("test list missing", [*finetune, "--set", f"data.list_dir={f['no_test']}"], "test.csv"),
        ("malformed list line", [*finetune, "--set", f"data.list_dir={f['malformed']}"], "train.csv, line 4"),
        ("label out of range", [*finetune, "--set", f"data.list_dir={f['label']}"], "train.csv, line 4"),
        ("no readable video", [*finetune, "--set", f"data.list_dir={f['unreadable']}"], "train.csv"),
        ("strict bad video", [*finetune, "--set", f"data.list_dir={f['strict']}", "--set", "data.strict=true"],
         "broken.mp4"),
        # runs folder
        ("fewer clips than a batch", [*finetune, "--set", f"data.list_dir={SAMPLES}", "--set", "optim.batch_size=64"],
         "optim.batch_size=64"),
        # runs folder
        ("runs folder under a file", [*smoke, "--runs", str(f["a_file"] / "runs")], str(f["a_file"])),
        # experiments
        ("claims: an arm outside the claims", [*claims, "--arms", "per-token student"], "per-token student"),
        ("claims: extend no experiment", [*claims, "--extend"], "no experiment"),
    ]


CASE_IDS = [c[0] for c in cases({k: Path(k) for k in ("empty", "text", "random", "truncated", "html", "nan",
                                                     "malformed", "a_file", "no_test", "label", "unreadable",
                                                     "strict")})]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_every_bad_input_is_one_line_exit_2_and_leaves_no_folder(files, tmp_path, capsys, index):
    what, argv, culprit = cases(files)[index]
    runs = tmp_path / "runs"
    if "--runs" not in argv:
        argv = [*argv, "--runs", str(runs)]
    code = main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"{what}: exit {code}\n{captured.out}\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {err}"
    assert culprit in lines[0], f"{what}: {lines[0]!r} does not name {culprit!r}"
    assert "Traceback" not in err
    assert not runs.exists(), f"{what}: left {sorted(p.relative_to(runs) for p in runs.rglob('*'))}"


def test_the_table_covers_every_kind_of_input():
    kinds = {"settings": 15, "references": 5, "checkpoint files": 7, "lists and videos": 8, "runs folder": 1,
             "experiments": 2}
    assert len(CASE_IDS) == sum(kinds.values()) == 38


def test_a_read_only_runs_folder_is_refused(tmp_path, capsys, monkeypatch):
    """Simulated with os.access (as root, the file mode does not stop writes)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert main(["distill", "--preset", "smoke", "--runs", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert f"runs folder {tmp_path / 'runs'} is not writable" in capsys.readouterr().err


def test_an_untrusted_pickled_checkpoint_points_to_trust(tmp_path, capsys):
    path = tmp_path / "official.pth"
    torch.save({"model": {}, "args": Path("/reference/args")}, path)  # a pickled Python object, like argparse args
    code = main(["evaluate", "--preset", "smoke", "--set", f"checkpoint=file:{path}", "--runs", str(tmp_path / "r"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-checkpoint" in err and str(path) in err


# ------------------------------------------------------------------------------------------------ divergence
def test_a_diverged_run_leaves_a_finite_checkpoint_or_none_and_a_rerun_does_not_loop(tmp_path, capsys):
    argv = ["pretrain-video", "--preset", "smoke", "--set", "optim.lr=1e3", "--set", "checkpoint_every=1",
            "--runs", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    first = capsys.readouterr().err
    assert "diverged" in first and "lower optim.lr (now 1000)" in first
    (folder,) = (tmp_path / "pretrain-video").iterdir()
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "diverged"
    if record["checkpoint"] is not None:  # a checkpoint it names exists and is finite
        from mvd_lib.checkpoint import read_checkpoint

        state = read_checkpoint(record["checkpoint"])["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        assert str(record["checkpoint"]) in first
    else:
        assert "no checkpoint" in first
    t0 = time.perf_counter()
    assert main(argv) == 2  # refused at once, without training again
    again = capsys.readouterr().err
    assert "diverged" in again and "then rerun" in again and time.perf_counter() - t0 < 60
    assert json.loads((folder / "metrics.json").read_text()) == record  # nothing was rerun


# ------------------------------------------------------------------------------------------------ records
def test_a_damaged_record_names_the_file_and_the_remedy(tmp_path):
    run = runner.run("pretrain-image", "smoke", root=tmp_path, progress=False)
    (run.folder / "metrics.json").write_text("")
    with pytest.raises(ConfigError, match=r"metrics\.json is empty: delete it to rerun the run, or rerun with --force"):
        runner.run("pretrain-image", "smoke", root=tmp_path, progress=False)
    rerun = runner.run("pretrain-image", "smoke", root=tmp_path, progress=False, force=True)
    assert rerun.finished


def test_a_damaged_resumable_checkpoint_says_how_to_recover(tmp_path, capsys):
    runner.run("pretrain-image", "smoke", root=tmp_path, progress=False, stop_after_steps=3)
    (folder,) = (tmp_path / "pretrain-image").iterdir()
    (folder / "checkpoint-last.pth").write_bytes(b"PK\x03\x04 half a checkpoint")
    code = main(["pretrain-image", "--preset", "smoke", "--runs", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint-last.pth" in err and ("delete" in err and "--force" in err)
    assert main(["pretrain-image", "--preset", "smoke", "--runs", str(tmp_path), "--no-progress", "--force"]) == 0


def test_an_old_record_fails_with_a_clear_message(tmp_path):
    folder = tmp_path / "distill" / "laptop-0123456789"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"verb": "distill", "hash": "0123456789", "config": {}}))
    with pytest.raises(ConfigError, match="recorded by an older mvd_lib"):
        runner.load(folder)


def test_a_changed_annotation_list_makes_a_new_run(tmp_path):
    lists = tmp_path / "lists"
    shutil.copytree(SAMPLES, lists)
    data = {"data.source": "list", "data.list_dir": str(lists), "data.dataset": "ucf101", "data.task": "label",
            "data.test_clips": 1, "data.test_crops": 1}
    kw = dict(root=tmp_path / "runs", progress=False, encoder="random", tasks=("label",), overrides=data)
    (lists / "train.csv").write_text((SAMPLES / "train.csv").read_text() * 5)
    first = runner.run("probe", "smoke", **kw)
    assert runner.run("probe", "smoke", **kw).folder == first.folder  # same inputs: the finished run
    (lists / "train.csv").write_text((SAMPLES / "train.csv").read_text() * 6)  # the list is edited
    second = runner.run("probe", "smoke", **kw)
    assert second.folder != first.folder and second.finished
    before = json.loads((first.folder / "config.json").read_text())["inputs"]
    after = json.loads((second.folder / "config.json").read_text())["inputs"]
    assert before["train.csv"] != after["train.csv"] and before["test.csv"] == after["test.csv"]


def test_two_launches_of_one_run_train_it_once(tmp_path):
    """Two processes start the same run at once: one trains, the other waits and loads the finished run."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mvd_lib", "pretrain-video", "--preset", "smoke", "--set", "optim.epochs=20",
           "--runs", str(tmp_path), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("waiting for" in out for out, _ in outs) == 1  # the second one said whom it waited for
    assert not any("waiting for waiting" in out for out, _ in outs), outs  # once, as one sentence
    (folder,) = (tmp_path / "pretrain-video").iterdir()
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 20 * 4  # trained once: 32 clips / 8


def test_records_follow_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = runner.run("pretrain-image", "smoke", root=tmp_path, progress=False)
    finally:
        os.umask(old)
    for name in ("config.json", "metrics.json", "command.txt", "model.pth"):
        assert (run.folder / name).stat().st_mode & 0o777 == 0o644, name


def test_a_finetune_killed_during_its_evaluation_resumes_straight_to_it(tmp_path, monkeypatch):
    """The evaluation runs after model.pth is written and before the resumable state is deleted: a run stopped
    there is finished on the next call without a single training step."""
    from mvd_lib import runtypes

    calls = []

    def dying_evaluate(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt  # the process is stopped during the test evaluation

    real = runtypes.evaluate
    monkeypatch.setattr(runtypes, "evaluate", dying_evaluate)
    kw = dict(init="random", root=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run("finetune", "smoke", **kw)
    (folder,) = (tmp_path / "finetune").iterdir()
    assert (folder / "model.pth").exists() and (folder / "checkpoint-last.pth").exists()
    assert not (folder / "metrics.json").exists() and calls == [1]
    monkeypatch.setattr(runtypes, "evaluate", real)
    trained = []
    monkeypatch.setattr(runtypes.Trainer, "_optimizer_step",
                        lambda self, batches: trained.append(1) or pytest.fail("trained again"))
    run = runner.run("finetune", "smoke", **kw)
    assert run.finished and trained == [] and "test" in run.metrics
    assert not (folder / "checkpoint-last.pth").exists()
