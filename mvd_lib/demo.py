"""`python -m mvd_lib demo` (`make run`): the whole MVD pipeline once, end to end, on CPU.

1. pretrain an image teacher (MAE on stills) and a video teacher (VideoMAE on clips);
2. distil a student from both (MVD, masked feature prediction at 90% tube masking);
3. probe the student's frozen features on both tasks of the synthetic benchmark, beside a random encoder;
4. reload the student's checkpoint into a finetuning classifier with the strict loader and show its report;
5. finetune it on the appearance task and evaluate it.

The `smoke` scale takes seconds; `--scale laptop` runs the laptop presets (hours on a 2-core CPU).
Every run is recorded under the runs folder and reused on the next call.
"""
from __future__ import annotations

import time
from pathlib import Path

from mvd_lib.checkpoint import load_checkpoint
from mvd_lib.classifier import VideoClassifier
from mvd_lib.recipes import preset
from mvd_lib.workflow import run_preset


def run_demo(scale: str = "smoke", runs: str | Path = "runs", progress: bool = True) -> dict:
    """Run the pipeline at `scale` ("smoke" or "laptop"); returns the headline numbers."""
    t0 = time.perf_counter()
    kw = dict(root=Path(runs), progress=progress)
    print(f"== MVD demo at {scale} scale; runs under {runs}/")
    if scale == "smoke":
        print("   (smoke scale checks the plumbing in seconds: its accuracies are at chance and mean nothing;\n"
              "    `python -m mvd_lib demo --scale laptop` runs the laptop presets)")
    teachers = {v: run_preset(v, scale, **kw) for v in ("pretrain-image", "pretrain-video")}
    for verb, run in teachers.items():
        print(f"  {verb:<15} final pixel loss {run.metrics['final_loss']:.4f}  ({run.dir})")
    student = run_preset("distill", scale, **kw)
    curve = student.metrics["loss_curve"]
    print(f"  distill         loss {curve[0]:.4f} -> {curve[-1]:.4f} over {len(curve)} steps  ({student.dir})")

    probes = {name: run_preset("probe", scale, [f"encoder={ref}"], **kw)
              for name, ref in (("student", f"distill:{scale}"), ("random", "random"))}
    print("  linear probes, top-1 % (time-ordered pooling):")
    print(f"    {'encoder':<8} {'appearance':>10} {'motion':>8}")
    table = {}
    for name, run in probes.items():
        p = run.metrics["probe"]
        table[name] = {t: p[t]["time"]["top1"] for t in ("appearance", "motion")}
        print(f"    {name:<8} {table[name]['appearance']:>10.1f} {table[name]['motion']:>8.1f}")

    cfg = preset("finetune", scale)
    classifier = VideoClassifier(cfg.model.vit(), num_classes=cfg.data.synthetic.num_appearance)
    report = load_checkpoint(classifier, student.model_path)
    print("  strict load of the student into a classifier:")
    print("    " + str(report).replace("\n", "\n    "))

    finetuned = run_preset("finetune", scale, **kw)
    test = finetuned.metrics["test"]
    print(f"  finetune (appearance) test top-1 {test['top1']:.1f}% on {test['num_videos']} clips  ({finetuned.dir})")
    print(f"== done in {time.perf_counter() - t0:.0f} s")
    return {"probe": table, "finetune_top1": test["top1"], "distill_loss": [curve[0], curve[-1]]}
