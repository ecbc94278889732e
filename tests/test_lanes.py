"""Lanes: the runs trained side by side in worker processes are the runs train-or-load makes one after another
(same hashes, configs and commands), each after the runs it needs; a failed run stops the schedule."""
from __future__ import annotations

import json

import pytest

from mvd_lib import claims, lanes, runner
from mvd_lib.cli import main
from mvd_lib.devices import usable_cores
from mvd_lib.errors import DivergedRunError
from mvd_lib.lanes import Job, RunOf, run_jobs
from mvd_lib.profiles import run_config

ARMS = ["random init", "image-teacher student", "video-teacher student"]
THREADS = max(1, usable_cores() // 2)  # of each of two lanes (1 on the 2-core machines the suite is sized for)


def _record(run) -> tuple[str, dict, str]:
    config = json.loads((run.folder / "config.json").read_text())
    return run.hash, config, (run.folder / "command.txt").read_text()


def test_two_lanes_make_the_runs_one_lane_makes(tmp_path):
    one = claims.run_experiments("smoke", seeds=(0, 1), arms=ARMS, protocols=("linear", "finetune"),
                                 root=tmp_path / "one", log=None)
    lines: list[str] = []
    two = claims.run_experiments("smoke", seeds=(0, 1), arms=ARMS, protocols=("linear", "finetune"),
                                 root=tmp_path / "two", log=lines.append, lanes=2)
    assert one.runs.keys() == two.runs.keys()
    for key, entry in one.runs.items():
        assert entry.keys() == two.runs[key].keys()
        for part, run in entry.items():
            other = two.runs[key][part]
            if run is None:  # random init: no model
                assert other is None
                continue
            assert _record(run) == _record(other), (key, part)
            assert other.finished and other.metrics["device"].startswith(f"cpu ({THREADS} threads)")
    distill = two.runs["image-teacher student", 0]["model"]
    first = one.runs["image-teacher student", 0]["model"]
    assert distill.curves.loss == pytest.approx(first.curves.loss, abs=1e-4)  # one thread or two: the same run
    assert lines[0] == f"lanes: 2 worker processes, {THREADS} thread{'s' * (THREADS > 1)} each"
    trained = [line for line in lines if " trained " in line]
    # both teachers, 2 x 2 students, 3 x 2 probes, 3 x 2 x 2 finetunes (random init too): each trained once
    assert len(trained) == 2 + 4 + 6 + 12
    assert lines.index(next(x for x in trained if "pretrain-image" in x)) < lines.index(
        next(x for x in lines if "start distill smoke_img" in x))  # a student starts after its teacher
    again: list[str] = []
    claims.run_experiments("smoke", seeds=(0, 1), arms=ARMS, protocols=("linear", "finetune"), root=tmp_path / "two",
                           log=again.append, lanes=2)
    assert not [line for line in again if " trained " in line or " start " in line]  # all finished: loaded here


def test_a_failed_run_stops_the_schedule_and_is_raised(tmp_path):
    p = runner.profile("smoke", ["distill_optim.lr=1e30"])  # the student's loss turns non-finite
    jobs = [Job("teacher", "pretrain-video", p), Job("student", "distill", p, "vid", {"seed": 0}),
            Job("probe", "probe", p, settings={"encoder": RunOf("student"), "seed": 0})]
    lines: list[str] = []
    with pytest.raises(DivergedRunError, match="diverged"):
        run_jobs(jobs, lanes=2, root=tmp_path, log=lines.append)
    assert any("distill smoke_vid failed (DivergedRunError)" in line for line in lines)
    assert not (tmp_path / "probe").exists()  # nothing after the failed run started
    assert runner.run("pretrain-video", p, root=tmp_path, progress=False).finished  # the teacher before it stays


def test_lanes_started_fresh_make_the_same_runs(tmp_path, monkeypatch):
    """Lanes of several threads start fresh interpreters ("spawn"), where a forked torch would hang: the same
    runs come out of them."""
    monkeypatch.setattr(lanes, "_start_method", lambda threads: "spawn")
    p = runner.profile("smoke")
    jobs = [Job("student", "distill", p, "vid", {"seed": 0}),
            Job("probe", "probe", p, settings={"encoder": RunOf("student"), "seed": 0})]
    one = run_jobs(jobs, lanes=1, root=tmp_path / "one", log=None)
    two = run_jobs(jobs, lanes=2, root=tmp_path / "two", log=None)
    assert {k: _record(r) for k, r in one.items()} == {k: _record(r) for k, r in two.items()}
    assert (tmp_path / "two" / "pretrain-video").is_dir()  # the student's teacher, trained first


def test_bad_schedules_are_refused(tmp_path):
    p = runner.profile("smoke")
    with pytest.raises(ValueError, match="lanes must be >= 1"):
        run_jobs([], lanes=0, root=tmp_path)
    with pytest.raises(ValueError, match="two jobs are named 'a'"):
        run_jobs([Job("a", "pretrain-video", p), Job("a", "pretrain-image", p)], root=tmp_path)
    with pytest.raises(ValueError, match=r"names the runs of \['b'\], which are not earlier jobs"):
        run_jobs([Job("a", "probe", p, settings={"encoder": RunOf("b")}), Job("b", "pretrain-video", p)],
                 root=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_the_gate_trains_its_two_teachers_side_by_side(tmp_path, capsys):
    out_json = tmp_path / "gate.json"
    main(["gate", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--no-progress", "--num-train", "48",
          "--num-eval", "32", "--out", str(out_json), "--lanes", "2"])
    out = capsys.readouterr().out
    assert "lanes: 2 worker processes" in out
    assert sum("trained pretrain-" in line for line in out.splitlines()) == 2
    teachers = json.loads(out_json.read_text())["details"]["teachers"]
    p = runner.profile("smoke")
    for name, verb in (("image", "pretrain-image"), ("video", "pretrain-video")):  # the profile's own teachers
        planned = runner.plan(verb, run_config(verb, p), p)
        assert teachers[name]["run"] == f"{verb}@{planned.hash}"
