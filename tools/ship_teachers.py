"""Ship a profile's two teachers under artifacts/, with their hashes, commands, gate rows and reference curves.

    python tools/ship_teachers.py quick laptop      # train (or load) with in-training probes, gate on test, ship

For each profile: both teachers are trained or loaded from runs/ (with an in-training linear probe on the val
split every epoch, so the curves hold probe accuracies; the probe is not part of a run's hash), the gate runs
once on the test split, each teacher's folder is copied to artifacts/<verb>/<preset>-<hash>/ (without
checkpoint-last.pth), and artifacts/MANIFEST.json records for each: the sha256 and size of model.pth, the
command that reproduces it, its wall time and its gate row. artifacts/curves/<profile>.json holds the
reference curves (loss and in-training probe accuracy per step) and figures/reference_curves_<profile>.png
draws them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import mvd_lib  # noqa: F401  (installs the torchvision guard)
from mvd_lib import gate, runner
from mvd_lib.runs import ARTIFACTS, Run

MANIFEST = ARTIFACTS / "MANIFEST.json"
TEACHERS = {"image": "pretrain-image", "video": "pretrain-video"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def curves_of(run: Run) -> dict:
    """The reference curves of a run: loss, lr and in-training probe accuracies against the optimizer step."""
    c = run.curves
    return {"run": run.ref, "steps_per_epoch": c.steps_per_epoch, "step": list(map(int, c.step)),
            "loss": list(map(float, c.loss)),
            "probes": {k: {"step": list(map(int, v[0])), "top1": list(map(float, v[1]))} for k, v in c.probes.items()}}


def ship(profile_name: str, root: Path, figures: Path) -> dict:
    p = runner.profile(profile_name)
    runs = {key: runner.run(verb, p, root=root, probe_every=1, progress=False) for key, verb in TEACHERS.items()}
    start = time.perf_counter()
    result = gate.run_gate(p, split="test", root=root, progress=False, image_teacher=runs["image"],
                           video_teacher=runs["video"])
    print(result.markdown(), flush=True)
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for key, run in runs.items():
        dst = ARTIFACTS / run.verb / run.folder.name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(run.folder, dst, ignore=shutil.ignore_patterns("checkpoint-*.pth", "*.lock", "targets*"))
        model = dst / "model.pth"
        row = {task: {r: {"acc": s.acc, "se": s.se} for r, s in by_r.items()}
               for task, by_r in result.rows[f"{key}_teacher"].items()}
        manifest[f"{run.verb}/{run.folder.name}"] = {
            "profile": profile_name, "sha256": sha256(model), "bytes": model.stat().st_size,
            "command": (run.folder / "command.txt").read_text().strip(),
            "wall_time_s": run.metrics.get("wall_time_s"), "device": run.metrics.get("device"),
            "gate_row": row, "gate_split": result.split, "gate_passed": result.passed,
        }
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    curves = {key: curves_of(run) for key, run in runs.items()}
    out = ARTIFACTS / "curves" / f"{profile_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"profile": profile_name, "gate": result.to_dict(), "gate_table": result.markdown(),
                               "gate_wall_time_s": time.perf_counter() - start, "curves": curves}, indent=1) + "\n")
    draw(profile_name, curves, figures / f"reference_curves_{profile_name}.png")
    return manifest


def draw(profile_name: str, curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6), constrained_layout=True)
    for col, (key, c) in enumerate(curves.items()):
        axes[0, col].plot(c["step"], c["loss"], lw=0.8)
        axes[0, col].set(title=f"{profile_name}: {key} teacher ({TEACHERS[key]})", xlabel="step", ylabel="loss")
        for name, pr in c["probes"].items():
            axes[1, col].plot(pr["step"], pr["top1"], marker="o", label=name)
        axes[1, col].set(xlabel="step", ylabel="val top-1 (%)", title="in-training linear probe (time pooling)")
        axes[1, col].legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--figures", default="figures")
    args = parser.parse_args(argv)
    for name in args.profiles:
        ship(name, Path(args.root), Path(args.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
