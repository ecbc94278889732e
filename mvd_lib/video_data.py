"""Real-video datasets on decord: annotation lists, frame sampling, test views, the pretraining two-view
crop, and an account of every bad input.

Mirrors the reference's `kinetics.py` (VideoClsDataset: dense sampling and test views; VideoDistillation:
pretraining clips), `ssv2.py` (SSVideoClsDataset: segment sampling), `datasets.py` (class counts, list files)
and `transforms.py` (GroupMultiScaleTwoResizedCrop); mvd_reference.md sections 5 and 6.

- Annotation lists: one `path label` line per video, single space, no header (train.csv / val.csv /
  test.csv). Paths are relative to `root` (default: the list's own folder) unless absolute. A malformed line
  raises `AnnotationError` naming the file and line; so does a label outside [0, num_classes).
- Sampling (all take a numpy Generator, never the global RNG):
  dense (K400, UCF101, HMDB51): 16 frames at stride 4 from a random window in training (the reference spreads
  them with np.linspace over the 64-frame window, so the spacing is 64/15; we do the same), evenly spaced
  windows for the test clips; segment (SSv2): 16 equal segments, one frame each, random within the segment in
  training and fixed in test; pretraining: 16 frames at exactly stride 4 from a random start.
- Spatial: train = random resized crop, scale (0.08, 1), optional flip (off for SSv2); val = short side
  resized to `short_side`, centre crop; test = clips x crops, the short side resized to the crop size and
  `test_crops` crops spaced along the long side; pretraining = one multi-scale crop (scales 1, .875, .75, .66
  at fixed offsets) resized to the student size and to the teacher size, no flip.
- Deviation, named: the reference's validation mode samples frames at random (it shares the training
  sampler); here validation uses the deterministic centre clip, so validation numbers are repeatable.
- Bad input (missing, empty, too small, undecodable, truncated files, and videos shorter than the clip) is
  recorded once per file with its reason in `dataset.bad_inputs` (a `BadInputSummary` to print or save as
  JSON), and the item is replaced by the next good video (index + 1, + 2, ...), deterministically, where
  the reference draws a random one and only prints a warning. `strict=True` raises `BadVideoError` instead.
  Validation / test items say which video they stand for ("video_index", its list position) and whether
  they were replaced ("replaced" 1), so an evaluation scores each video on its own views and reports the
  bad ones as skipped (evaluate.py), never as extra views of another video.
- DataLoader workers are separate processes with their own copy of the dataset: what they find reaches
  `dataset.bad_inputs` in the main process through a small JSON-lines file in the temporary folder (one per
  dataset, removed with it), read whenever `bad_inputs` is accessed. `log_path` additionally appends every
  finding to a file of your choice (`BadInputSummary.from_log`).

Lists for your own videos: `write_lists(folder, out_dir, label_from="parent" | "name", splits, seed)` finds every
video under a folder, names its class (its folder, or a pattern in its file name), splits the videos into train /
val / test stratified by class (`split_videos`, seeded) and writes the three lists plus `classes.json` (the class
names in label order, `read_classes`).

Decoded frames can go through a `ClipCache` (mvd_lib/clip_cache.py): "video" mode decodes each video once
(all frames, short side resized to `decode_short_side`) and cuts every later clip from that entry; "clip" mode
caches only the fixed validation / test clips, for datasets too large to keep whole.

Items are dicts: {"video": [C, T, H, W] normalized with ImageNet mean/std, "label", "index"} (test mode adds
"clip" and "crop", the view); the pretraining set returns {"video": student view [C, T, H, W], "teacher_video":
teacher view [C, T, H', W'] of the same crop, "index"}. Masks are made by the training loop, not here.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mvd_lib import transforms as T
from mvd_lib.errors import UserError
from mvd_lib.clip_cache import ClipCache

# ----------------------------------------------------------------------------------------------------------
# dataset registry (datasets.py)
# ----------------------------------------------------------------------------------------------------------
DATASETS: dict[str, int] = {"k400": 400, "ssv2": 174, "ucf101": 101, "hmdb51": 51}  # name -> class count
SAMPLING: dict[str, str] = {"k400": "dense", "ssv2": "segment", "ucf101": "dense", "hmdb51": "dense"}
TEST_CLIPS: dict[str, int] = {"k400": 5, "ssv2": 2, "ucf101": 5, "hmdb51": 5}  # temporal test views
FLIP: dict[str, bool] = {"k400": True, "ssv2": False, "ucf101": True, "hmdb51": True}  # train-time flip
_ALIASES = {"kinetics-400": "k400", "kinetics400": "k400", "something-something-v2": "ssv2", "ucf-101": "ucf101",
            "hmdb-51": "hmdb51"}


def dataset_name(name: str) -> str:
    """Canonical registry name ("K400", "Kinetics-400" -> "k400"); unknown names raise."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return key


def num_classes(name: str) -> int:
    """Class count of a registered dataset: K400 400, SSv2 174, UCF101 101, HMDB51 51."""
    return DATASETS[dataset_name(name)]


# ----------------------------------------------------------------------------------------------------------
# annotation lists
# ----------------------------------------------------------------------------------------------------------
class AnnotationError(UserError, ValueError):
    """A malformed annotation list: the message names the file and the 1-based line number."""


@dataclass(frozen=True)
class VideoRecord:
    """One line of an annotation list."""

    path: Path  # resolved video path
    label: int  # class index
    line: int  # 1-based line number in the list


def read_annotations(list_path: str | Path, num_classes: int | None = None,
                     root: str | Path | None = None) -> list[VideoRecord]:
    """Parse a `path label` list. Blank lines are ignored; anything else must be exactly "<path> <int>"
    (split at the last space, so paths may contain spaces). `num_classes` enforces 0 <= label < num_classes.
    Relative paths are joined to `root`, default the list's folder."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise FileNotFoundError(f"annotation list {list_path} does not exist")
    base = Path(root) if root is not None else list_path.parent
    records = []
    for lineno, raw in enumerate(list_path.read_text().splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        where = f"{list_path}, line {lineno}"
        parts = line.rsplit(" ", 1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise AnnotationError(f"{where}: expected '<path> <label>', got {raw!r}")
        path_str, label_str = parts[0].strip(), parts[1].strip()
        try:
            label = int(label_str)
        except ValueError:
            raise AnnotationError(f"{where}: label {label_str!r} is not an integer (line {raw!r})") from None
        if num_classes is not None and not 0 <= label < num_classes:
            raise AnnotationError(f"{where}: label {label} outside [0, {num_classes})")
        path = Path(path_str)
        records.append(VideoRecord(path if path.is_absolute() else base / path, label, lineno))
    if not records:
        raise AnnotationError(f"{list_path}: no videos listed")
    return records


# ----------------------------------------------------------------------------------------------------------
# temporal sampling
# ----------------------------------------------------------------------------------------------------------
def dense_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """[clip_len] frame indices of a random dense clip (kinetics.py training): a window of clip_len * stride
    frames at a random position, frames spread with np.linspace over it. Videos shorter than the window give
    num_frames // stride evenly spaced frames padded with the last frame, as in the reference."""
    span = clip_len * stride
    if num_frames <= span:
        idx = np.linspace(0, num_frames, num=num_frames // stride)
        idx = np.concatenate([idx, np.full(clip_len - num_frames // stride, num_frames)])
        return np.clip(idx, 0, num_frames - 1).astype(np.int64)
    end = int(rng.integers(span, num_frames))
    start = end - span
    return np.clip(np.linspace(start, end, num=clip_len), start, end - 1).astype(np.int64)


def dense_test_indices(num_frames: int, clip_len: int, stride: int, view: int, num_views: int) -> np.ndarray:
    """[clip_len] indices of test clip `view` of `num_views` (kinetics.py test mode): every stride-th frame,
    padded with the last to clip_len, then windows at evenly spaced starts (the first at the start of the
    video, the last at its end). One view: the centre window (also used for validation)."""
    if not 0 <= view < num_views:
        raise ValueError(f"view {view} outside [0, {num_views})")
    all_idx = list(range(0, num_frames, stride))
    all_idx += [all_idx[-1]] * max(0, clip_len - len(all_idx))
    if num_views > 1:
        step = max((len(all_idx) - clip_len) / (num_views - 1), 0.0)
        start = int(view * step)
    else:
        start = (len(all_idx) - clip_len) // 2
    return np.asarray(all_idx[start:start + clip_len], dtype=np.int64)


def segment_indices(num_frames: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """[num_segments] indices, one random frame in each of num_segments equal segments (ssv2.py training)."""
    avg = (num_frames - 1) / num_segments
    out = []
    for i in range(num_segments):
        start, end = int(np.round(avg * i)), int(np.round(avg * (i + 1)))
        out.append(int(rng.integers(start, end + 1)))
    return np.asarray(out, dtype=np.int64)


def segment_test_indices(num_frames: int, num_segments: int, view: int, num_views: int) -> np.ndarray:
    """[num_segments] fixed indices for test view `view` of `num_views` (ssv2.py test mode): each segment
    is split into num_views parts and view v takes the middle frame of part v. One view: segment midpoints."""
    if not 0 <= view < num_views:
        raise ValueError(f"view {view} outside [0, {num_views})")
    tick = (num_frames - 1) / num_segments
    part = tick / num_views
    out = []
    for i in range(num_segments):
        if num_views > 1:
            start = int(np.round(tick * i + part * view))
            end = int(np.round(tick * i + part * (view + 1)))
        else:
            start, end = int(np.round(tick * i)), int(np.round(tick * (i + 1)))
        out.append((start + end) // 2)
    return np.asarray(out, dtype=np.int64)


def pretrain_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """[clip_len] indices of a pretraining clip (kinetics.py VideoDistillation): frames start + k * stride from
    a start uniform in [0, num_frames - clip_len * stride]; in short videos the clip starts at 0 and repeats
    its last reachable frame (the reference stops advancing once the next step would reach the last frame)."""
    span = clip_len * stride
    start = int(rng.integers(num_frames - span + 1)) if num_frames - span + 1 > 0 else 0
    out, offset = [], start + 1  # the reference counts frames from 1 here
    for _ in range(clip_len):
        out.append(offset - 1)
        if offset + stride < num_frames:
            offset += stride
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------
REASONS: dict[str, str] = {
    "missing": "file does not exist",
    "empty": "file has 0 bytes",
    "too_small": "file smaller than min_bytes (the reference skips files under 1 KB)",
    "undecodable": "decord cannot open the file or read its frames (truncated, corrupt or not a video)",
    "too_short": "fewer frames than the clip needs",
}


class BadVideoError(UserError, RuntimeError):
    """A video that cannot give a clip; `reason` is a key of REASONS."""

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason} ({detail})" if detail else f"{path}: {reason}")


class NoReadableVideoError(BadVideoError):
    """Every video of an annotation list is bad (the message names the list and counts the reasons)."""

    def __init__(self, list_path: str | Path, summary: "BadInputSummary"):
        counts = ", ".join(f"{r}: {n}" for r, n in summary.counts().items())
        first = next(iter(sorted(summary.files.items())), None)
        example = f"; e.g. {first[0]} ({first[1]['reason']})" if first else ""
        RuntimeError.__init__(self, f"no readable video in {list_path}: all {len(summary)} listed videos are bad "
                                    f"({counts}){example}")
        self.path, self.reason, self.detail = str(list_path), "no_readable_video", counts


@dataclass
class BadInputSummary:
    """Every bad video met so far, once per file, with its reason, plus how many items were replaced."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> {"reason", "detail"}
    replaced: int = 0  # items served by a substitute video because theirs was bad

    def add(self, err: BadVideoError) -> bool:
        """Record a bad file; False when it was already recorded."""
        if err.path in self.files:
            return False
        self.files[err.path] = {"reason": err.reason, "detail": err.detail}
        return True

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        """{reason: number of files}, reasons in REASONS order, only those that occurred."""
        c = {r: 0 for r in REASONS}
        for info in self.files.values():
            c[info["reason"]] = c.get(info["reason"], 0) + 1
        return {r: n for r, n in c.items() if n}

    def to_dict(self) -> dict[str, Any]:
        return {"num_bad": len(self.files), "counts": self.counts(), "replaced": self.replaced,
                "files": [{"path": p, **info} for p, info in sorted(self.files.items())]}

    def save_json(self, path: str | Path) -> Path:
        from mvd_lib.atomic import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "BadInputSummary":
        """Read a summary written by `save_json`."""
        d = json.loads(Path(path).read_text())
        out = cls(replaced=int(d.get("replaced", 0)))
        for f in d["files"]:
            out.files[f["path"]] = {"reason": f["reason"], "detail": f["detail"]}
        return out

    @classmethod
    def from_log(cls, path: str | Path) -> "BadInputSummary":
        """Collect the JSON-lines log that datasets (in any worker process) append to through `log_path`."""
        out = cls()
        for line in Path(path).read_text().splitlines():
            if line.strip():
                f = json.loads(line)
                out.add(BadVideoError(f["path"], f["reason"], f["detail"]))
        return out

    def merge(self, other: "BadInputSummary") -> "BadInputSummary":
        for p, info in other.files.items():
            self.files.setdefault(p, info)
        self.replaced += other.replaced
        return self

    def __str__(self) -> str:
        if not self.files:
            return "bad inputs: none"
        counts = ", ".join(f"{r}: {n}" for r, n in self.counts().items())
        lines = [f"bad inputs: {len(self.files)} file(s) skipped ({counts}); {self.replaced} item(s) replaced"]
        lines += [f"  {info['reason']:<12} {p}" + (f"  ({info['detail']})" if info["detail"] else "")
                  for p, info in sorted(self.files.items())]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _open(path: Path, min_bytes: int):
    """decord.VideoReader for `path`, or BadVideoError with the reason."""
    import decord

    if not path.exists():
        raise BadVideoError(path, "missing", "file not found")
    size = path.stat().st_size
    if size == 0:
        raise BadVideoError(path, "empty", "0 bytes")
    if size < min_bytes:
        raise BadVideoError(path, "too_small", f"{size} bytes < {min_bytes}")
    try:
        return decord.VideoReader(str(path), num_threads=1, ctx=decord.cpu(0))
    except Exception as e:  # decord raises RuntimeError / DECORDError with ffmpeg's message
        raise BadVideoError(path, "undecodable", f"open failed: {_first_line(e)}") from None


def inspect_video(path: str | Path, min_bytes: int = 1024) -> dict[str, int]:
    """{"num_frames"} of a video decord can open (nothing is decoded); BadVideoError otherwise."""
    return {"num_frames": int(len(_open(Path(path), min_bytes)))}


def read_frames(path: str | Path, indices: Sequence[int], min_bytes: int = 1024) -> np.ndarray:
    """uint8 frames `[len(indices), H, W, 3]` decoded with decord; BadVideoError when that fails."""
    vr = _open(Path(path), min_bytes)
    try:
        return vr.get_batch([int(i) for i in indices]).asnumpy()
    except Exception as e:
        raise BadVideoError(path, "undecodable", f"reading frames failed: {_first_line(e)}") from None


def resize_frames_uint8(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """uint8 `[T, H, W, 3]` with the short side resized to `short_side` (None: unchanged)."""
    if short_side is None or min(frames.shape[1:3]) == short_side:
        return frames
    x = T.resize_short_side(T.frames_to_float(frames), short_side)  # [T, C, h, w]
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------
def _remove_channel(path: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # never from a forked worker that inherited the finalizer
        try:
            path.unlink()
        except OSError:
            pass


class _VideoListDataset(Dataset):
    """Shared machinery: the list, per-item generators, decoding with the cache, bad-input handling."""

    def __init__(self, list_path: str | Path, num_classes: int | None, root: str | Path | None, seed: int,
                 min_frames: int, strict: bool, min_bytes: int, cache: ClipCache | None,
                 decode_short_side: int | None, cache_mode: str, log_path: str | Path | None,
                 pre_transform: Callable[[torch.Tensor], torch.Tensor] | None):
        if cache_mode not in ("video", "clip"):
            raise ValueError(f"cache_mode must be 'video' or 'clip', got {cache_mode!r}")
        self.list_path = Path(list_path)
        self.records = read_annotations(list_path, num_classes, root)
        self.num_classes = num_classes
        self.seed, self.epoch = seed, 0
        self.min_frames, self.strict, self.min_bytes = min_frames, strict, min_bytes
        self.cache, self.decode_short_side, self.cache_mode = cache, decode_short_side, cache_mode
        self.log_path = Path(log_path) if log_path is not None else None
        self.pre_transform = pre_transform
        self._summary = BadInputSummary()  # this process's findings (plus, in the main process, the workers')
        self._bad: set[int] = set()  # record indices known to be bad in this process
        self._metas: dict[int, dict[str, int]] = {}  # per-video metadata already read in this process
        # findings of worker processes travel to this (the owner) process through a JSON-lines channel file
        self._owner_pid = os.getpid()
        self._channel = Path(tempfile.gettempdir()) / f"mvd-bad-inputs-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self._channel_pos = 0
        weakref.finalize(self, _remove_channel, self._channel, self._owner_pid)

    @property
    def bad_inputs(self) -> BadInputSummary:
        """Every bad video found so far, in this process and (read from the owner process) in any DataLoader
        worker, and how many items were served by a substitute."""
        self._collect()
        return self._summary

    def video_name(self, vid: int) -> str:
        """'list.csv:LINE path' of video `vid` (its list position), for reports."""
        rec = self.records[vid]
        return f"{self.list_path.name}:{rec.line} {rec.path}"

    def _in_worker(self) -> bool:
        return os.getpid() != self._owner_pid

    def _send(self, event: dict[str, Any]) -> None:
        """Append one finding to the channel (worker processes): one short line per write, so appends from
        several processes do not interleave."""
        with open(self._channel, "a") as f:
            f.write(json.dumps(event) + "\n")

    def _collect(self) -> None:
        """Merge the findings workers appended to the channel since the last call (owner process only)."""
        if self._in_worker() or not self._channel.exists():
            return
        with open(self._channel, "rb") as f:
            f.seek(self._channel_pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._channel_pos += end
        for line in data[:end].decode().splitlines():
            event = json.loads(line)
            if "replaced" in event:
                self._summary.replaced += int(event["replaced"])
            else:
                self._summary.add(BadVideoError(event["path"], event["reason"], event["detail"]))
                self._bad.add(int(event["vid"]))  # workers started later skip it at once

    @property
    def num_videos(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Random crops and clip positions are drawn from (seed, epoch, index): call once per epoch (before the
        epoch's DataLoader starts its workers; the findings of earlier workers are merged here)."""
        self.epoch = int(epoch)
        self._collect()

    def _rng(self, index: int, vid: int) -> np.random.Generator:
        """Generator of item `index` served by video `vid`: independent of what was read before."""
        return np.random.default_rng([self.seed, self.epoch, index, vid])

    def _record_bad(self, vid: int, err: BadVideoError) -> None:
        self._bad.add(vid)
        if not self._summary.add(err):
            return
        if self._in_worker():
            self._send({"path": err.path, "reason": err.reason, "detail": err.detail, "vid": vid})
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:  # one short line per write: appends do not interleave
                f.write(json.dumps({"path": err.path, "reason": err.reason, "detail": err.detail}) + "\n")

    def _record_replaced(self) -> None:
        self._summary.replaced += 1
        if self._in_worker():
            self._send({"replaced": 1})

    def _meta(self, path: Path) -> dict[str, int]:
        if self.cache is not None and path.exists():
            meta = self.cache.get_meta(path)
            if meta is not None:
                return meta
        meta = inspect_video(path, self.min_bytes)
        if self.cache is not None:
            self.cache.put_meta(path, meta)
        return meta

    def _check(self, vid: int) -> dict[str, int]:
        """Metadata of video `vid`, or BadVideoError (missing, empty, undecodable, too short)."""
        rec = self.records[vid]
        meta = self._metas.get(vid)
        if meta is None:
            meta = self._metas[vid] = self._meta(rec.path)
        if meta["num_frames"] < self.min_frames:
            raise BadVideoError(rec.path, "too_short", f"{meta['num_frames']} frames < {self.min_frames} needed")
        return meta

    def _frames(self, vid: int, indices: np.ndarray, fixed: bool) -> np.ndarray:
        """uint8 `[len(indices), H, W, 3]` of video `vid` (short side resized to `decode_short_side` if set).

        With a cache in "video" mode every frame is decoded once into one entry and any clip is read from it;
        in "clip" mode only `fixed` (validation / test) clips are cached, keyed by their frame indices, and
        random training clips are decoded directly. Without a cache: a direct decode of `indices`."""
        path = self.records[vid].path

        def decode(idx: Sequence[int]) -> np.ndarray:
            return resize_frames_uint8(read_frames(path, idx, self.min_bytes), self.decode_short_side)

        if self.cache is None or (self.cache_mode == "clip" and not fixed):
            return decode(indices)
        if self.cache_mode == "clip":
            return np.array(self.cache.get_or_create(path, lambda: decode(indices), indices=indices,
                                                     size=self.decode_short_side))  # copy out of the memmap
        n = self._metas[vid]["num_frames"]  # set by _check
        video = self.cache.get_or_create(path, lambda: decode(range(n)), indices=None, size=self.decode_short_side)
        return video[indices]  # fancy indexing copies out of the memmap

    def _load(self, index: int, vid: int,
              make: Callable[[int, dict[str, int], np.random.Generator], dict]) -> dict:
        """Run `make(vid, meta, rng)` on video `vid`, moving on to vid + 1, vid + 2, ... past bad videos."""
        for step in range(self.num_videos):
            cand = (vid + step) % self.num_videos
            if cand in self._bad:
                continue
            try:
                item = make(cand, self._check(cand), self._rng(index, cand))
            except BadVideoError as err:
                self._record_bad(cand, err)
                if self.strict:
                    raise
                continue
            if step:
                self._record_replaced()
            return item
        raise NoReadableVideoError(self.list_path, self._summary)

    def scan(self, progress: bool = True) -> BadInputSummary:
        """Check every listed video now (open it, count frames) and return the summary; strict mode raises on
        the first bad one. Fills the cache's metadata when a cache is set."""
        for vid in tqdm(range(self.num_videos), desc=f"scan {self.list_path.name}", disable=not progress):
            if vid in self._bad:
                continue
            try:
                self._check(vid)
            except BadVideoError as err:
                self._record_bad(vid, err)
                if self.strict:
                    raise
        return self.bad_inputs


    def _to_float(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> float [T, C, H, W] in [0, 1], after the optional pre_transform on uint8."""
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.pre_transform is not None:
            x = self.pre_transform(x)
        return T.frames_to_float(x)


_COMMON_ARGS = """
    root: folder the list's relative paths start from (default: the list's folder).
    seed: with `set_epoch(epoch)` and the item index, seeds every random choice of an item.
    strict: raise BadVideoError on the first bad video instead of recording it and moving on.
    min_bytes: files smaller than this are "too_small" (the reference skips files under 1 KB).
    min_frames: videos with fewer frames are "too_short" (default: the frames a clip takes).
    cache: a ClipCache for decoded frames; cache_mode "video" (decode each video once, whole) or "clip"
        (cache only the fixed validation / test clips).
    decode_short_side: resize decoded frames to this short side right away (what the cache stores; also
        makes later crops cheaper). None keeps the decoded size.
    log_path: JSON-lines file every process appends its bad-video findings to (`BadInputSummary.from_log`).
    pre_transform: applied to the uint8 frames `[T, H, W, C]` (torch) before any crop, e.g. RandAugment."""


class VideoClsDataset(_VideoListDataset):
    __doc__ = """Video classification from a `path label` list (dense sampling for K400 / UCF101 / HMDB51,
    segment sampling for SSv2).

    mode "train": random clip, random resized crop (scale (0.08, 1)), optional flip -> item {"video", "label",
    "index"}; "val": centre clip, short side -> `short_side`, centre crop; "test": `test_clips` x `test_crops`
    views per video (len = videos x views, ordered clip-major like the reference), items add "clip" and "crop".
    "val" and "test" items add "video_index" (the list position of the video the item stands for) and
    "replaced" (1 when that video is bad and "index", the video served, is a substitute; evaluate skips these).
    `video: [C, clip_len, crop_size, crop_size]`, normalized.

    list_path, num_classes: the annotation list and its class count (labels outside raise AnnotationError).
    sampling: "dense" (clip_len frames spread over clip_len * stride) or "segment" (clip_len segments, one
        frame each; stride unused).
    crop_size: output side; short_side: validation resize (default crop_size); test views resize the short
        side to crop_size.
    flip, scale: training flip (off for SSv2) and random-resized-crop area range.""" + _COMMON_ARGS

    def __init__(self, list_path: str | Path, num_classes: int, mode: Literal["train", "val", "test"] = "train",
                 sampling: Literal["dense", "segment"] = "dense", clip_len: int = 16, stride: int = 4,
                 crop_size: int = 224, short_side: int | None = None, test_clips: int = 5, test_crops: int = 3,
                 flip: bool = True, scale: tuple[float, float] = (0.08, 1.0), root: str | Path | None = None,
                 seed: int = 0, strict: bool = False, min_bytes: int = 1024, min_frames: int | None = None,
                 cache: ClipCache | None = None, decode_short_side: int | None = None,
                 cache_mode: Literal["video", "clip"] = "video", log_path: str | Path | None = None,
                 pre_transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
        if sampling not in ("dense", "segment"):
            raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}")
        super().__init__(list_path, num_classes, root, seed, clip_len if min_frames is None else min_frames,
                         strict, min_bytes, cache, decode_short_side, cache_mode, log_path, pre_transform)
        self.mode, self.sampling, self.clip_len, self.stride = mode, sampling, clip_len, stride
        self.crop_size, self.short_side = crop_size, short_side if short_side is not None else crop_size
        self.test_clips, self.test_crops = test_clips, test_crops
        self.flip, self.scale = flip, scale

    @classmethod
    def for_dataset(cls, name: str, list_path: str | Path, mode: Literal["train", "val", "test"] = "train",
                    **kwargs) -> "VideoClsDataset":
        """Reference settings for a registered dataset: class count, sampling, test clips and flip."""
        key = dataset_name(name)
        kwargs.setdefault("sampling", SAMPLING[key])
        kwargs.setdefault("test_clips", TEST_CLIPS[key])
        kwargs.setdefault("flip", FLIP[key])
        return cls(list_path, DATASETS[key], mode, **kwargs)

    @property
    def num_views(self) -> int:
        return self.test_clips * self.test_crops if self.mode == "test" else 1

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def _indices(self, n: int, rng: np.random.Generator, clip: int) -> np.ndarray:
        if self.sampling == "segment":
            if self.mode == "train":
                return segment_indices(n, self.clip_len, rng)
            views = self.test_clips if self.mode == "test" else 1
            return segment_test_indices(n, self.clip_len, clip, views)
        if self.mode == "train":
            return dense_indices(n, self.clip_len, self.stride, rng)
        views = self.test_clips if self.mode == "test" else 1
        return dense_test_indices(n, self.clip_len, self.stride, clip, views)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        vid = index % self.num_videos
        view = index // self.num_videos
        clip, crop_idx = divmod(view, self.test_crops) if self.mode == "test" else (0, 0)

        def make(v: int, meta: dict[str, int], rng: np.random.Generator) -> dict:
            idx = self._indices(meta["num_frames"], rng, clip)
            frames = self._to_float(self._frames(v, idx, fixed=self.mode != "train"))  # [T, C, H, W]
            if self.mode == "train":
                frames = T.random_resized_crop(frames, self.crop_size, rng, scale=self.scale)
                if self.flip:
                    frames = T.random_hflip(frames, rng)
            elif self.mode == "val":
                frames = T.center_crop(T.resize_short_side(frames, self.short_side), self.crop_size)
            else:
                frames = T.resize_short_side(frames, self.crop_size)
                box = T.long_side_crop_box(frames.shape[-2], frames.shape[-1], self.crop_size, crop_idx,
                                           self.test_crops)
                frames = T.crop(frames, box)
            item = {"video": T.normalize(T.to_cthw(frames)), "label": self.records[v].label, "index": v}
            if self.mode == "test":
                item.update(clip=clip, crop=crop_idx)
            return item

        item = self._load(index, vid, make)
        if self.mode != "train":  # the video this view stands for, and whether another video had to serve it
            item.update(video_index=vid, replaced=int(item["index"] != vid))
        return item


class VideoPretrainDataset(_VideoListDataset):
    __doc__ = """Unlabeled pretraining clips (kinetics.py VideoDistillation + GroupMultiScaleTwoResizedCrop): 16
    frames at stride 4 from a random start; one multi-scale crop resized for the student and for the teacher.
    Item: {"video": [C, T, input_size, input_size], "teacher_video": [C, T, teacher_size, teacher_size],
    "index"}. List labels are read but not returned (any integer is accepted).

    input_size / teacher_size: student and teacher view sides (teacher default: input_size; e.g. 196 for an
        H/14 image teacher under a 224 student).
    scales: multi-scale crop sides as fractions of the short side.""" + _COMMON_ARGS

    def __init__(self, list_path: str | Path, clip_len: int = 16, stride: int = 4, input_size: int = 224,
                 teacher_size: int | None = None, scales: Sequence[float] = T.PRETRAIN_SCALES,
                 root: str | Path | None = None, seed: int = 0, strict: bool = False, min_bytes: int = 1024,
                 min_frames: int | None = None, cache: ClipCache | None = None,
                 decode_short_side: int | None = None, cache_mode: Literal["video", "clip"] = "video",
                 log_path: str | Path | None = None,
                 pre_transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__(list_path, None, root, seed, clip_len if min_frames is None else min_frames, strict,
                         min_bytes, cache, decode_short_side, cache_mode, log_path, pre_transform)
        self.clip_len, self.stride, self.input_size = clip_len, stride, input_size
        self.teacher_size = teacher_size if teacher_size is not None else input_size
        self.scales = tuple(scales)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        def make(v: int, meta: dict[str, int], rng: np.random.Generator) -> dict:
            idx = pretrain_indices(meta["num_frames"], self.clip_len, self.stride, rng)
            frames = self._to_float(self._frames(v, idx, fixed=False))
            student, teacher = T.two_view_multi_scale_crop(frames, self.input_size, self.teacher_size, rng,
                                                           self.scales)
            return {"video": T.normalize(T.to_cthw(student)), "teacher_video": T.normalize(T.to_cthw(teacher)),
                    "index": v}

        return self._load(index, index, make)


# ----------------------------------------------------------------------------------------------------------
# annotation lists from a folder of videos
# ----------------------------------------------------------------------------------------------------------
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
CLASSES_JSON = "classes.json"
LIST_SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_NAME_PATTERN = r"^(?P<label>.+?)[_\-. ]*\d*$"  # the file stem without a trailing number: "jump_03" -> "jump"


@dataclass(frozen=True)
class VideoLists:
    """Annotation lists written by `write_lists`: where they are, the class names in label order and what each
    split holds."""

    folder: Path  # the folder of videos the lists were made from
    out_dir: Path  # where train.csv / val.csv / test.csv and classes.json are
    classes: tuple[str, ...]  # class names; label i is classes[i]
    splits: dict[str, tuple[tuple[Path, int], ...]]  # split -> ((video, label), ...) in list order

    def list_path(self, split: str) -> Path:
        """The list file of `split` (e.g. out_dir/train.csv)."""
        if split not in self.splits:
            raise KeyError(f"no {split!r} list was written; splits: {sorted(self.splits)}")
        return self.out_dir / f"{split}.csv"

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class name: videos}}, classes in label order (0 where a split has none of a class)."""
        out = {}
        for split, items in self.splits.items():
            per = {name: 0 for name in self.classes}
            for _, label in items:
                per[self.classes[label]] += 1
            out[split] = per
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.splits.values())


def find_videos(folder: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Every video file under `folder` (any depth; extension case ignored), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist or is not a folder")
    exts = {e.lower() for e in extensions}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def class_of(path: Path, folder: Path, label_from: Literal["name", "parent"] = "parent",
             pattern: str = DEFAULT_NAME_PATTERN) -> str:
    """The class name of one video: its parent folder's name ("parent"; the video must lie in a class folder
    under `folder`) or the `label` group of `pattern` searched in its file stem ("name")."""
    if label_from == "parent":
        if path.parent.resolve() == folder.resolve():
            raise ValueError(f"{path} lies directly in {folder}; label_from='parent' needs one folder per class "
                             f"(e.g. {folder}/<class>/{path.name}), or use label_from='name'")
        return path.parent.name
    if label_from == "name":
        found = re.search(pattern, path.stem)
        if found is None or "label" not in found.groupdict() or not found.group("label"):
            raise ValueError(f"{path}: its name {path.stem!r} does not match pattern {pattern!r} (a regular "
                             f"expression whose group 'label' names the class)")
        return found.group("label")
    raise ValueError(f"label_from must be 'name' or 'parent', got {label_from!r}")


def split_videos(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[int]:
    """A split index (0, 1, 2, ...) per video, stratified by label and deterministic in `seed`.

    Within each class the videos are shuffled (numpy Generator seeded by `seed`); the first of every class is
    placed first, so that the first split (train) holds every class whenever it has room for one video per
    class; the others get keys (rank + u) / n_class (u uniform in [0, 1) per class) spreading each class evenly
    over [0, 1). All videos sorted by key are then cut at round(cumulative fraction x N): every split gets its
    share of the videos overall and, up to one video, of each class."""
    fractions = [float(f) for f in fractions]
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    labels = [int(x) for x in labels]
    keys = np.zeros(len(labels))
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        order = [members[j] for j in rng.permutation(len(members))]
        u = rng.random()
        for rank, i in enumerate(order):
            keys[i] = -1.0 + rng.random() * 1e-3 if rank == 0 else (rank + u) / len(order)
    ranked = np.argsort(keys, kind="stable")
    bounds = np.round(np.cumsum(fractions) * len(labels)).astype(int)
    bounds[-1] = len(labels)
    out = [0] * len(labels)
    start = 0
    for s, end in enumerate(bounds):
        for i in ranked[start:end]:
            out[int(i)] = s
        start = max(start, int(end))
    return out


def write_lists(folder: str | Path, out_dir: str | Path, label_from: Literal["name", "parent"] = "parent",
                splits: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0, pattern: str = DEFAULT_NAME_PATTERN,
                classes: Sequence[str] | None = None, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                absolute_paths: bool = False) -> VideoLists:
    """Annotation lists (train.csv, val.csv, test.csv; `path label` lines) for every video under `folder`, and
    `classes.json` naming the classes in label order. Deterministic: the same folder and seed give the same
    files, byte for byte.

    label_from: "parent", the name of each video's folder (UCF101's and HMDB51's layout, `folder/<class>/x.mp4`),
        or "name", the group `label` of the regular expression `pattern` searched in the file stem (default:
        the stem without a trailing number).
    splits: fractions of the videos in train, val and test (`split_videos`: stratified by class, seeded); a
        split with fraction 0 gets no list file.
    classes: the class names in label order (e.g. a dataset's official order); None: the names found, sorted.
        A video of a class not listed raises ValueError naming it.
    absolute_paths: write absolute paths; by default paths are relative to `out_dir`, so lists and videos can
        move together (`read_annotations` resolves them against the list's folder).
    """
    from mvd_lib.atomic import write_json, write_text

    folder, out_dir = Path(folder), Path(out_dir)
    if len(splits) != len(LIST_SPLITS):
        raise ValueError(f"splits gives the fractions of {LIST_SPLITS}, got {tuple(splits)}")
    videos = find_videos(folder, extensions)
    if not videos:
        raise ValueError(f"no videos ({', '.join(extensions)}) under {folder}")
    for v in videos:
        if any(c in str(v) for c in "\n\r"):
            raise ValueError(f"{v!r}: a line break in a path cannot be written to an annotation list")
    names = [class_of(v, folder, label_from, pattern) for v in videos]
    if classes is None:
        classes = sorted(set(names))
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    unknown = sorted({(n, str(v)) for n, v in zip(names, videos) if n not in classes})
    if unknown:
        raise ValueError(f"{len(unknown)} video(s) of classes not in `classes`: "
                         + ", ".join(f"{v} ({n!r})" for n, v in unknown[:5]))
    labels = [classes.index(n) for n in names]
    assignment = split_videos(labels, splits, seed)
    out: dict[str, tuple[tuple[Path, int], ...]] = {}
    for s, (split, fraction) in enumerate(zip(LIST_SPLITS, splits)):
        if fraction == 0:
            continue
        items = tuple((v, y) for v, y, a in zip(videos, labels, assignment) if a == s)
        if not items:
            raise ValueError(f"{len(videos)} videos leave the {split} split (fraction {fraction}) empty; give it "
                             "a larger fraction or use more videos")
        out[split] = items
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, items in out.items():
        where = [v.resolve() if absolute_paths else Path(os.path.relpath(v.resolve(), out_dir.resolve())).as_posix()
                 for v, _ in items]
        lines = [f"{w} {y}" for w, (_, y) in zip(where, items)]
        write_text(out_dir / f"{split}.csv", "\n".join(lines) + "\n")
    for split in LIST_SPLITS:
        if split not in out and (out_dir / f"{split}.csv").exists():
            (out_dir / f"{split}.csv").unlink()  # a stale list from an earlier call
    write_json(out_dir / CLASSES_JSON, {
        "classes": list(classes), "label_from": label_from, "pattern": pattern if label_from == "name" else None,
        "splits": dict(zip(LIST_SPLITS, map(float, splits))), "seed": seed, "folder": str(folder),
        "videos": {split: len(items) for split, items in out.items()}})
    return VideoLists(folder, out_dir, classes, out)


def read_classes(list_dir: str | Path) -> tuple[str, ...]:
    """The class names, in label order, that `write_lists` saved in `list_dir`/classes.json."""
    path = Path(list_dir) / CLASSES_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (write_lists saves the class names there)")
    return tuple(json.loads(path.read_text())["classes"])
