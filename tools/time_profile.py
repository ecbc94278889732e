"""Time a profile's Table 1 chain from scratch: both teachers, the three Table 1 students and Figure 3.

    python tools/time_profile.py quick --root /tmp/quick-runs     # an empty runs folder: everything trains
    python tools/time_profile.py quick --root /tmp/quick-runs --lanes 2   # two runs at a time, one thread each

Prints each run's training wall time from its record, the time of the Figure 3 measurement (cross-frame
similarity of the teachers and students on 256 val clips) and the total elapsed time, and writes them as JSON
(--out). Shipped teachers under artifacts/ are adopted unless --no-artifacts, which times them too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mvd_lib  # noqa: F401  (installs the torchvision guard)
import numpy as np
from mvd_lib import analysis, runner
from mvd_lib.lanes import Job, run_jobs

CHAIN = (("pretrain-image", ""), ("pretrain-video", ""), ("distill", ""), ("distill", "img"), ("distill", "vid"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--root", required=True, help="runs folder (empty, to time everything)")
    parser.add_argument("--no-artifacts", action="store_true", help="train the teachers even if they are shipped")
    parser.add_argument("--lanes", type=int, default=1,
                        help="runs trained at once, one process each (default 1: one after another)")
    parser.add_argument("--out", help="write the times as JSON here")
    args = parser.parse_args(argv)
    p = runner.profile(args.profile)
    artifacts = None  # the repository's shipped runs
    if args.no_artifacts:  # an empty artifacts folder: nothing is adopted
        artifacts = Path(args.root) / "no-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [Job(f"{verb}{':' + variant if variant else ''}", verb, p, variant) for verb, variant in CHAIN]
    runs = run_jobs(jobs, lanes=args.lanes, root=args.root, artifacts=artifacts)
    times: dict[str, float] = {}
    for key, run in runs.items():
        times[key] = round(run.metrics.get("wall_time_s", 0.0), 1)
        print(f"{key:22s} {times[key]:7.1f} s training (record; {run.metrics.get('device', '')})", flush=True)
    t0 = time.perf_counter()
    clips = runner.clips(p, "val")
    figure3 = {key: (analysis.cross_frame_similarity(run.teacher(), clips, "target", max_clips=256)
                     if key.startswith("pretrain") else  # teachers: the targets distillation regresses
                     analysis.cross_frame_similarity(run.encoder(), clips, max_clips=256))
               for key, run in runs.items()}
    times["figure3"] = round(time.perf_counter() - t0, 1)
    times["total"] = round(time.perf_counter() - start, 1)
    print(f"{'figure 3':22s} {times['figure3']:7.1f} s")
    print(f"{'total':22s} {times['total']:7.1f} s ({times['total'] / 60:.1f} min)")
    for key, sim in figure3.items():
        off = ~np.eye(len(sim.centred), dtype=bool)  # pairs of different time slots
        print(f"  slot-centred cross-frame similarity, {key}: {np.asarray(sim.centred)[off].mean():.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"profile": p.name, "lanes": args.lanes, "seconds": times}, indent=1)
                                  + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
