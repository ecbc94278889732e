"""Command line: `python -m mvd_lib <verb> ...` (also installed as `mvd`).

Verbs:
  models           table of model presets: parameters, tokens per clip, visible tokens, GFLOPs per clip
  presets          the named run presets of every run type
  bench            time one step of a run type, print one JSON line
  demo             a short end-to-end run on CPU
  pretrain-image   MAE pretraining of an image teacher
  pretrain-video   VideoMAE pretraining of a video teacher
  distill          MVD distillation of a student from teachers
  finetune         supervised finetuning, then evaluation on the test split
  probe            linear probes on frozen features
  evaluate         multi-view evaluation of a finetuned model

Run types take `--preset NAME [--set key=value ...] [--runs DIR]`; a run is recorded under
runs/VERB/NAME-HASH/ and never repeated once finished. Under torchrun they train with DDP.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from mvd_lib.config import PRESETS
from mvd_lib.flops import encoder_macs
from mvd_lib.masking import masked_count

RUN_VERBS = ("pretrain-image", "pretrain-video", "distill", "finetune", "probe", "evaluate")
RUN_HELP = {
    "pretrain-image": "MAE pretraining of an image teacher on stills",
    "pretrain-video": "VideoMAE pretraining of a video teacher on clips",
    "distill": "MVD: distil a student from frozen image/video teachers (or EMA / per-token variants)",
    "finetune": "finetune a pretrained encoder with the reference recipe, then evaluate on the test split",
    "probe": "linear probes on frozen features (mean and time-ordered pooling, both label sets)",
    "evaluate": "multi-view evaluation of a finetuned classifier",
}

# The paper's model sizes and per-view GFLOPs (Tables 3-5), printed beside ours.
PAPER_SIZES = {"vit_small": (22, 57), "vit_base": (87, 180), "vit_large": (305, 597), "vit_huge": (633, 1192)}


def encoder_params(cfg) -> int:
    """Trainable parameters of the finetuning encoder without its head (built on the meta device: no memory)."""
    from mvd_lib.classifier import VideoClassifier

    with torch.device("meta"):
        model = VideoClassifier(cfg, num_classes=1, seed=None)
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head."))


def models_table(mask_ratio: float = 0.9) -> str:
    """The preset table as text."""
    header = (f"{'preset':<10} {'width':>5} {'depth':>5} {'heads':>5} {'params(M)':>9} {'paper':>6} "
              f"{'clip':>10} {'tokens':>6} {'visible':>7} {'GFLOPs':>8} {'paper':>6}")
    lines = [header, "-" * len(header)]
    for name, cfg in PRESETS.items():
        visible = cfg.num_tokens - masked_count(cfg.grid, mask_ratio)
        gflops = encoder_macs(cfg) / 1e9
        p_params, p_flops = PAPER_SIZES.get(name, ("-", "-"))
        lines.append(
            f"{name:<10} {cfg.width:>5} {cfg.depth:>5} {cfg.heads:>5} {encoder_params(cfg) / 1e6:>9.2f} {p_params!s:>6} "
            f"{f'{cfg.num_frames}x{cfg.img_size}x{cfg.img_size}':>10} {cfg.num_tokens:>6} {visible:>7} "
            f"{gflops:>8.2f} {p_flops!s:>6}"
        )
    lines.append(f"params: finetuning encoder without head. visible: tube mask ratio {mask_ratio}. GFLOPs: one "
                 "forward pass of the finetuning encoder per clip, counted as multiply-adds as in the paper "
                 "(fvcore convention); 'paper': MVD Tables 3-5.")
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    print(models_table(args.mask_ratio))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mvd_lib.bench import bench_distill, bench_run
    from mvd_lib.runs import ConfigError

    if args.run == "distill-step" and args.preset not in PRESETS:
        print(f"error: unknown model preset {args.preset!r}; choose one of {sorted(PRESETS)} "
              "(or give --run VERB with a run preset)", file=sys.stderr)
        return 2
    try:
        result = _bench(args, bench_distill, bench_run)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.json())
    return 0


def _bench(args: argparse.Namespace, bench_distill, bench_run):
    if args.run == "distill-step":
        return bench_distill(
            args.preset, device=args.device, batch=args.batch, teacher=args.teacher, dtype=args.dtype,
            attention=args.attention, steps=args.steps, warmup=args.warmup, checkpointing=args.checkpointing,
        )
    return bench_run(args.run, args.preset, device=args.device, batch=args.batch, dtype=args.dtype,
                     attention=args.attention, steps=args.steps, warmup=args.warmup, overrides=args.set)


def cmd_presets(args: argparse.Namespace) -> int:
    from mvd_lib.recipes import PRESETS_BY_VERB

    for verb, table in PRESETS_BY_VERB.items():
        if args.verb_filter and verb != args.verb_filter:
            continue
        print(f"{verb}: {', '.join(sorted(table))}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Any run type: train (or load) the preset with overrides, then print where it is and what it measured."""
    from mvd_lib import distributed
    from mvd_lib.recipes import preset, validate
    from mvd_lib.runs import ConfigError, command_line
    from mvd_lib.workflow import Session, device_and_dtype, train_or_load

    if args.trust_checkpoint:
        args.set = [*args.set, "trust_checkpoints=true"]
    try:
        cfg = preset(args.verb, args.preset, args.set)
        validate(args.verb, cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device, _ = device_and_dtype(cfg)
    info = distributed.init_from_env(device.type)
    session = Session(root=Path(args.runs), force=args.force, progress=not args.no_progress,
                      stop_after_steps=args.stop_after_steps, dist=info,
                      command=command_line(args.verb, args.preset, args.set))
    try:
        run = train_or_load(args.verb, cfg, session=session)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if info.is_main:
        print(summary(run))
    return 0


def summary(run) -> str:
    """A few lines about a run: folder, status and its headline numbers."""
    m = run.metrics
    lines = [f"{run.verb} {run.name}: {m.get('status', 'unknown')} -> {run.dir}"]
    if m.get("waiting_for"):
        lines.append(f"  not started: waiting for {', '.join(m['waiting_for'])} (run the same command again)")
    if m.get("final_loss") is not None:
        lines.append(f"  final loss {m['final_loss']:.4f} after {m.get('steps')} steps "
                     f"({m.get('wall_time_s', 0):.0f} s, {m.get('train_flops', 0) / 1e12:.2f} TFLOP, {m.get('device')})")
    if "test" in m:
        t = m["test"]
        lines.append(f"  test top-1 {t['top1']:.2f}%" + (f", top-5 {t['top5']:.2f}%" if t.get("top5") is not None else "")
                     + f" on {t['num_videos']} videos ({t['num_views']} views)")
    for task, by_pool in m.get("probe", {}).items():
        for pool, r in by_pool.items():
            lines.append(f"  probe {task:<10} {pool:<4} top-1 {r['top1']:.2f}% (C={r['c']:g}, chance {r['chance']:.1f}%)")
    for rec in m.get("epoch_metrics", [])[-1:]:
        extra = {k: v for k, v in rec.items() if k.startswith("probe_")}
        if extra:
            lines.append("  last in-training probe: " + ", ".join(f"{k} {v:.1f}%" for k, v in extra.items()))
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from mvd_lib.demo import run_demo

    run_demo(scale=args.scale, runs=args.runs, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mvd_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("models", help="table of model presets")
    p.add_argument("--mask-ratio", type=float, default=0.9, help="tube mask ratio for the visible-token column")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="time one step of a run type; prints one JSON line")
    p.add_argument("--run", default="distill-step", choices=["distill-step", *RUN_VERBS],
                   help="distill-step (default): a student preset with two teachers of the reference pairing; "
                        "or a run type, with --preset naming a run preset of it (e.g. --run finetune --preset laptop)")
    p.add_argument("--preset", required=True, help="model preset for distill-step, else a run preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a run preset field")
    p.add_argument("--teacher", choices=sorted(PRESETS), help="teacher preset (default: the reference pairing)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--batch", type=int, help="clips per step (default 8 on CPU, 32 on GPU)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="compute dtype (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--attention", choices=["sdpa", "math"], default="sdpa", help="attention kernel (default sdpa)")
    p.add_argument("--steps", type=int, help="timed steps (default 3 on CPU, 10 on GPU)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default 1 on CPU, 3 on GPU)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing in the student")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("presets", help="list the run presets")
    p.add_argument("verb_filter", nargs="?", choices=RUN_VERBS, help="only this run type")
    p.set_defaults(func=cmd_presets)

    for verb in RUN_VERBS:
        p = sub.add_parser(verb, help=RUN_HELP[verb], description=RUN_HELP[verb])
        p.add_argument("--preset", required=True, help="named preset (python -m mvd_lib presets lists them)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set optim.lr=1e-3 --set data.num_clips=500 (repeatable)")
        p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
        p.add_argument("--force", action="store_true", help="rerun even if a finished run exists")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--stop-after-steps", type=int, help="stop resumably after N optimizer steps")
        p.add_argument("--trust-checkpoint", action="store_true",
                       help="allow file: checkpoints holding pickled Python objects (the official releases store "
                            "their argparse args that way); unpickling runs code from the file, so only for trusted files")
        p.set_defaults(func=cmd_run, verb=verb)

    p = sub.add_parser("demo", help="short end-to-end run on CPU")
    p.add_argument("--scale", choices=["smoke", "laptop"], default="smoke", help="preset scale (default smoke)")
    p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
