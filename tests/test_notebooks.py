"""Notebook hygiene and the notebook runner (mvd_lib/notebook_runner.py).

Every committed notebook must be clean (no outputs, counts or widget state; kernelspec python3; one `parameters`
cell of typed, commented literals). The checker itself is tested on bad notebooks made here, one defect each, and
the runner on a throwaway folder of tiny notebooks (one that passes parameters through, one that fails).
Executing the real notebooks is nbval's job (pytest --nbval-lax over notebooks/, see pyproject.toml).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mvd_lib import notebook_runner as R

NOTEBOOKS = R.list_notebooks()
GOOD_PARAMETERS = 'PROFILE: str = "smoke"  # smoke | quick | laptop | gpu\nSEED: int = 0  # the seed\n'


def test_the_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("00_tour_workbench.ipynb", "01_build_video_vit.ipynb", "02_mask_tubes.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_clean(path, tmp_path):
    assert R.check_notebook(path) == []
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    assert R.strip_notebook(copy) is False, f"{path.name} is not in stripped form: run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_parameters_are_documented_for_papermill(path):
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    assert "PROFILE" in params and params["PROFILE"]["default"] == '"smoke"'  # the cheap profile CI runs
    assert "smoke" in params["PROFILE"]["help"] and "gpu" in params["PROFILE"]["help"]
    for name, info in params.items():
        assert info["help"].strip(), f"{path.name}: parameter {name} has no help text"
        assert info["inferred_type_name"] in ("str", "int", "float", "bool"), (name, info)


# ----------------------------------------------------------------------------------------------------------
# the checker on bad notebooks
# ----------------------------------------------------------------------------------------------------------
def _notebook(parameters: str = GOOD_PARAMETERS) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# 99 · A notebook\n\nGoal, paper section, run time, reads and writes."), params,
                new_code_cell("x = SEED + 1\nassert x == SEED + 1")]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


def _write(nb, folder: Path, name: str = "99_check_things.ipynb") -> Path:
    path = folder / name
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def _with_outputs(nb):
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    return nb


def _with_count(nb):
    nb.cells[2].execution_count = 3
    return nb


def _with_widget_state(nb):
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return nb


def _with_kernel(nb):
    nb.metadata["kernelspec"]["name"] = "conda-env-mvd-py"
    return nb


def _with_two_parameter_cells(nb):
    extra = new_code_cell("DEVICE: str = 'cpu'  # where")
    extra.metadata["tags"] = ["parameters"]
    extra.id = "c9"
    nb.cells.append(extra)
    return nb


def _without_parameter_cell(nb):
    nb.cells[1].metadata = {}
    return nb


def _with_cell_metadata(nb):
    nb.cells[2].metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00"}
    return nb


def _with_pip_install(nb):
    nb.cells[2].source = "!pip install torch\nimport sys\nsys.path.append('..')"
    return nb


def _code_first(nb):
    nb.cells = nb.cells[1:]
    return nb


BAD = {
    "outputs": (_with_outputs, "has outputs"),
    "execution count": (_with_count, "execution count"),
    "widget state": (_with_widget_state, "widgets"),
    "kernelspec": (_with_kernel, "kernelspec"),
    "two parameters cells": (_with_two_parameter_cells, "2 cells are tagged"),
    "no parameters cell": (_without_parameter_cell, "0 cells are tagged"),
    "cell metadata": (_with_cell_metadata, "metadata carries ['execution']"),
    "environment changes": (_with_pip_install, "changes the environment"),
    "no opening markdown": (_code_first, "first cell must be Markdown"),
    "expression parameter": (lambda nb: _notebook(GOOD_PARAMETERS + "N: int = 2 * 3  # six\n"), "must be a literal"),
    "untyped parameter": (lambda nb: _notebook(GOOD_PARAMETERS + "N = 6  # six\n"), "only `NAME: type"),
    "uncommented parameter": (lambda nb: _notebook(GOOD_PARAMETERS + "N: int = 6\n"), "trailing `# comment`"),
    "wrong type": (lambda nb: _notebook(GOOD_PARAMETERS + 'N: int = "6"  # six\n'), "is not a int"),
    "non-literal type": (lambda nb: _notebook(GOOD_PARAMETERS + "N: list = [6]  # six\n"), "type hint"),
    "no PROFILE": (lambda nb: _notebook("SEED: int = 0  # the seed\n"), "must declare PROFILE"),
    "unknown PROFILE": (lambda nb: _notebook('PROFILE: str = "huge"  # which\n'), "is not one of"),
    "statement in parameters": (lambda nb: _notebook(GOOD_PARAMETERS + "print(SEED)  # show\n"), "only `NAME"),
}


def test_checker_accepts_a_good_notebook(tmp_path):
    assert R.check_notebook(_write(_notebook(), tmp_path)) == []


@pytest.mark.parametrize("defect", sorted(BAD))
def test_checker_finds_each_defect(defect, tmp_path):
    make, expected = BAD[defect]
    problems = R.check_notebook(_write(make(_notebook()), tmp_path))
    assert any(expected in p for p in problems), problems


def test_checker_names_a_bad_file_name_and_a_broken_file(tmp_path):
    assert any("NN_verb_object" in p for p in R.check_notebook(_write(_notebook(), tmp_path, "Untitled.ipynb")))
    broken = tmp_path / "98_broken_file.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    assert any("not a valid notebook" in p for p in R.check_notebook(broken))


def test_strip_fixes_what_it_can_and_is_idempotent(tmp_path):
    nb = _with_widget_state(_with_kernel(_with_count(_with_outputs(_with_cell_metadata(_notebook())))))
    nb.metadata["papermill"] = {"parameters": {"SEED": 1}}
    path = _write(nb, tmp_path)
    assert len(R.check_notebook(path)) >= 5
    assert R.strip_notebook(path) is True
    assert R.check_notebook(path) == []
    assert R.strip_notebook(path) is False
    stripped = nbformat.read(str(path), as_version=4)
    assert stripped.cells[1].metadata == {"tags": ["parameters"]}  # tags survive
    assert stripped.cells[2].source == _notebook().cells[2].source  # code survives


def test_check_and_strip_from_the_command_line(tmp_path, capsys):
    _write(_with_outputs(_notebook()), tmp_path)
    assert R.main(["--check", "--notebooks", str(tmp_path)]) == 1
    assert "cell 2 has outputs" in capsys.readouterr().out
    assert R.main(["--strip", "--notebooks", str(tmp_path)]) == 0
    assert R.main(["--check", "--notebooks", str(tmp_path)]) == 0


# ----------------------------------------------------------------------------------------------------------
# profiles and the environment report
# ----------------------------------------------------------------------------------------------------------
def test_profile_settings_picks_and_refuses():
    table = {p: {"n": i} for i, p in enumerate(R.PROFILES)}
    assert R.profile_settings("laptop", **table) == {"n": R.PROFILES.index("laptop")}
    with pytest.raises(ValueError, match="PROFILE must be one of"):
        R.profile_settings("huge", **table)
    with pytest.raises(ValueError, match="missing \\['gpu'\\]"):
        R.profile_settings("smoke", **{p: v for p, v in table.items() if p != "gpu"})
    with pytest.raises(ValueError, match="same keys"):
        R.profile_settings("smoke", **{**table, "quick": {"m": 1}})


def test_environment_report():
    import torch

    import mvd_lib

    env = R.environment("cpu")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["mvd_lib"] == mvd_lib.__version__
    assert Path(env["mvd_lib_path"]) == Path(mvd_lib.__file__).resolve().parent
    assert env["torchvision_guard"] in ("absent", "native", "patched", "imported")


# ----------------------------------------------------------------------------------------------------------
# the runner on throwaway notebooks
# ----------------------------------------------------------------------------------------------------------
RECORDING = """
import json, os
from pathlib import Path
Path(RESULTS_DIR, "seen.json").write_text(json.dumps({"PROFILE": PROFILE, "SEED": SEED, "cwd": os.getcwd()}))
"""


def _runner_folder(tmp_path: Path, fail: bool) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _notebook(GOOD_PARAMETERS + 'RESULTS_DIR: str = "."  # where\n')
    nb.cells[2].source = RECORDING
    _write(nb, folder, "10_record_parameters.ipynb")
    bad = _notebook()
    bad.cells[2].source = "raise ValueError('deliberate failure')" if fail else "pass"
    _write(bad, folder, "11_fail_deliberately.ipynb")
    _write(_notebook(), folder, "12_never_reached.ipynb")
    return folder


def test_runner_passes_parameters_and_stops_at_a_failure(tmp_path, capsys):
    import os

    folder = _runner_folder(tmp_path, fail=True)
    out = tmp_path / "out"
    environ = dict(os.environ)
    code = R.main(["--profile", "smoke", "--notebooks", str(folder), "--out", str(out), "--seed", "7"])
    text = capsys.readouterr()
    assert dict(os.environ) == environ  # the kernels' environment was set for the run only
    assert code == 1
    assert "FAILED: 11_fail_deliberately.ipynb: cell 2: ValueError: deliberate failure" in text.err
    seen = json.loads((out / "smoke" / "results" / "seen.json").read_text())
    assert seen["PROFILE"] == "smoke" and seen["SEED"] == 7 and Path(seen["cwd"]) == folder.resolve()
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "failed", "not run"]
    assert summary["notebooks"][0]["new_files"] == ["results/seen.json"]
    assert (out / "smoke" / "10_record_parameters.ipynb").exists()
    assert "| total | 1/3 ok |" in text.out and "executed notebooks:" in text.out


def test_runner_succeeds_and_refuses_unknown_parameters(tmp_path, capsys):
    folder = _runner_folder(tmp_path, fail=False)
    out = tmp_path / "out"
    results = R.run_notebooks("quick", folder, out, only=["10", "11"], log=lambda msg: None)
    assert [(r.notebook, r.status) for r in results] == [("10_record_parameters.ipynb", "ok"),
                                                          ("11_fail_deliberately.ipynb", "ok")]
    assert json.loads((out / "quick" / "results" / "seen.json").read_text())["PROFILE"] == "quick"
    assert R.main(["--notebooks", str(folder), "--out", str(out), "--set", "NOT_A_PARAMETER=1"]) == 2
    assert "declared by none of the notebooks" in capsys.readouterr().err
