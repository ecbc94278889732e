"""The main job: run every notebook in notebooks/ in order with papermill, at one profile.

    python -m mvd_lib.notebook_runner                      # quick profile -> outputs/notebooks/quick/
    python -m mvd_lib.notebook_runner --profile laptop     # the full laptop-scale profile
    python -m mvd_lib.notebook_runner --only 02 --set SEED=3
    python -m mvd_lib.notebook_runner --strip              # clear outputs, counts, widget state (commit hygiene)
    python -m mvd_lib.notebook_runner --check              # report hygiene problems, exit 1 if any

Profiles (`PROFILES`) name how much work a notebook does, from `smoke` (seconds; the committed default that CI
runs through nbval) through `quick` (the default here) and `laptop` (full laptop-scale runs) to `gpu` (bigger
clips and models, longer budgets, for one GPU); they are the benchmark profiles of profiles.py. Each notebook maps the profile to its own settings with
`profile_settings`, in the cell after its `parameters` cell.

Every notebook runs with notebooks/ as its working directory, in a kernel that imports the same mvd_lib as this
process. Parameters passed to each notebook (only those it declares in its `parameters` cell): PROFILE, and
FIGURES_DIR / RESULTS_DIR pointing into the output folder, plus DEVICE, SEED and any `--set NAME=VALUE`.
Output layout:

    outputs/notebooks/<profile>/NN_verb_object.ipynb    the executed notebooks (with their outputs)
    outputs/notebooks/<profile>/figures/                figures (viz.save_figure) and GIFs
    outputs/notebooks/<profile>/results/                result tables (CSV / JSON) written by the notebooks
    outputs/notebooks/<profile>/summary.json, .md       per-notebook status and wall time

Committed notebooks carry no outputs, no execution counts and no widget state, use the `python3` kernelspec and
have exactly one `parameters` cell of typed, commented literals (`check_notebook`; tests/test_notebooks.py runs
it on every notebook). `strip_notebook` puts a notebook into that form.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import io
import json
import os
import platform
import re
import sys
import time
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
OUTPUT_DIR = REPO_ROOT / "outputs" / "notebooks"
PROFILES: tuple[str, ...] = ("smoke", "quick", "laptop", "gpu")  # the benchmark profiles of profiles.py
DEFAULT_PROFILE = "quick"
KERNEL = "python3"
NAME_PATTERN = re.compile(r"^\d\d_[a-z0-9]+(_[a-z0-9]+)+\.ipynb$")  # NN_verb_object.ipynb
PARAMETERS_TAG = "parameters"
REQUIRED_PARAMETERS = ("PROFILE",)
_LITERAL_TYPES = {"str", "int", "float", "bool"}
_KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": KERNEL}
_FORBIDDEN_SOURCE = (re.compile(r"sys\.path\.(append|insert)"), re.compile(r"^\s*[!%]\s*pip\s+install", re.M))


# ----------------------------------------------------------------------------------------------------------
# helpers the notebooks call
# ----------------------------------------------------------------------------------------------------------
def profile_settings(profile: str, **by_profile: dict[str, Any]) -> dict[str, Any]:
    """The settings of `profile` among `by_profile` (one keyword per profile in PROFILES, each a dict with the
    same keys). Raises naming the bad profile, a missing profile or mismatched keys."""
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    missing = [p for p in PROFILES if p not in by_profile]
    unknown = sorted(set(by_profile) - set(PROFILES))
    if missing or unknown:
        raise ValueError(f"settings must be given for exactly the profiles {PROFILES}; "
                         f"missing {missing}, unknown {unknown}")
    keys = {p: set(v) for p, v in by_profile.items()}
    if any(k != keys[PROFILES[0]] for k in keys.values()):
        raise ValueError(f"every profile must set the same keys, got {({p: sorted(k) for p, k in keys.items()})}")
    return dict(by_profile[profile])


def environment(device: str = "cpu") -> dict[str, Any]:
    """What this process runs on: python, torch, the device, threads, mvd_lib version and location, and the
    torchvision guard's status (mvd_lib/torchvision_guard.py)."""
    import torch

    import mvd_lib
    from mvd_lib import devices, torchvision_guard

    dev = devices.resolve_device(device)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "device": str(dev),
        "device_name": devices.describe(dev),
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "mvd_lib": mvd_lib.__version__,
        "mvd_lib_path": str(Path(mvd_lib.__file__).resolve().parent),
        "torchvision_guard": torchvision_guard.install(),  # idempotent: what the first `import torchvision` does
    }


# ----------------------------------------------------------------------------------------------------------
# notebook hygiene
# ----------------------------------------------------------------------------------------------------------
def list_notebooks(folder: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """Every *.ipynb directly in `folder`, in name order (NN_ prefixes give the running order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist")
    return sorted(folder.glob("*.ipynb"))


def _read(path: str | Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def parameters_cells(nb) -> list[int]:
    """Indices of the cells tagged `parameters`."""
    return [i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]


def parameter_problems(source: str) -> list[str]:
    """Problems of a `parameters` cell: each statement must be `NAME: type = literal  # comment` with type one of
    str/int/float/bool (papermill's --help-notebook reads the comment)."""
    problems = []
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [f"parameters cell does not parse: {err}"]
    comment_rows = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comment_rows.add(tok.start[0])
    except tokenize.TokenError as err:
        return [f"parameters cell does not tokenize: {err}"]
    if not tree.body:
        problems.append("parameters cell declares nothing")
    for node in tree.body:
        where = f"line {node.lineno}"
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            problems.append(f"parameters cell {where}: only `NAME: type = literal  # comment` is allowed")
            continue
        name = node.target.id
        if not (isinstance(node.annotation, ast.Name) and node.annotation.id in _LITERAL_TYPES):
            problems.append(f"parameter {name}: type hint must be one of {sorted(_LITERAL_TYPES)}")
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            problems.append(f"parameter {name}: value must be a literal, not an expression")
        else:
            hint = getattr(node.annotation, "id", None)
            expected = {"str": str, "int": int, "float": (float, int), "bool": bool}.get(hint)
            if expected and (not isinstance(value, expected) or (hint != "bool" and isinstance(value, bool))):
                problems.append(f"parameter {name}: value {value!r} is not a {hint}")
        if node.end_lineno not in comment_rows:
            problems.append(f"parameter {name}: needs a trailing `# comment` (papermill --help-notebook shows it)")
    return problems


def check_notebook(path: str | Path) -> list[str]:
    """Every hygiene problem of a committed notebook (empty list: clean). See the module docstring."""
    import nbformat

    path = Path(path)
    problems = []
    if not NAME_PATTERN.match(path.name):
        problems.append(f"file name {path.name!r} is not NN_verb_object.ipynb")
    try:
        nb = _read(path)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any reading/validation failure is the finding
        return problems + [f"not a valid notebook: {type(err).__name__}: {err}"]
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL:
        problems.append(f"kernelspec name is {kernel!r}, must be {KERNEL!r}")
    extra = sorted(set(nb.metadata) - set(_KEPT_NOTEBOOK_METADATA))
    if extra:
        problems.append(f"notebook metadata carries {extra} (widget state / run records); strip it")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has execution count {cell.execution_count}")
            for pattern in _FORBIDDEN_SOURCE:
                if pattern.search(cell.source):
                    problems.append(f"cell {i} changes the environment ({pattern.pattern!r}); install and import "
                                    "through the package instead")
        if cell.get("attachments"):
            problems.append(f"cell {i} has attachments")
        extra = sorted(set(cell.get("metadata", {})) - {"tags"})
        if extra:
            problems.append(f"cell {i} metadata carries {extra}")
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        problems.append("the first cell must be Markdown: goal, paper section, run time, what it reads and writes")
    tagged = parameters_cells(nb)
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells are tagged {PARAMETERS_TAG!r}; exactly one must be")
    else:
        (i,) = tagged
        cell = nb.cells[i]
        if i != 1:
            problems.append(f"the {PARAMETERS_TAG!r} cell is cell {i}; it must follow the opening Markdown cell")
        if cell.cell_type != "code":
            problems.append(f"the {PARAMETERS_TAG!r} cell is not a code cell")
        else:
            problems += parameter_problems(cell.source)
            declared = declared_parameters(cell.source)
            for name in REQUIRED_PARAMETERS:
                if name not in declared:
                    problems.append(f"the {PARAMETERS_TAG!r} cell must declare {name}")
            if declared.get("PROFILE", PROFILES[0]) not in PROFILES:
                problems.append(f"PROFILE default {declared['PROFILE']!r} is not one of {PROFILES}")
    return problems


def declared_parameters(source: str) -> dict[str, Any]:
    """NAME -> default of each literal assignment in a parameters cell's source."""
    out = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            try:
                out[node.target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def strip_notebook(path: str | Path) -> bool:
    """Rewrite `path` without outputs, execution counts, widget state or run metadata, with the `python3`
    kernelspec; cell metadata keeps only tags. Returns True if the file changed."""
    import nbformat

    path = Path(path)
    before = path.read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    nb.metadata = nbformat.NotebookNode({
        "kernelspec": dict(_KERNELSPEC),
        "language_info": {"name": "python"},
    })
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": list(tags)} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


# ----------------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------------
@dataclass
class NotebookResult:
    """The outcome of one notebook run."""

    notebook: str  # file name
    status: str  # "ok" | "failed" | "not run"
    wall_s: float  # wall-clock seconds (0 when not run)
    output: str  # executed notebook path
    error: str = ""  # "cell N: ExcName: message" on failure (N counts the cells of the source notebook from 0)
    new_files: list[str] = field(default_factory=list)  # files the run wrote under figures/ and results/


def _files(folders: list[Path]) -> dict[Path, float]:
    return {p: p.stat().st_mtime for d in folders if d.is_dir() for p in d.rglob("*") if p.is_file()}


@contextlib.contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernels papermill starts) for the body, then restore them."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebooks(profile: str = DEFAULT_PROFILE, notebooks_dir: str | Path = NOTEBOOKS_DIR,
                  out_dir: str | Path = OUTPUT_DIR, overrides: dict[str, Any] | None = None,
                  only: list[str] | None = None, keep_going: bool = False,
                  log: Callable[[str], None] = functools.partial(print, flush=True)) -> list[NotebookResult]:
    """Execute the notebooks of `notebooks_dir` in name order at `profile` (see the module docstring) and return
    one result per notebook. Stops at the first failure unless `keep_going` (the rest are "not run").
    `only`: run the notebooks whose names start with one of these prefixes ("02", "02_mask_tubes")."""
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    notebooks_dir = Path(notebooks_dir).resolve()
    out = Path(out_dir).resolve() / profile
    figures, results = out / "figures", out / "results"
    for d in (out, figures, results):
        d.mkdir(parents=True, exist_ok=True)
    paths = list_notebooks(notebooks_dir)
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
        if not paths:
            raise ValueError(f"no notebook in {notebooks_dir} starts with any of {only}")
    declared = {p: set(pm.inspect_notebook(str(p))) for p in paths}
    overrides = dict(overrides or {})
    unknown = sorted(k for k in overrides if not any(k in d for d in declared.values()))
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are declared by none of the notebooks {[p.name for p in paths]}")
    base = {"PROFILE": profile, "FIGURES_DIR": str(figures), "RESULTS_DIR": str(results), **overrides}

    log(f"running {len(paths)} notebook(s) from {notebooks_dir} at profile {profile!r} -> {out}")
    results_list: list[NotebookResult] = []
    failed = False
    # the kernels import the same mvd_lib as this process; library figures go with the notebooks' figures
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    pythonpath = os.pathsep.join([str(REPO_ROOT), *inherited])
    with _environment(PYTHONPATH=pythonpath, MVD_FIGURES_DIR=str(figures)):
        for path in paths:
            dest = out / path.name
            if failed and not keep_going:
                results_list.append(NotebookResult(path.name, "not run", 0.0, str(dest)))
                continue
            params = {k: v for k, v in base.items() if k in declared[path]}
            before = _files([figures, results])
            log(f"  {path.name}: running")
            start = time.perf_counter()
            status, error = "ok", ""
            try:
                pm.execute_notebook(str(path), str(dest), parameters=params, cwd=str(notebooks_dir),
                                    kernel_name=KERNEL, progress_bar=False, log_output=False)
            except pm.PapermillExecutionError as err:
                cell = err.cell_index - (1 if params else 0)  # papermill counts the cell it injects
                status, error = "failed", f"cell {cell}: {err.ename}: {err.evalue}"
            except Exception as err:  # noqa: BLE001 - kernel died, notebook unreadable, ...: report and go on
                status, error = "failed", f"{type(err).__name__}: {err}"
            wall = time.perf_counter() - start
            after = _files([figures, results])
            new = sorted(str(p.relative_to(out)) for p, m in after.items() if before.get(p) != m)
            results_list.append(NotebookResult(path.name, status, wall, str(dest), error, new))
            log(f"  {path.name}: {status} in {wall:.1f} s" + (f"  ({error})" if error else ""))
            failed = failed or status != "ok"
    write_summary(results_list, out, profile)
    return results_list


def summary_table(results: list[NotebookResult]) -> str:
    """A Markdown table: notebook, status, wall time, files written."""
    lines = ["| notebook | status | wall (s) | figures / results written |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.notebook} | {r.status} | {r.wall_s:.1f} | {len(r.new_files)} |")
    total = sum(r.wall_s for r in results)
    lines.append(f"| total | {sum(r.status == 'ok' for r in results)}/{len(results)} ok | {total:.1f} | "
                 f"{sum(len(r.new_files) for r in results)} |")
    return "\n".join(lines)


def write_summary(results: list[NotebookResult], out: Path, profile: str) -> None:
    """summary.json (every field) and summary.md (the table) in `out`."""
    record = {"profile": profile, "environment": environment("cpu"), "notebooks": [asdict(r) for r in results]}
    (out / "summary.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(f"Notebooks at profile `{profile}`\n\n{summary_table(results)}\n",
                                    encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mvd_lib.notebook_runner", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help="how much work (default quick)")
    ap.add_argument("--out", default=str(OUTPUT_DIR), help="output root (default outputs/notebooks)")
    ap.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), help="notebook folder (default notebooks/)")
    ap.add_argument("--only", nargs="+", metavar="PREFIX", help="run only notebooks starting with these, e.g. 02")
    ap.add_argument("--device", help="DEVICE parameter, e.g. cpu, cuda, auto")
    ap.add_argument("--seed", type=int, help="SEED parameter")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="any other parameter, the value read as a Python literal (else a string)")
    ap.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    ap.add_argument("--strip", action="store_true", help="strip outputs/counts/widget state in place, then exit")
    ap.add_argument("--check", action="store_true", help="print hygiene problems of every notebook, then exit")
    args = ap.parse_args(argv)

    if args.strip or args.check:
        bad = 0
        for path in list_notebooks(args.notebooks):
            if args.strip and strip_notebook(path):
                print(f"stripped {path}")
            for problem in check_notebook(path):
                print(f"{path.name}: {problem}")
                bad += 1
        return 1 if bad else 0

    overrides: dict[str, Any] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            ap.error(f"--set takes NAME=VALUE, got {item!r}")
        overrides[name] = _parse_value(value)
    if args.device is not None:
        overrides["DEVICE"] = args.device
    if args.seed is not None:
        overrides["SEED"] = args.seed

    env = environment(args.device or "cpu")
    print(f"python {env['python']}, torch {env['torch']}, {env['device_name']}, mvd_lib {env['mvd_lib']} "
          f"({env['mvd_lib_path']})")
    try:
        results = run_notebooks(args.profile, args.notebooks, args.out, overrides, args.only, args.keep_going)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve() / args.profile
    print()
    print(summary_table(results))
    print()
    print(f"executed notebooks: {out}/")
    print(f"figures:            {out / 'figures'}/")
    print(f"result tables:      {out / 'results'}/")
    print(f"summary:            {out / 'summary.md'}, {out / 'summary.json'}")
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"FAILED: {r.notebook}: {r.error}\n        see {r.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
