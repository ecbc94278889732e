"""Command line: `python -m mvd_lib <verb> ...` (also installed as `mvd`).

Verbs:
  models   table of model presets: parameters, tokens per clip, visible tokens, GFLOPs per clip
  bench    time one training step, print one JSON line
  demo     a short end-to-end run: distil a small student from two teachers, save, reload, classify
"""
from __future__ import annotations

import argparse
import sys

import torch

from mvd_lib.config import PAPER_PRESETS, PRESETS, vit_config
from mvd_lib.flops import encoder_macs
from mvd_lib.masking import num_masked

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
        t, h, w = cfg.grid
        visible = cfg.num_tokens - t * num_masked(h * w, mask_ratio)
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
    from mvd_lib.bench import bench_distill

    result = bench_distill(
        args.preset, device=args.device, batch=args.batch, teacher=args.teacher, dtype=args.dtype,
        attention=args.attention, steps=args.steps, warmup=args.warmup, checkpointing=args.checkpointing,
    )
    print(result.json())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mvd_lib.demo import run_demo

    run_demo(steps=args.steps, out_dir=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mvd_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("models", help="table of model presets")
    p.add_argument("--mask-ratio", type=float, default=0.9, help="tube mask ratio for the visible-token column")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="time one distillation training step; prints one JSON line")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="student preset")
    p.add_argument("--teacher", choices=sorted(PRESETS), help="teacher preset (default: the reference pairing)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--batch", type=int, help="clips per step (default 8 on CPU, 32 on GPU)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="compute dtype (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--attention", choices=["sdpa", "math"], default="sdpa", help="attention kernel (default sdpa)")
    p.add_argument("--steps", type=int, help="timed steps (default 3 on CPU, 10 on GPU)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default 1 on CPU, 3 on GPU)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing in the student")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="short end-to-end run on CPU")
    p.add_argument("--steps", type=int, default=30, help="distillation steps (default 30)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
