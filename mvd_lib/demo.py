"""`python -m mvd_lib demo`: the whole MVD pipeline once, end to end, through the run API (runner.py).

1. pretrain an image teacher (MAE on stills) and a video teacher (VideoMAE on clips);
2. distil a student from both (MVD, masked feature prediction at 90% tube masking);
3. probe the student's frozen features on both tasks of the synthetic benchmark, beside a random encoder;
4. finetune it on the appearance task and evaluate it.

The `smoke` profile takes seconds; `--profile quick` or `laptop` run real budgets on a CPU. Every run is
recorded under the runs folder and reused on the next call.
"""
from __future__ import annotations

import time
from pathlib import Path

from mvd_lib import runner


def run_demo(profile: str = "smoke", runs: str | Path = "runs", progress: bool = True) -> dict:
    """Run the pipeline in `profile`; returns the headline numbers."""
    t0 = time.perf_counter()
    kw = dict(root=runs, progress=progress)
    p = runner.profile(profile)
    print(f"== MVD demo, profile {profile}; runs under {runs}/")
    if profile == "smoke":
        print("   (smoke checks the plumbing in seconds: its accuracies are near chance and mean nothing;\n"
              "    `python -m mvd_lib demo --profile quick` trains real, small models)")
    image_teacher = runner.run("pretrain-image", p, **kw)
    video_teacher = runner.run("pretrain-video", p, **kw)
    for run in (image_teacher, video_teacher):
        print(f"  {run.verb:<15} final pixel loss {run.metrics['final_loss']:.4f}  ({run.folder})")
    student = runner.run("distill", p, image_teacher=image_teacher, video_teacher=video_teacher, **kw)
    curve = student.curves.loss
    print(f"  distill         loss {curve[0]:.4f} -> {curve[-1]:.4f} over {len(curve)} steps  ({student.folder})")

    table = {}
    print("  linear probes, top-1 % on the test split (time-ordered pooling):")
    print(f"    {'encoder':<8} {'appearance':>10} {'motion':>8}")
    for name, encoder in (("student", student), ("random", "random")):
        linear = runner.run("probe", p, encoder=encoder, **kw).metrics["probe"]["linear"]
        table[name] = {t: linear[t]["time"]["top1"] for t in ("appearance", "motion")}
        print(f"    {name:<8} {table[name]['appearance']:>10.1f} {table[name]['motion']:>8.1f}")

    finetuned = runner.run("finetune", p, "appearance", init=student, **kw)
    test = finetuned.metrics["test"]
    print(f"  finetune (appearance) test top-1 {test['top1']:.1f}% on {test['num_videos']} clips  ({finetuned.folder})")
    print(f"== done in {time.perf_counter() - t0:.0f} s")
    return {"probe": table, "finetune_top1": test["top1"], "distill_loss": [curve[0], curve[-1]]}
