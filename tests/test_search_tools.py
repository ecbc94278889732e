"""The val-split search scripts under tools/: they run through the run machinery at the smoke profile, score
val only, log one line per run, skip what the log already holds, and print the log as markdown."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import finetune_search  # noqa: E402
import student_search  # noqa: E402


def test_finetune_search_scores_val_logs_and_resumes(tmp_path, capsys):
    log = tmp_path / "ft.jsonl"
    argv = ["epochs_3", "--base", "smoke", "--encoders", "random", "--tasks", "appearance",
            "--root", str(tmp_path / "runs"), "--log", str(log)]
    assert finetune_search.main(argv) == 0
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    run = json.loads((tmp_path / "runs" / "finetune" / f"smoke_appearance-{entry['run']}" / "metrics.json").read_text())
    assert run["split"] == "val" and "test" not in run and entry["val_top1"] == run["val"]["top1"]
    assert entry["steps"] == run["steps"] == 3 * run["steps_per_epoch"] and entry["num_val"] == 16
    assert finetune_search.main(argv) == 0  # already logged: nothing runs, nothing is appended
    assert len(log.read_text().splitlines()) == 1
    capsys.readouterr()
    assert finetune_search.main(["--report", "--log", str(log)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith(f"| epochs_3 | smoke | 0 | {entry['steps']} | random init | {entry['val_top1']:.1f} (")
    assert table[2].endswith("| - |")  # motion was not run


@pytest.mark.parametrize("tool,argv,message", [
    (finetune_search, ["epochs_9"], "unknown: ['epochs_9']"),
    (finetune_search, ["epochs_3", "--encoders", "teacher,nobody"], "--encoders takes some of"),
    (finetune_search, ["epochs_3", "--tasks", "colour"], "--tasks takes some of"),
    (student_search, [], "name settings from"),
    (student_search, ["reference", "--students", "xx"], "--students takes some of"),
])
def test_search_tools_refuse_bad_arguments(tool, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        tool.main(argv + ["--log", str(tmp_path / "log.jsonl")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "log.jsonl").exists()


def test_search_tools_list_their_settings(capsys):
    assert finetune_search.main(["--list"]) == 0 and student_search.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "epochs_10" in out and "lr_1e-3" in out
