"""Search for a benchmark design that passes the teacher-quality gate (mvd_lib/gate.py).

For a named design (DESIGNS below: benchmark settings, clip geometry, teacher architectures and budgets) this
trains the image teacher (MAE on stills) and the video teacher (VideoMAE on clips) with the run machinery
(train_or_load: a finished run is loaded, a killed one resumes), runs the gate on the VALIDATION split and
appends the gate table, the teachers' wall times and the design to a JSON-lines log.

    OMP_NUM_THREADS=1 nice -n 5 python tools/benchmark_search.py scene_a            # train + gate on val
    python tools/benchmark_search.py scene_a --split test                           # the final table, once
    python tools/benchmark_search.py --list                                         # the designs

Architectures that config.PRESETS lacks are registered at runtime (ARCHITECTURES). Wall times are those of
the machine that ran it (recorded with the thread count).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvd_lib import config as model_config  # noqa: E402
from mvd_lib import recipes  # noqa: E402
from mvd_lib.gate import evaluate_gate  # noqa: E402
from mvd_lib.mae import ImageViT  # noqa: E402
from mvd_lib.synthetic import synthetic_config  # noqa: E402
from mvd_lib.tasks import encoder_from_run  # noqa: E402
from mvd_lib.teachers import ImageTeacher  # noqa: E402
from mvd_lib.videomae import videomae_encoder  # noqa: E402
from mvd_lib.workflow import train_or_load  # noqa: E402

# Laptop architectures beyond config.PRESETS: name -> (width, depth, heads)
ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "vit_w64d4": (64, 4, 2),
    "vit_w96d4": (96, 4, 3),
    "vit_w128d4": (128, 4, 4),
    "vit_w192d4": (192, 4, 3),
}


def register_architectures() -> None:
    """Add ARCHITECTURES to config.PRESETS (geometry comes from each run's ModelSpec)."""
    for name, (width, depth, heads) in ARCHITECTURES.items():
        if name not in model_config.PRESETS:
            model_config.PRESETS[name] = model_config.ViTConfig(width=width, depth=depth, heads=heads,
                                                                num_frames=16, img_size=32, patch_size=4,
                                                                tubelet_size=2)


@dataclass(frozen=True)
class Teacher:
    """One teacher's pretraining: architecture, masking and budget."""

    arch: str = "vit_micro"
    mask_ratio: float = 0.75
    epochs: int = 10
    warmup_epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3  # base lr: the engine scales it by batch / 256
    min_lr: float = 1e-5
    count: int = 20000  # stills (image teacher) or pretraining clips (video teacher)


@dataclass(frozen=True)
class Design:
    """A benchmark design and its teachers."""

    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticConfig overrides
    patch_size: int = 8  # spatial patch (image and video: the same grid)
    tubelet_size: int = 2
    image: Teacher = Teacher()
    video: Teacher = Teacher(mask_ratio=0.9, batch_size=64, lr=4e-3, count=2000)
    num_train: int = 3000  # gate: probe training clips
    num_eval: int = 2000  # gate: evaluation clips
    note: str = ""


_OBJECT = dict(height=32, width=32, frames=16)
_SCENE = dict(height=32, width=32, frames=16, layout="scene", num_appearance=10,
              motions=("right", "left", "down", "up", "orbit_cw", "orbit_ccw"))
DESIGNS: dict[str, Design] = {
    # plumbing check: seconds
    "smoke": Design(synthetic=_OBJECT, image=Teacher(arch="vit_nano", epochs=1, warmup_epochs=0, count=256),
                    video=Teacher(arch="vit_nano", mask_ratio=0.9, epochs=1, warmup_epochs=0, batch_size=32,
                                  count=64), num_train=200, num_eval=100, note="plumbing check"),
    # the current benchmark at the cheap 2x8x8 grid (128 tokens): a baseline
    "object_p8": Design(synthetic=_OBJECT,
                        image=Teacher(epochs=8, count=40000),
                        video=Teacher(mask_ratio=0.9, epochs=20, warmup_epochs=2, batch_size=64, lr=4e-3,
                                      count=2000),
                        note="current benchmark (glyph object, held-out glyphs), 2x8x8 tubelets"),
    # scene + actor: 10 static scene classes (appearance), a small mover (motion: 4 directions, 2 orbits)
    "scene_a": Design(synthetic=_SCENE,
                      image=Teacher(epochs=8, count=40000),
                      video=Teacher(mask_ratio=0.9, epochs=20, warmup_epochs=2, batch_size=64, lr=4e-3, count=2000),
                      note="scene layout, static scenes, 6 position-only motions, vit_micro teachers"),
    # the video teacher's masking on a 4x4 spatial grid: 0.9 leaves 2 of 16 positions visible
    "scene_a_m75": Design(synthetic=_SCENE, image=Teacher(epochs=8, count=40000),
                          video=Teacher(mask_ratio=0.75, epochs=30, warmup_epochs=2, batch_size=64, lr=4e-3,
                                        count=2000),
                          note="scene_a, video mask 0.75, 30 epochs"),
    "scene_a_m50": Design(synthetic=_SCENE, image=Teacher(epochs=8, count=40000),
                          video=Teacher(mask_ratio=0.5, epochs=30, warmup_epochs=2, batch_size=64, lr=4e-3,
                                        count=2000),
                          note="scene_a, video mask 0.5, 30 epochs"),
    # the video teacher's pixel loss sits on the predict-zero plateau (0.99) for hundreds of steps: more steps
    "scene_a_long": Design(synthetic=_SCENE, image=Teacher(epochs=8, count=40000),
                           video=Teacher(mask_ratio=0.75, epochs=40, warmup_epochs=2, batch_size=32, lr=8e-3,
                                         count=2000),
                           note="scene_a, video mask 0.75, batch 32, 2500 steps"),
    # a bigger mover (the glyph object's 16 px, which gave the video teacher motion features in object_p8)
    "scene_b": Design(synthetic={**_SCENE, "object_size": 16.0, "noise": 0.0},
                      image=Teacher(epochs=12, count=40000),
                      video=Teacher(mask_ratio=0.9, epochs=20, warmup_epochs=2, batch_size=64, lr=4e-3, count=2000),
                      note="scene layout, 16 px mover, no pixel noise"),
}


# ------------------------------------------------------------------------------------------------ runs
def _overrides(design: Design, teacher: Teacher, verb: str) -> dict[str, Any]:
    s = synthetic_config(**design.synthetic)
    count_key = "data.num_images" if verb == "pretrain-image" else "data.num_clips"
    return {
        "model.preset": teacher.arch, "model.num_frames": s.frames, "model.img_size": s.height,
        "model.patch_size": design.patch_size, "model.tubelet_size": design.tubelet_size,
        "data.synthetic": s, count_key: teacher.count, "mask_ratio": teacher.mask_ratio,
    }


def teacher_run(verb: str, design: Design, root: Path):
    teacher = design.image if verb == "pretrain-image" else design.video
    cfg = recipes.preset(verb, "laptop", _overrides(design, teacher, verb))
    optim = dataclasses.replace(cfg.optim, epochs=teacher.epochs, warmup_epochs=teacher.warmup_epochs,
                                batch_size=teacher.batch_size, lr=teacher.lr, min_lr=teacher.min_lr)
    cfg = dataclasses.replace(cfg, optim=optim)
    return train_or_load(verb, cfg, root=root, progress=False)


def encoders_of(design: Design, image_run, video_run) -> dict[str, torch.nn.Module]:
    """The gate's four encoders: both teachers and random-init encoders of the same architectures."""
    image = encoder_from_run(image_run.verb, image_run.config, image_run.model_path)
    video = encoder_from_run(video_run.verb, video_run.config, video_run.model_path)
    return {
        "image_teacher": ImageTeacher(image, tubelet_size=design.tubelet_size),
        "video_teacher": video,
        "random_image": ImageTeacher(ImageViT(image_run.config.model.vit(), seed=image_run.config.seed),
                                     tubelet_size=design.tubelet_size),
        "random_video": videomae_encoder(video_run.config.model.vit(), seed=video_run.config.seed),
    }


def log_line(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def motion_precheck(design: Design, video_run, num_train: int = 1500, num_eval: int = 1000) -> dict[str, Any]:
    """Cheap early stop: is the video teacher above its random floor on motion (time pooling, val split)?"""
    from mvd_lib.gate import Score, binomial_se  # noqa: F401
    from mvd_lib.probe import extract_features, fit_probe
    from mvd_lib.synthetic import SyntheticClips

    cfg = synthetic_config(**design.synthetic)
    train = SyntheticClips("train", num_train, cfg, cache=True).materialize(progress=False)
    val = SyntheticClips("val", num_eval, cfg, cache=True).materialize(progress=False)
    out = {}
    encoders = {"video_teacher": encoder_from_run(video_run.verb, video_run.config, video_run.model_path),
                "random_video": videomae_encoder(video_run.config.model.vit(), seed=video_run.config.seed)}
    for name, enc in encoders.items():
        tr = extract_features(enc, train, ("time",), batch_size=64, progress=False)["time"]
        ev = extract_features(enc, val, ("time",), batch_size=64, progress=False)["time"]
        out[name] = fit_probe(tr.select("motion"), ev.select("motion"), seed=0).top1
    a, b = Score(out["video_teacher"], num_eval), Score(out["random_video"], num_eval)
    z = (a.acc - b.acc) / max(1e-9, (a.se**2 + b.se**2) ** 0.5)
    return {**out, "z": z, "passed": z > 3.0, "num_train": num_train, "num_eval": num_eval}


def run_design(name: str, root: Path, log: Path, split: str = "val", motion_check: bool = False) -> dict[str, Any]:
    design = DESIGNS[name]
    register_architectures()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    log_line(f"design {name}: video teacher")
    video_run = teacher_run("pretrain-video", design, root)
    log_line(f"video teacher {video_run.dir.name}: {video_run.metrics.get('wall_time_s', 0):.0f} s, "
             f"final loss {video_run.metrics.get('final_loss')}")
    if motion_check:
        check = motion_precheck(design, video_run)
        log_line(f"motion pre-check (val, time pooling): {check}")
        if not check["passed"]:
            entry = {"design": name, "split": "val", "passed": False, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "settings": json.loads(json.dumps(dataclasses.asdict(design), default=str)),
                     "video_teacher": {"run": video_run.dir.name, "wall_time_s": video_run.metrics.get("wall_time_s"),
                                       "steps": video_run.metrics.get("steps"),
                                       "final_loss": video_run.metrics.get("final_loss")},
                     "motion_precheck": check}
            with open(log, "a") as f:
                f.write(json.dumps(entry) + "\n")
            return entry
    log_line(f"design {name}: image teacher")
    image_run = teacher_run("pretrain-image", design, root)
    log_line(f"image teacher {image_run.dir.name}: {image_run.metrics.get('wall_time_s', 0):.0f} s, "
             f"final loss {image_run.metrics.get('final_loss')}")
    start = time.perf_counter()
    result = evaluate_gate(encoders_of(design, image_run, video_run), synthetic_config(**design.synthetic),
                           num_train=design.num_train, num_eval=design.num_eval, split=split,
                           tubelet_size=design.tubelet_size, log=log_line)
    gate_s = time.perf_counter() - start
    print(result.markdown(), flush=True)
    entry = {
        "design": name, "split": split, "passed": result.passed, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": json.loads(json.dumps(dataclasses.asdict(design), default=str)),
        "teachers": {kind: {"run": str(run.dir.relative_to(root)) if run.dir.is_relative_to(root) else str(run.dir),
                            "wall_time_s": run.metrics.get("wall_time_s"), "steps": run.metrics.get("steps"),
                            "final_loss": run.metrics.get("final_loss")}
                     for kind, run in (("image", image_run), ("video", video_run))},
        "gate_wall_time_s": gate_s, "threads": torch.get_num_threads(), "host": platform.node(),
        "gate": result.to_dict(), "table": result.markdown(),
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def report(log: Path) -> str:
    """Markdown of every logged gate run: design, settings, teacher wall times, the gate table."""
    out = []
    for line in log.read_text().splitlines():
        e = json.loads(line)
        if "motion_precheck" in e:
            d, v, c = e["settings"], e["settings"]["video"], e["motion_precheck"]
            vt = e["video_teacher"]
            out.append(f"### {e['design']} (val, {e['time']}): stopped after the video teacher\n")
            if d.get("note"):
                out.append(f"{d['note']}.\n")
            out.append(f"- benchmark: `{json.dumps(d['synthetic'])}`; patch {d['patch_size']}, tubelet {d['tubelet_size']}")
            out.append(f"- video teacher: {v['arch']}, mask {v['mask_ratio']}, {v['count']} clips x {v['epochs']} "
                       f"epochs (warmup {v['warmup_epochs']}), batch {v['batch_size']}, base lr {v['lr']:g}: "
                       f"{vt['steps']} steps, {vt['wall_time_s']:.0f} s, final loss {vt['final_loss']:.3f}")
            out.append(f"- motion, time pooling, {c['num_eval']} val clips (probes fit on {c['num_train']}): video "
                       f"teacher {c['video_teacher']:.1f}, random video encoder {c['random_video']:.1f} "
                       f"({c['z']:+.1f} se): stopped\n")
            continue
        d, t = e["settings"], e["teachers"]
        img, vid = d["image"], d["video"]
        out.append(f"### {e['design']} ({e['split']}, {e['time']})\n")
        if d.get("note"):
            out.append(f"{d['note']}.\n")
        out.append(f"- benchmark: `{json.dumps(d['synthetic'])}`; patch {d['patch_size']}, tubelet {d['tubelet_size']}")
        for kind, cfg in (("image", img), ("video", vid)):
            what = "stills" if kind == "image" else "clips"
            out.append(f"- {kind} teacher: {cfg['arch']}, mask {cfg['mask_ratio']}, {cfg['count']} {what} x "
                       f"{cfg['epochs']} epochs (warmup {cfg['warmup_epochs']}), batch {cfg['batch_size']}, "
                       f"base lr {cfg['lr']:g}: {t[kind]['steps']} steps, {t[kind]['wall_time_s']:.0f} s, "
                       f"final loss {t[kind]['final_loss']:.3f}")
        out.append(f"- gate: {e['gate_wall_time_s']:.0f} s; {e['threads']} thread(s)\n")
        out.append(e["table"] + "\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("designs", nargs="*", help="design names (see --list)")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "search", help="runs folder")
    parser.add_argument("--log", type=Path, default=ROOT / "runs" / "benchmark_search.jsonl", help="JSON-lines log")
    parser.add_argument("--split", default="val", choices=("val", "test"), help="gate evaluation split")
    parser.add_argument("--list", action="store_true", help="list the designs and exit")
    parser.add_argument("--report", action="store_true", help="print the log as markdown and exit")
    parser.add_argument("--motion-check", action="store_true",
                        help="train the video teacher first and stop unless it beats its floor on motion")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.log))
        return 0
    if args.list or not args.designs:
        for name, d in DESIGNS.items():
            print(f"{name}: {d.note}")
        return 0
    unknown = [d for d in args.designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s) {unknown}; choose from {sorted(DESIGNS)}")
    for name in args.designs:
        run_design(name, args.root, args.log, args.split, args.motion_check)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
