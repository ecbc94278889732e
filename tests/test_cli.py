"""The command line: `python -m mvd_lib models` and `bench` run and print what they promise."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mvd_lib.cli import main, models_table


def test_models_table_lists_every_preset_with_paper_numbers():
    table = models_table()
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:-1]}
    assert set(rows) == {"vit_small", "vit_base", "vit_large", "vit_huge", "vit_tiny", "vit_micro", "vit_nano"}
    base = rows["vit_base"]
    assert base[6] == "16x224x224" and base[7] == "1568" and base[8] == "160"
    assert abs(float(base[9]) - 180) < 1.0  # paper: 180 GFLOPs per view
    assert abs(float(rows["vit_huge"][4]) - 633) / 633 < 0.01


def test_bench_prints_one_json_line():
    out = subprocess.run([sys.executable, "-m", "mvd_lib", "bench", "--preset", "vit_nano", "--device", "cpu",
                          "--batch", "2", "--steps", "1", "--warmup", "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["run"] == "distill" and rec["batch"] == 2 and rec["tokens"] == 512 and rec["visible"] == 56
    assert rec["sec_per_step"] > 0 and rec["clips_per_s"] > 0 and rec["mfu"] is None


def test_unknown_presets_are_rejected(capsys):
    assert main(["bench", "--preset", "vit_gigantic"]) == 2
    assert "unknown model preset 'vit_gigantic'" in capsys.readouterr().err
    assert main(["bench", "--run", "finetune", "--preset", "gigantic"]) == 2
    assert "unknown finetune preset 'gigantic'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--run", "pretrain-audio", "--preset", "smoke"])
