"""The README's run-API example runs exactly as printed: both teachers at the smoke profile, a co-teaching student
from the Run objects, linear and attentive probes, Figure 3 and a reconstruction strip."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- example: tests/test_readme.py runs this block -->"


def example() -> str:
    text = README.read_text()
    assert MARKER in text, f"README.md lost the marker {MARKER!r}"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block is not None, "no python block after the marker"
    return block.group(1)


def test_the_example_is_short():
    calls = [line for line in example().splitlines() if "(" in line and not line.lstrip().startswith("#")
             and not line.startswith(" ")]
    assert len(calls) <= 15, calls


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ lands here
    monkeypatch.setenv("MVD_FIGURES_DIR", str(tmp_path / "figures"))
    exec(compile(example(), str(README), "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "figures" / "figure3_smoke.png").stat().st_size > 0
    assert (tmp_path / "figures" / "reconstructions_smoke.png").stat().st_size > 0
    finished = sorted(p.parent.parent.name for p in (tmp_path / "runs").glob("*/*/metrics.json"))
    assert finished == ["distill", "pretrain-image", "pretrain-video", "probe"]
