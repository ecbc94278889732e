"""Search for a benchmark design whose teachers pass the teacher-quality gate (mvd_lib.gate).

A design is a profile plus profile-level overrides (benchmark settings, clip geometry, teacher budgets). For
each named design this script trains (or loads) both teachers with the run machinery (`runner.run`, so a
killed search resumes where it stopped), runs the gate on the `val` split against random-init floors of the
same architectures, and appends the gate table to a JSON-lines log. `--report` prints the log as markdown
(docs/benchmark_search.md quotes it). Choose on `val`; `--split test` is for the chosen design, once.

    python tools/benchmark_search.py flat_p8               # train, gate on val, log
    python tools/benchmark_search.py --list
    python tools/benchmark_search.py --report
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mvd_lib  # noqa: F401  (installs the torchvision guard)
from mvd_lib import gate, runner
from mvd_lib.profiles import Profile, profile

LOG = Path("docs/benchmark_search.jsonl")  # every design tried, shipped with docs/benchmark_search.md

# The benchmark's rendering settings that a clean design turns off: no per-pixel noise and no smooth
# background shading. VideoMAE's target normalizes each tubelet per channel, so a patch of smooth shading
# becomes a unit-variance ramp and per-pixel noise becomes unit-variance noise: on the default benchmark almost
# every target is one of those, and VideoMAE's loss stays at ~0.99 (predicting the mean).
_CLEAN = {"data.synthetic.noise": 0.0, "data.synthetic.bg_amplitude": 0.0}
_EASY_APPEARANCE = {"data.synthetic.heldout_glyphs": False, "data.synthetic.num_appearance": 10}
_P8 = {"model.patch_size": 8}  # 2x8x8 tubelets: a 8x4x4 grid, 128 tokens, ~5x cheaper steps than 2x4x4
_TEACHERS = {  # the budgets of the earlier (object_p8, scene_*) designs
    "data.num_images": 40000, "image_optim.epochs": 8, "image_optim.warmup_epochs": 1,
    "image_optim.lr": 1e-3, "image_optim.min_lr": 1e-5,
    "data.num_clips": 2000, "video_optim.epochs": 20, "video_optim.warmup_epochs": 2,
    "video_optim.lr": 4e-3, "video_optim.min_lr": 1e-5,
}


@dataclass(frozen=True)
class Design:
    """A benchmark design: a base profile and profile-level overrides."""

    base: str = "laptop"
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    num_train: int = 3000  # gate probes: training clips
    num_eval: int = 2000  # gate probes: evaluation clips

    def profile(self) -> Profile:
        return profile(self.base, dict(self.overrides))


DESIGNS_PAN = {**_P8, **_CLEAN, **_TEACHERS, "data.synthetic.num_appearance": 10,
               "data.synthetic.motions": ("right", "left", "down", "up", "orbit_cw", "orbit_ccw"),
               "data.synthetic.layout": "scene", "data.synthetic.moving": "scene"}
DESIGNS: dict[str, Design] = {
    "smoke": Design("smoke", {**_CLEAN, **_EASY_APPEARANCE}, "the search machinery at smoke size",
                    num_train=64, num_eval=64),
    "flat_p8": Design(overrides={**_P8, **_CLEAN, **_EASY_APPEARANCE, **_TEACHERS},
                      note="object layout, no noise, no background shading, 10 digit classes (no held-out glyph "
                           "pool), 2x8x8 tubelets"),
    "flat_p8_long": Design(overrides={**_P8, **_CLEAN, **_EASY_APPEARANCE, **_TEACHERS,
                                      "video_optim.epochs": 60, "video_optim.warmup_epochs": 4},
                           note="flat_p8 with three times the video teacher's budget"),
    "scene_pan": Design(overrides={**_P8, **_CLEAN, **_TEACHERS, "data.synthetic.num_appearance": 10,
                                   "data.synthetic.motions": ("right", "left", "down", "up", "orbit_cw", "orbit_ccw"),
                                   "data.synthetic.layout": "scene", "data.synthetic.moving": "scene"},
                        note="scene layout: 10 static pattern classes carry appearance; the whole scene pans or "
                             "circles (6 path motions, like a moving camera); no noise, no shading; 2x8x8 tubelets"),
    "scene_pan_raw": Design(overrides={**_P8, **_CLEAN, **_TEACHERS, "data.synthetic.num_appearance": 10,
                                       "data.synthetic.motions": ("right", "left", "down", "up", "orbit_cw",
                                                                  "orbit_ccw"),
                                       "data.synthetic.layout": "scene", "data.synthetic.moving": "scene",
                                       "video_norm_pix_loss": False},
                            note="scene_pan with the video teacher reconstructing raw pixels (VideoMAE's "
                                 "--normlize_target off): its per-channel normalized targets stayed at loss 0.99"),
    "scene_pan_m75": Design(overrides={**DESIGNS_PAN, "video_mask_ratio": 0.75, "video_optim.epochs": 40},
                            note="scene_pan with video tube masking 0.75 (4 of 16 positions visible, not 2) and "
                                 "twice the video budget (1240 steps)"),
    "scene_pan_long": Design(overrides={**DESIGNS_PAN, "video_optim.epochs": 60, "video_optim.warmup_epochs": 4},
                             note="scene_pan with three times the video budget (1860 steps)"),
    "scene_pan_m75_lr": Design(overrides={**DESIGNS_PAN, "video_mask_ratio": 0.75, "video_optim.lr": 1e-3,
                                          "video_optim.epochs": 40, "video_optim.warmup_epochs": 4},
                               note="scene_pan_m75 with the video teacher at lr 1e-3 instead of 4e-3 (1240 steps): "
                                    "at quick, 4e-3 left it below its random floor on motion and 1e-3 above it"),
    "scene_clean": Design(overrides={**_P8, **_CLEAN, **_TEACHERS, "data.synthetic.num_appearance": 10,
                                     "data.synthetic.motions": ("right", "left", "down", "up", "orbit_cw",
                                                                "orbit_ccw"),
                                     "data.synthetic.layout": "scene"},
                          note="scene layout as scene_a (static pattern classes, a small mover carries 6 path "
                               "motions), without noise or shading; 2x8x8 tubelets"),
}


def log_line(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_design(name: str, root: Path, log: Path, split: str = "val") -> dict[str, Any]:
    design = DESIGNS[name]
    p = design.profile()
    teachers: dict[str, Any] = {}
    runs = {}
    for key, verb in (("image", "pretrain-image"), ("video", "pretrain-video")):
        log_line(f"design {name}: {verb}")
        r = runner.run(verb, p, root=root, progress=False)
        runs[key] = r
        teachers[key] = {"run": str(r.folder), "wall_time_s": r.metrics.get("wall_time_s"),
                         "steps": r.metrics.get("steps"), "final_loss": r.metrics.get("final_loss")}
        log_line(f"{verb} {r.folder.name}: {teachers[key]}")
    start = time.perf_counter()
    result = gate.run_gate(p, split=split, num_train=design.num_train, num_eval=design.num_eval, root=str(root),
                           progress=False, image_teacher=runs["image"], video_teacher=runs["video"], log=log_line)
    entry = {"design": name, "split": split, "passed": result.passed, "time": time.strftime("%Y-%m-%d %H:%M"),
             "base": design.base, "overrides": design.overrides, "note": design.note, "teachers": teachers,
             "gate_wall_time_s": round(time.perf_counter() - start, 1), "threads": os.environ.get("OMP_NUM_THREADS"),
             "host": platform.node(), "gate": result.to_dict(), "table": result.markdown()}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(result.markdown(), flush=True)
    return entry


def report(log: Path) -> str:
    """Markdown of every logged gate run: design, settings, teacher wall times, the gate table."""
    out = []
    for line in log.read_text().splitlines():
        e = json.loads(line)
        settings = e.get("overrides") or e.get("settings")
        out.append(f"### {e['design']} ({e['split']}, {e['time']}): {'PASS' if e.get('passed') else 'FAIL'}\n")
        out.append(f"{e.get('note') or (settings or {}).get('note', '')}\n")
        out.append(f"settings: `{json.dumps(settings, sort_keys=True)}`\n")
        for key, t in (e.get("teachers") or {}).items():
            out.append(f"- {key} teacher: {t.get('steps')} steps, {t.get('wall_time_s') or 0:.0f} s, "
                       f"final loss {t.get('final_loss') or float('nan'):.3f}")
        out.append("")
        out.append(e.get("table") or json.dumps(e.get("motion_precheck")))
        out.append("")
    return "\n".join(out)


def summary(log: Path) -> str:
    """One row per logged gate run: time-pooled accuracies of the four encoders on both tasks, checks passed."""
    head = ("| design | split | image loss | video loss | appearance: image / video / random image | "
            "motion: video / image / random video | checks passed |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for line in log.read_text().splitlines():
        e = json.loads(line)
        teachers = e.get("teachers") or {"video": e.get("video_teacher", {})}
        loss = {k: (f"{t['final_loss']:.3f}" if t.get("final_loss") is not None else "-")
                for k, t in teachers.items()}
        rows = (e.get("gate") or {}).get("rows")
        if rows:
            acc = lambda enc, task: rows[enc][task]["time"]["acc"]  # noqa: E731
            app = " / ".join(f"{acc(x, 'appearance'):.1f}" for x in ("image_teacher", "video_teacher", "random_image"))
            mot = " / ".join(f"{acc(x, 'motion'):.1f}" for x in ("video_teacher", "image_teacher", "random_video"))
            checks = e["gate"]["checks"]
            passed = f"{sum(c['passed'] for c in checks)} of {len(checks)}"
        else:  # stopped after the motion pre-check
            pre = e.get("motion_precheck", {})
            app = "-"
            mot = f"{pre.get('video_teacher', float('nan')):.1f} / - / {pre.get('random_video', float('nan')):.1f}"
            passed = "stopped: video teacher not above its floor"
        lines.append(f"| {e['design']} | {e['split']} | {loss.get('image', '-')} | {loss.get('video', '-')} | "
                     f"{app} | {mot} | {passed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("designs", nargs="*")
    parser.add_argument("--root", default="runs/search")
    parser.add_argument("--log", default=str(LOG))
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--report", action="store_true", help="every logged gate table, as markdown")
    parser.add_argument("--summary", action="store_true", help="one row per logged design, as markdown")
    args = parser.parse_args(argv)
    if args.list:
        for name, d in DESIGNS.items():
            print(f"{name:16s} {d.base:8s} {d.note}")
        return 0
    if args.summary:
        print(summary(Path(args.log)))
        return 0
    if args.report:
        print(report(Path(args.log)))
        return 0
    unknown = [d for d in args.designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s) {unknown}; choose from {sorted(DESIGNS)}")
    for name in args.designs:
        run_design(name, Path(args.root), Path(args.log), args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
