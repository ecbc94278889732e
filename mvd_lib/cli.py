"""Command line: `python -m mvd_lib <verb> ...` (also installed as `mvd`).

Verbs:
  models           table of architectures: parameters, tokens per clip, visible tokens, GFLOPs (paper beside)
  presets          the profiles and the run presets of every run type
  bench            time one step of a run preset, or the rejection of a bad setting; prints one JSON line
  demo             a short end-to-end run on CPU
  pretrain-image   MAE pretraining of an image teacher
  pretrain-video   VideoMAE pretraining of a video teacher
  distill          MVD distillation of a student from teachers
  finetune         supervised finetuning, then evaluation on the test split (or val: --set split=val)
  probe            probes on frozen features
  evaluate         multi-view evaluation of a finetuned model
  extract          frozen features of every clip of the lists' splits, written as .npy
  claims           the paper's claims C1-C8 tested with seeds; tables and verdicts in results/<profile>/
  gate             the teacher-quality gate: both teachers and random floors probed on both tasks

Run types take `--preset NAME` (`<profile>[_<variant>]`, e.g. laptop_img) or `--profile NAME` (its default
variant), `--profile-set key=value` (reaches every run of the chain), `--set key=value` (this run only). A run
is recorded under runs/VERB/PRESET-HASH/ and never repeated once finished. Under torchrun they train with DDP.

Every mistake in what was asked (a setting, a reference, a file, a list, a video in strict mode) ends as one
line naming the culprit, with exit code 2 and no traceback; `--debug` (or MVD_DEBUG=1) shows the traceback.
Only the configs are imported before the settings are checked, so a bad setting is refused in well under 2 s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mvd_lib.config import VERBS
from mvd_lib.errors import ConfigError, UserError

RUN_HELP = {
    "pretrain-image": "MAE pretraining of an image teacher on stills",
    "pretrain-video": "VideoMAE pretraining of a video teacher on clips",
    "distill": "MVD: distil a student from frozen image/video teachers (or EMA / per-token / random-teacher variants)",
    "finetune": "finetune a pretrained encoder with the reference recipe, then evaluate on the test split "
                "(--set split=val scores val instead, to choose a setting)",
    "probe": "probes on frozen features (linear: mean and time-ordered pooling; both label sets)",
    "evaluate": "multi-view evaluation of a finetuned classifier",
    "extract": "frozen features of a chosen layer for every clip of the splits, written as .npy files",
}

def models_table(mask_ratio: float = 0.9) -> str:
    """The architecture table (flops.model_sizes) as text."""
    from mvd_lib.flops import model_sizes

    header = (f"{'arch':<10} {'width':>5} {'depth':>5} {'heads':>5} {'params(M)':>9} {'paper':>6} "
              f"{'clip':>10} {'tokens':>6} {'visible':>7} {'GFLOPs':>8} {'paper':>6}")
    lines = [header, "-" * len(header)]
    for m in model_sizes(mask_ratio):
        t, h, w = m.clip
        lines.append(
            f"{m.arch:<10} {m.width:>5} {m.depth:>5} {m.heads:>5} {m.params / 1e6:>9.2f} "
            f"{m.paper_params_m if m.paper_params_m is not None else '-'!s:>6} {f'{t}x{h}x{w}':>10} {m.tokens:>6} "
            f"{m.visible:>7} {m.gflops:>8.2f} {m.paper_gflops if m.paper_gflops is not None else '-'!s:>6}")
    lines.append(f"params: finetuning encoder without head. visible: tube mask ratio {mask_ratio}. GFLOPs: one "
                 "forward pass of the finetuning encoder per clip, counted as multiply-adds as in the paper "
                 "(fvcore convention); 'paper': MVD Tables 3-5.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ verbs
def cmd_models(args: argparse.Namespace) -> int:
    print(models_table(args.mask_ratio))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from mvd_lib.profiles import PROFILES, presets

    print(f"profiles: {', '.join(PROFILES)}")
    for verb in VERBS:
        if args.verb_filter and verb != args.verb_filter:
            continue
        print(f"{verb}: {', '.join(presets(verb))}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.run == "rejection":
        print(json.dumps(bench_rejection(args.steps or 5)))
        return 0
    from mvd_lib.bench import bench_run

    result = bench_run(args.run, args.preset, device=args.device, batch=args.batch, dtype=args.dtype,
                       attention=args.attention, steps=args.steps, warmup=args.warmup, overrides=args.set,
                       profile_overrides=args.profile_set)
    print(result.json())
    return 0


REJECTED = ["distill", "--preset", "smoke", "--set", "optim.lrr=1"]


def bench_rejection(repeats: int = 5) -> dict:
    """Wall time of `python -m mvd_lib distill --preset smoke --set optim.lrr=1` (a mistyped setting), from
    process start to exit code 2, over `repeats` fresh interpreters."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mvd_lib", *REJECTED], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if out.returncode != 2:
            raise RuntimeError(f"expected exit code 2, got {out.returncode}: {out.stderr}")
    return {"run": "rejection", "command": "python -m mvd_lib " + " ".join(REJECTED), "exit_code": 2,
            "repeats": repeats, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "message": out.stderr.strip()}


def _resolve_preset(args: argparse.Namespace) -> str:
    from mvd_lib.errors import ConfigError

    if args.preset and args.profile:
        raise ConfigError("give --preset (e.g. laptop_img) or --profile (e.g. laptop), not both")
    if not (args.preset or args.profile):
        raise ConfigError(f"{args.verb} needs --preset NAME or --profile NAME (python -m mvd_lib presets lists them)")
    return args.preset or args.profile


def cmd_run(args: argparse.Namespace) -> int:
    """Any run type: train (or load) the preset with overrides, then print where it is and what it measured."""
    from mvd_lib.profiles import preset, profile, split_preset, validate
    from mvd_lib.runs import command_line

    name = _resolve_preset(args)
    cfg = preset(args.verb, name, args.set, args.profile_set)  # settings are checked here, before torch loads
    validate(args.verb, cfg)
    prof = profile(split_preset(args.verb, name)[0], args.profile_set)

    from mvd_lib import distributed
    from mvd_lib.runner import train_or_load
    from mvd_lib.runtypes import RunOptions, device_and_dtype

    device, _ = device_and_dtype(cfg)
    info = distributed.init_from_env(device.type)
    options = RunOptions(root=Path(args.runs), force=args.force, progress=not args.no_progress,
                         probe_every=args.probe_every, stop_after_steps=args.stop_after_steps,
                         trust_checkpoints=args.trust_checkpoint, dist=info,
                         command=command_line(args.verb, name, args.set, args.profile_set))
    try:
        run = train_or_load(args.verb, cfg, prof, options)
    finally:
        distributed.shutdown()
    if info.is_main:
        print(summary(run))
    return 0


def summary(run) -> str:
    """A few lines about a run: folder, status and its headline numbers."""
    m = run.metrics
    lines = [f"{run.verb} {run.name}: {m.get('status', 'unknown')} -> {run.folder}"]
    if m.get("waiting_for"):
        lines.append(f"  not started: waiting for {', '.join(m['waiting_for'])} (run the same command again)")
    if m.get("final_loss") is not None:
        lines.append(f"  final loss {m['final_loss']:.4f} after {m.get('steps')} steps "
                     f"({m.get('wall_time_s', 0):.0f} s, {m.get('train_flops', 0) / 1e12:.2f} TFLOP, {m.get('device')})")
    for split in ("val", "test"):  # a finetune's or an evaluation's scored split
        t = m.get(split)
        if isinstance(t, dict) and "top1" in t:
            lines.append(f"  {split} top-1 {t['top1']:.2f}%"
                         + (f", top-5 {t['top5']:.2f}%" if t.get("top5") is not None else "")
                         + f" on {t['num_videos']} videos ({t['num_views']} views)")
    for protocol, by_task in m.get("probe", {}).items():
        for task, by_pool in by_task.items():
            for pool, r in by_pool.items():
                lines.append(f"  {protocol} probe {task:<10} {pool:<4} top-1 {r['top1']:.2f}% on {m.get('split', 'test')} "
                             f"(chance {r['chance']:.1f}%)")
    for split, f in m.get("features", {}).items():
        if isinstance(f, dict) and "shape" in f:
            lines.append(f"  {split}: features {f['shape']} -> {run.folder / f['folder']}")
    for rec in m.get("epoch_metrics", [])[-1:]:
        extra = {k: v for k, v in rec.items() if k.startswith("probe_")}
        if extra:
            lines.append("  last in-training probe (val): " + ", ".join(f"{k} {v:.1f}%" for k, v in extra.items()))
    return "\n".join(lines)


def cmd_claims(args: argparse.Namespace) -> int:
    """Run (or load) every experiment the paper's claims need, then write the results folder and print the tables."""
    from mvd_lib import claims
    from mvd_lib.profiles import profile

    p = profile(args.profile, args.profile_set)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    protocols = tuple(x for x in args.protocols.split(",") if x)
    if args.rebuild:
        tables, _ = claims.build_tables(args.out)
        print(tables)
        return 0
    wanted = [c.strip() for c in args.claims.split(",") if c.strip()]
    arms = claims.arms_for(wanted)
    if args.arms:
        chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
        outside = [a for a in chosen if a not in arms]
        if outside:
            raise ConfigError(f"--arms {outside} are not arms of claims {','.join(wanted)}; choose from {arms}")
        arms = [a for a in arms if a in chosen]
    if args.lanes < 1:
        raise ConfigError(f"--lanes must be >= 1, got {args.lanes}")
    if args.extend:  # checked before any training
        claims.extendable(args.out, p.name, p.overrides, seeds)
    records = claims.run_experiments(p, seeds, arms=arms, protocols=protocols, root=args.runs,
                                     progress=not args.no_progress, lanes=args.lanes)
    out = claims.write_results(records, args.out, claims.similarity_datasets(p) if "C4" in wanted else None,
                               extend=args.extend)
    print((out / "tables.md").read_text())
    written = [n for n in ("tables.md", "verdicts.json", "scores.json", "similarity.json", "compute.json", "runs")
               if (Path(out) / n).exists()]
    print(f"results: {out}/ ({', '.join(n + '/' if n == 'runs' else n for n in written)})")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Train or load a profile's two teachers, probe them and the random floors on both tasks, print the table."""
    from mvd_lib.profiles import profile

    p = profile(args.profile, args.profile_set)  # settings are checked here, before torch loads
    for name in ("num_train", "num_eval"):
        if getattr(args, name) is not None and getattr(args, name) < 2:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 2, got {getattr(args, name)}")
    if args.lanes < 1:
        raise ConfigError(f"--lanes must be >= 1, got {args.lanes}")
    from mvd_lib import gate

    start = time.perf_counter()
    result = gate.run_gate(p, split=args.split, num_train=args.num_train, num_eval=args.num_eval, root=args.runs,
                           progress=not args.no_progress, lanes=args.lanes, force=args.force,
                           log=print if args.lanes > 1 else None)
    result.details["wall_time_s"] = time.perf_counter() - start
    if result.details["loaded"]:
        print(f"the recorded result of these teachers and this sample: {result.details['recorded']} "
              f"(--force evaluates again)")
    print(result.markdown())
    print(f"teachers: {', '.join(t['run'] for t in result.details['teachers'].values())}; "
          f"{result.details['wall_time_s']:.0f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"written: {out}")
    return 0 if result.passed else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from mvd_lib.demo import run_demo

    run_demo(profile=args.profile, runs=args.runs, progress=not args.no_progress)
    return 0


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mvd_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("models", help="table of architectures")
    p.add_argument("--mask-ratio", type=float, default=0.9, help="tube mask ratio for the visible-token column")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("presets", help="list the profiles and run presets")
    p.add_argument("verb_filter", nargs="?", choices=VERBS, help="only this run type")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("bench", help="time one step of a run preset; prints one JSON line")
    p.add_argument("--run", default="distill", choices=[*VERBS, "rejection"],
                   help="run type to time (default distill), or 'rejection': the wall time of a refused bad setting")
    p.add_argument("--preset", default="laptop", help="run preset (default laptop), e.g. paper_vit_b")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a run setting")
    p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE", help="override a profile setting")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--batch", type=int, help="clips per step (default 8 on CPU, 32 on GPU)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="compute dtype (default bf16 on GPU, fp32 on CPU)")
    p.add_argument("--attention", choices=["sdpa", "math"], default="sdpa", help="attention kernel (default sdpa)")
    p.add_argument("--steps", type=int, help="timed steps (default 3 on CPU, 10 on GPU; rejection: 5 repeats)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default 1 on CPU, 3 on GPU)")
    p.set_defaults(func=cmd_bench)

    for verb in VERBS:
        p = sub.add_parser(verb, help=RUN_HELP[verb], description=RUN_HELP[verb])
        p.add_argument("--preset", help="run preset <profile>[_<variant>] (python -m mvd_lib presets lists them)")
        p.add_argument("--profile", help="profile: smoke, quick, laptop, paper_vit_{s,b,l,h} (its default variant)")
        p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a profile setting for this run and every run it depends on, e.g. seed=1, "
                            "data.num_clips=500, distill_optim.epochs=5 (repeatable)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting of this run only, e.g. --set optim.lr=1e-3 (repeatable)")
        p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
        p.add_argument("--force", action="store_true", help="rerun this run from scratch even if it finished")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--probe-every", type=int, default=0, metavar="N",
                       help="in-training linear probe on the val split every N epochs (not part of the run's hash)")
        p.add_argument("--stop-after-steps", type=int, metavar="N", help="stop resumably after N optimizer steps")
        p.add_argument("--trust-checkpoint", action="store_true",
                       help="allow file: checkpoints holding pickled Python objects (the official releases store "
                            "their argparse args that way); unpickling runs code from the file, so only for trusted files")
        p.set_defaults(func=cmd_run, verb=verb)

    p = sub.add_parser("claims", help="test the paper's claims C1-C8 with seeds; write the results folder")
    p.add_argument("--profile", default="quick", help="profile (default quick; laptop for the committed results)")
    p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE", help="override a profile setting")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated student seeds (default 0,1,2)")
    p.add_argument("--protocols", default="linear,attentive,finetune",
                   help="how models are scored: linear, attentive, finetune (default all three; finetuning two "
                        "tasks per arm and seed is most of the cost)")
    p.add_argument("--claims", default="C1,C2,C3,C4,C5,C6,C7,C8",
                   help="claims to test (default all); only their arms, the teachers, the Table 1 students and the "
                        "controls are run, e.g. C2,C4 for Table 1 and Figure 3")
    p.add_argument("--arms", default="",
                   help="comma-separated arms to run, among the claims' (default all of them), e.g. 'image-teacher "
                        "student,video-teacher student'; with --extend, to add a protocol for some arms only")
    p.add_argument("--out", default=None, help="results folder (default results/<profile>)")
    p.add_argument("--extend", action="store_true",
                   help="add this command's runs to the experiment already in --out (same profile, --profile-set "
                        "and --seeds) instead of replacing it; its records and tables are rebuilt with them")
    p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
    p.add_argument("--rebuild", action="store_true", help="only rebuild the tables from the results folder")
    p.add_argument("--lanes", type=int, default=1, metavar="N",
                   help="train N runs at once, each in its own process with cores/N threads (default 1; on a "
                        "2-core CPU, 2 lanes train about 1.3 times as many steps per second, a chain of runs "
                        "that must wait for each other gains less; no progress bars then)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("gate", help="the teacher-quality gate of a profile's teachers (exit 1 when it fails)")
    p.add_argument("--profile", default="quick", help="profile (default quick)")
    p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE", help="override a profile setting")
    p.add_argument("--split", default="val", choices=("val", "test"),
                   help="evaluation split (default val; test for a final report, once)")
    p.add_argument("--num-train", type=int, help="training clips of the probes (default: the profile's gate_train)")
    p.add_argument("--num-eval", type=int, help="evaluation clips (default: the profile's gate_eval)")
    p.add_argument("--out", help="also write the result as JSON here")
    p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
    p.add_argument("--lanes", type=int, default=1, metavar="N",
                   help="with 2, train the two teachers side by side, one thread each, where neither is finished "
                        "or shipped (default 1: one after the other)")
    p.add_argument("--force", action="store_true",
                   help="evaluate again even if this gate's result is recorded under --runs (gate/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("demo", help="short end-to-end run on CPU")
    p.add_argument("--profile", default="smoke", help="profile (default smoke)")
    p.add_argument("--runs", default=os.environ.get("MVD_RUNS", "runs"), help="runs folder (default runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("MVD_DEBUG", "") not in ("", "0")
    for name in ("probe_every", "stop_after_steps"):  # range checks before any work
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "probe_every" else 1):
            print(f"error: --{name.replace('_', '-')} must be >= {0 if name == 'probe_every' else 1}, got {value}",
                  file=sys.stderr)
            return 2
    if getattr(args, "func", None) is cmd_claims and args.out is None:
        args.out = f"results/{args.profile}"
    try:
        return args.func(args)
    except UserError as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
