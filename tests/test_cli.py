"""The command line, in-process: `models`, `presets`, `bench`, run verbs, and refusals that come before any
compute as one line with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mvd_lib.cli import main, models_table


def test_models_table_lists_every_architecture_with_paper_numbers():
    table = models_table()
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:-1]}
    assert set(rows) == {"vit_small", "vit_base", "vit_large", "vit_huge", "vit_tiny", "vit_micro", "vit_nano"}
    base = rows["vit_base"]
    assert base[6] == "16x224x224" and base[7] == "1568" and base[8] == "160"
    assert abs(float(base[9]) - 180) < 1.0  # paper: 180 GFLOPs per view
    assert abs(float(rows["vit_huge"][4]) - 633) / 633 < 0.01


def test_bench_prints_one_json_line(capsys):
    assert main(["bench", "--run", "distill", "--preset", "smoke", "--device", "cpu", "--batch", "2", "--steps", "1",
                 "--warmup", "0"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    # smoke: 8x16x16 clips, 2x4x4 tubelets -> 4x4x4 = 64 tokens, 4 x int(0.9 * 16) = 56 masked
    assert rec["run"] == "distill" and rec["batch"] == 2 and rec["tokens"] == 64 and rec["visible"] == 8
    assert rec["teacher"] == "img:64d,vid:64d" and rec["sec_per_step"] > 0 and rec["mfu"] is None


def test_bench_times_the_rejection_of_a_bad_setting(capsys):
    assert main(["bench", "--run", "rejection", "--steps", "1"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["exit_code"] == 2 and "unknown setting 'optim.lrr'" in rec["message"] and rec["median_s"] > 0


def test_unknown_presets_are_rejected(capsys):
    assert main(["bench", "--run", "finetune", "--preset", "gigantic"]) == 2
    assert "unknown finetune preset 'gigantic'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--run", "pretrain-audio", "--preset", "smoke"])


def test_presets_lists_profiles_and_variants(capsys):
    assert main(["presets", "distill"]) == 0
    out = capsys.readouterr().out
    assert "profiles: smoke, quick, laptop" in out and "laptop_img" in out and "smoke_random" in out


@pytest.mark.parametrize("args,message", [
    (["--set", "optim.lrr=1"], "unknown setting 'optim.lrr'"),
    (["--set", "optim.lr=fast"], "expected a number"),
    (["--set", "optim.epochs=2.5"], "expected an integer"),
    (["--set", "mask_type=cube"], "must be one of"),
    (["--set", "data.synthetic.frames=4"], "clips are 4x16x16 but the model takes 8x16x16"),
    (["--set", "image_teacher=pretrain-image:nope"], "unknown pretrain-image preset 'nope'"),
    (["--set", "lambda_img"], "key=value"),
    (["--set", "mask_ratio=1.0"], "mask_ratio must be in (0, 1)"),
    (["--set", "image_teacher=file:/no/such.pth"], "image_teacher=file:/no/such.pth: no such file"),
    (["--set", "image_teacher=pretrain-video"], "image_teacher=pretrain-video: distill takes a pretrain-image run"),
    (["--profile-set", "seed=-1"], "seed must be >= 0"),
])
def test_bad_settings_fail_before_compute(tmp_path, capsys, args, message):
    code = main(["distill", "--preset", "smoke", *args, "--runs", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_run_from_the_command_line_prints_its_summary(tmp_path, capsys):
    assert main(["pretrain-image", "--profile", "smoke", "--runs", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pretrain-image smoke: finished ->") and "final loss" in out


def test_debug_shows_the_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mvd_lib", "--debug", "distill", "--preset", "smoke", "--set",
                          "optim.lrr=1"], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" in out.stderr and "ConfigError" in out.stderr


def test_gate_prints_its_table_and_exits_by_its_verdict(tmp_path, capsys):
    out_json = tmp_path / "gate.json"
    code = main(["gate", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--no-progress",
                 "--num-train", "48", "--num-eval", "32", "--out", str(out_json)])
    out = capsys.readouterr().out
    record = json.loads(out_json.read_text())
    assert code == (0 if record["passed"] else 1)
    assert "| image_teacher |" in out and f"gate: {'PASS' if record['passed'] else 'FAIL'}" in out
    assert record["num_train"] == 48 and record["num_eval"] == 32 and record["split"] == "val"
    assert set(record["rows"]) == {"image_teacher", "video_teacher", "random_image", "random_video"}
    # the teachers are the profile's own runs, reused by the next call
    assert sorted(p.parent.parent.name for p in (tmp_path / "runs").glob("*/*/model.pth")) == ["pretrain-image",
                                                                                         "pretrain-video"]
    # the result is recorded: the same call loads it, --force evaluates again, and both give the same table
    recorded = list((tmp_path / "runs" / "gate").glob("smoke-*.json"))
    assert len(recorded) == 1 and "recorded result" not in out
    args = ["gate", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--no-progress", "--num-train", "48",
            "--num-eval", "32", "--out", str(out_json)]
    assert main(args) == code
    again = capsys.readouterr().out
    assert f"recorded result of these teachers and this sample: {recorded[0]}" in again
    table = lambda text: text.split("| encoder", 1)[1].split("teachers:")[0]  # noqa: E731
    assert table(again) == table(out)
    assert json.loads(out_json.read_text())["rows"] == record["rows"]
    assert main(args + ["--force"]) == code
    forced = capsys.readouterr().out
    assert "recorded result" not in forced and json.loads(out_json.read_text())["rows"] == record["rows"]
    # a teacher trained again under the same config hash has other weights: its gate is evaluated again
    import torch

    weights = next((tmp_path / "runs" / "pretrain-video").glob("*/model.pth"))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    tensors = state.get("model", state)
    name = next(k for k, v in tensors.items() if torch.is_floating_point(v))
    tensors[name] = tensors[name] + 1e-3
    torch.save(state, weights)
    assert main(args) in (0, 1)
    assert "recorded result" not in capsys.readouterr().out
    assert len(list((tmp_path / "runs" / "gate").glob("smoke-*.json"))) == 2


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--profile", "smoke", "--num-eval", "1"], "--num-eval must be >= 2"),
    (["--profile", "smoke", "--lanes", "0"], "--lanes must be >= 1"),
    (["--profile", "smoke", "--profile-set", "video_mask_ratio=1.0"], "video_mask_ratio must be in (0, 1)"),
])
def test_gate_refuses_bad_settings_before_compute(tmp_path, capsys, args, message):
    code = main(["gate", *args, "--runs", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
