"""Search for a finetuning budget on the laptop benchmark, scored on the val split.

At the laptop profile's first recipe (30 epochs, 930 steps) a random-init encoder finetuned as well as the video
teacher on both tasks, so finetuning could not tell pretraining from none there; the search chose 10 epochs (now
the profile's recipe). A setting is a profile plus profile-level overrides of the finetuning recipe
(`finetune_optim.*`). For each named setting this script finetunes (or loads) each encoder on both tasks with the
run machinery (`runner.run` with `split=val`, so a killed search resumes where it stopped and no test clip is read)
and appends one line per finetune to a JSON-lines log. `--report` prints the log as markdown
(docs/finetune_search.md quotes it). Choose on `val`; the claims are reported on `test`.

    python tools/finetune_search.py epochs_10             # finetune, score on val, log
    python tools/finetune_search.py --list
    python tools/finetune_search.py --report
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import search_cli

import mvd_lib  # noqa: F401  (installs the torchvision guard)
from mvd_lib import claims, runner
from mvd_lib.profiles import profile

LOG = Path("docs/finetune_search.jsonl")  # every setting tried, shipped with docs/finetune_search.md
SHORT = {"teacher": "video teacher", "random": "random init", "img": "image-teacher student",
         "vid": "video-teacher student", "co": "co-teaching student"}
TASKS = ("appearance", "motion")

# budgets of 31 steps an epoch (the laptop's 2000 clips, 64 a step), each with a warmup of about a sixth (overrides
# apply in order, each checked: a warmup longer than the new epochs is shortened first)
SETTINGS: dict[str, dict[str, Any]] = {
    "epochs_30": {"finetune_optim.epochs": 30, "finetune_optim.warmup_epochs": 5},  # the first laptop recipe (930)
    "epochs_10": {"finetune_optim.epochs": 10, "finetune_optim.warmup_epochs": 2},  # 310 steps (chosen: the profile's)
    "epochs_5": {"finetune_optim.epochs": 5, "finetune_optim.warmup_epochs": 1},  # 155 steps
    "epochs_3": {"finetune_optim.warmup_epochs": 1, "finetune_optim.epochs": 3},  # 93 steps
}


def init_reference(encoder: str) -> str:
    """The finetune's `init` reference for an encoder named as the claims' arms are (claims.ARMS)."""
    arm = claims.ARMS[encoder]
    return arm.verb if arm.verb == "random" or not arm.variant else f"{arm.verb}:{arm.variant}"


def run_setting(name: str, seed: int, root: Path, log: Path, base: str = "laptop",
                encoders: tuple[str, ...] = ("video teacher", "random init"),
                tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
    """Finetune every encoder on every task at one setting, score each on val, and log one line per finetune."""
    overrides = SETTINGS[name]
    p = profile(base, dict(overrides))
    done = {(r["setting"], r["base"], r["seed"], r["encoder"], r["task"]) for r in search_cli.log_rows(log)}
    entries = []
    for encoder in encoders:
        for task in tasks:
            if (name, base, seed, encoder, task) in done:
                continue
            t0 = time.perf_counter()
            ft = runner.run("finetune", p, task, init=init_reference(encoder), split="val", seed=seed, root=root)
            val = ft.metrics["val"]
            entry = {"setting": name, "base": base, "overrides": overrides, "seed": seed, "encoder": encoder,
                     "task": task, "steps": ft.metrics.get("steps"), "final_loss": ft.metrics.get("final_loss"),
                     "val_top1": val["top1"], "num_val": val["num_videos"], "run": ft.hash,
                     "seconds": round(time.perf_counter() - t0, 1)}
            entries.append(entry)
            search_cli.append(log, entry)
            print(f"{name} {encoder} {task}: val top-1 {val['top1']:.1f}% (final loss {entry['final_loss']:.3f}, "
                  f"{entry['steps']} steps)", flush=True)
    return entries


def report(log: Path) -> str:
    """The log as one markdown table: val top-1 (final training loss) per setting, encoder and task."""
    rows = search_cli.log_rows(log)
    out = ["| setting | base | seed | steps | encoder | " + " | ".join(TASKS) + " |", "|---|---|---|---|---|"
           + "---|" * len(TASKS)]
    cells: dict[tuple, dict[str, str]] = {}
    steps: dict[tuple, int] = {}
    for r in rows:
        key = (r["setting"], r["base"], r["seed"], r["encoder"])
        cells.setdefault(key, {})[r["task"]] = f"{r['val_top1']:.1f} ({r['final_loss']:.2f})"
        steps[key] = r["steps"]
    for key, by_task in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][2], steps[kv[0]])):  # by budget
        setting, base, seed, encoder = key
        out.append(f"| {setting} | {base} | {seed} | {steps[key]} | {encoder} | "
                   + " | ".join(by_task.get(t, "-") for t in TASKS) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--base", default="laptop", help="profile the settings override (default laptop)")
        ap.add_argument("--encoders", default="teacher,random",
                        help=f"encoders to finetune: some of {', '.join(SHORT)} (default teacher,random)")
        ap.add_argument("--tasks", default=",".join(TASKS), help="tasks (default appearance,motion)")

    args = search_cli.parse(__doc__, SETTINGS, LOG, report, options, argv)
    if args is None:
        return 0
    encoders = search_cli.pick(args, "encoders", list(SHORT))
    tasks = search_cli.pick(args, "tasks", TASKS)
    for name in args.settings:
        run_setting(name, args.seed, Path(args.root), Path(args.log), base=args.base,
                    encoders=tuple(SHORT[e] for e in encoders), tasks=tuple(tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
