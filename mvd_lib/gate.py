"""The teacher-quality gate: are the two teachers what MVD's Table 1 assumes they are?

MVD (Wang et al., CVPR 2023, sections 1 and 4.3) rests on two premises: the image teacher (MAE) is the better
spatial model, the video teacher (VideoMAE) the better temporal one. On the procedural benchmark
(synthetic.py) the spatial task is `appearance` (our K400 analogue) and the temporal task is `motion` (our
SSv2 analogue). The gate checks both premises with linear probes on frozen features, against the floor of a
random-init encoder of the same architecture:

    encoders  image_teacher, video_teacher, random_image, random_video      (frozen; image ones frame by frame)
    features  one extraction per encoder on a train split and an evaluation split ("val" or "test"),
              pooled "mean" and "time" (probe.extract_features)
    probes    multinomial logistic regression per task and pooling (probe.fit_probe): top-1 on the
              evaluation split with its binomial standard error se = sqrt(p (1 - p) / n)

PASS when, with time-ordered pooling (a linear function of it contains the mean, so it is the stronger
linear readout; both poolings are shown):
    appearance: image_teacher > video_teacher and image_teacher > random_image
    motion:     video_teacher > image_teacher and video_teacher > random_video
each by more than 3 standard errors of the difference, sqrt(se_1^2 + se_2^2).

An image encoder reads the clip frame by frame on the frames distillation gives it (the front frame of each
tubelet, teachers.ImageTeacher), so its time slots line up with the video encoders'.

`run_gate` records its result under the runs folder (`gate/<profile>-<hash>.json`, the hash of the teacher runs
and their weights, the floors, the benchmark, the sample, the split and mvd_lib's source) and loads it on the next
call with the same inputs: notebooks 03 and 04 gate the same teachers, and a second `python -m mvd_lib gate` takes
seconds.

A secondary diagnostic for the paper's Figure 3 (image-teacher features nearly constant across frames,
video-teacher features changing): `cross_frame_similarity`, the slot-centred cosine similarity between the
per-time-slot features of one clip.

Results are indexed by readout ("mean", "time"); another readout (an attentive probe, say) is one more key.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mvd_lib.mae import ImageViT
from mvd_lib.probe import DEFAULT_C_GRID, Features, encoder_tokens, extract_features, token_grid
from mvd_lib.probe_protocols import ProtocolJob, run_protocols
from mvd_lib.analysis import frame_similarity
from mvd_lib.atomic import write_json
from mvd_lib.config import SyntheticConfig, config_dict
from mvd_lib.errors import ConfigError
from mvd_lib.synthetic import EVAL_SPLITS, SyntheticClips
from mvd_lib.teachers import ImageTeacher

ENCODERS: tuple[str, ...] = ("image_teacher", "video_teacher", "random_image", "random_video")
TASKS: tuple[str, ...] = ("appearance", "motion")
READOUTS: tuple[str, ...] = ("mean", "time")  # linear probes on mean / time-ordered pooled tokens
DECISION_READOUT = "time"
MARGIN_SE = 3.0  # a difference counts when it exceeds this many standard errors of the difference
# (task, better encoder, worse encoder): what the paper assumes
PREMISES: tuple[tuple[str, str, str], ...] = (
    ("appearance", "image_teacher", "video_teacher"),
    ("appearance", "image_teacher", "random_image"),
    ("motion", "video_teacher", "image_teacher"),
    ("motion", "video_teacher", "random_video"),
)


# ---------------------------------------------------------------------------------------------- scores
def binomial_se(acc: float, n: int) -> float:
    """Standard error, in percent, of an accuracy `acc` (percent) measured on `n` items: 100 sqrt(p(1-p)/n)."""
    if n < 1:
        raise ValueError(f"need n >= 1 evaluation items, got {n}")
    if not 0.0 <= acc <= 100.0:
        raise ValueError(f"accuracy must be a percentage in [0, 100], got {acc}")
    p = acc / 100.0
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


@dataclass(frozen=True)
class Score:
    """A top-1 accuracy (percent) on `n` evaluation items."""

    acc: float
    n: int

    @property
    def se(self) -> float:
        """Binomial standard error in percent."""
        return binomial_se(self.acc, self.n)

    def text(self) -> str:
        return f"{self.acc:.1f} ± {self.se:.1f}"


@dataclass(frozen=True)
class Check:
    """One premise: `better` beats `worse` on `task` by `diff` points, `z` standard errors of the difference."""

    task: str
    better: str
    worse: str
    readout: str
    better_acc: float
    worse_acc: float
    se_diff: float  # sqrt(se_better^2 + se_worse^2), percent
    margin: float  # required z

    @property
    def diff(self) -> float:
        return self.better_acc - self.worse_acc

    @property
    def z(self) -> float:
        if self.se_diff > 0:
            return self.diff / self.se_diff
        return math.inf if self.diff > 0 else (-math.inf if self.diff < 0 else 0.0)

    @property
    def passed(self) -> bool:
        return self.z > self.margin

    def text(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return (f"{mark} {self.task}: {self.better} {self.better_acc:.1f} vs {self.worse} {self.worse_acc:.1f} "
                f"({self.diff:+.1f} points, {self.z:+.1f} se; need > {self.margin:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "better": self.better, "worse": self.worse, "readout": self.readout,
                "better_acc": self.better_acc, "worse_acc": self.worse_acc, "diff": self.diff,
                "se_diff": self.se_diff, "z": self.z, "margin": self.margin, "passed": self.passed}


Rows = Mapping[str, Mapping[str, Mapping[str, Score]]]  # encoder -> task -> readout -> Score


def compare(rows: Rows, task: str, better: str, worse: str, readout: str = DECISION_READOUT,
            margin: float = MARGIN_SE) -> Check:
    """The check that `better` beats `worse` on `task` with `readout` by more than `margin` standard errors."""
    for name in (better, worse):
        if name not in rows or task not in rows[name] or readout not in rows[name][task]:
            raise KeyError(f"no {task}/{readout} score for encoder {name!r}")
    a, b = rows[better][task][readout], rows[worse][task][readout]
    return Check(task, better, worse, readout, a.acc, b.acc, math.sqrt(a.se**2 + b.se**2), margin)


def decide(rows: Rows, readout: str = DECISION_READOUT, margin: float = MARGIN_SE) -> list[Check]:
    """The four premises of the gate (PREMISES), each checked with `readout` at `margin` standard errors."""
    return [compare(rows, task, better, worse, readout, margin) for task, better, worse in PREMISES]


# ---------------------------------------------------------------------------------------------- diagnostics
def cross_frame_similarity(slots: np.ndarray) -> float:
    """Slot-centred cross-frame cosine similarity of per-time-slot features `slots: [N, T', D]`: the mean
    off-diagonal entry of `analysis.frame_similarity`'s centred matrix (each slot's dataset-mean feature
    subtracted, so a constant positional offset per slot does not count as similarity; cosines between the
    different slots of one clip, averaged over slot pairs and clips). Near 1: the features of a clip hardly
    change across frames; near 0: they change as much as between unrelated clips."""
    x = np.asarray(slots)
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"slots must be [N, T', D] with T' >= 2, got shape {x.shape}")
    return token_cross_frame_similarity(x[:, :, None, :])


def token_cross_frame_similarity(tokens: np.ndarray) -> float:
    """The same at each token position: `tokens: [N, T', S, D]` (S = H' W' positions per time slot).

    Each (slot, position)'s dataset-mean feature is subtracted, then the cosine between the features of one
    position at two different time slots of the same clip is averaged over slot pairs, positions and clips.
    Unlike the slot means, this sees local change: an object passing through a position lowers it."""
    x = np.asarray(tokens)
    if x.ndim != 4 or x.shape[1] < 2:
        raise ValueError(f"tokens must be [N, T', S, D] with T' >= 2, got shape {x.shape}")
    centred = frame_similarity(torch.as_tensor(x, dtype=torch.float64), form="tokens").centred  # [T', T']
    off = ~np.eye(x.shape[1], dtype=bool)
    return float(np.asarray(centred, dtype=np.float64)[off].mean())


@torch.no_grad()
def encoder_token_similarity(encoder: nn.Module, dataset: Any, num_clips: int = 256, batch_size: int = 32,
                             device: str | torch.device | None = None) -> float:
    """`token_cross_frame_similarity` of a frozen encoder's output tokens on the first `num_clips` clips."""
    was_training = encoder.training
    encoder.eval()
    dev = device or next(encoder.parameters()).device
    chunks = []
    try:
        n = min(num_clips, len(dataset))
        for start in range(0, n, batch_size):
            video = torch.stack([dataset[i]["video"] for i in range(start, min(n, start + batch_size))]).to(dev)
            tokens = encoder_tokens(encoder, video).float().cpu()  # [B, N, D]
            t, h, w = token_grid(encoder, video.shape[2])
            chunks.append(tokens.reshape(len(video), t, h * w, -1).numpy())
    finally:
        encoder.train(was_training)
    return token_cross_frame_similarity(np.concatenate(chunks))


def time_slots(features: Features) -> np.ndarray:
    """Per-time-slot features [N, T', D] from "time"-pooled Features (the mean of each slot's tokens)."""
    if features.pooling != "time" or features.grid is None:
        raise ValueError("need time-pooled features that record their token grid")
    t = features.grid[0]
    return features.x.reshape(len(features.x), t, -1)


# ---------------------------------------------------------------------------------------------- result
@dataclass
class GateResult:
    """Scores of the four encoders on both tasks and readouts, the premise checks and the verdict."""

    rows: dict[str, dict[str, dict[str, Score]]]  # encoder -> task -> readout -> Score
    checks: list[Check]
    split: str = "val"  # evaluation split
    num_train: int = 0
    num_eval: int = 0
    chance: dict[str, float] = field(default_factory=dict)  # task -> 100 / classes
    similarity: dict[str, float] = field(default_factory=dict)  # encoder -> cross_frame_similarity (eval split)
    token_similarity: dict[str, float] = field(default_factory=dict)  # encoder -> token_cross_frame_similarity
    # encoder -> its features' extraction (wall time) plus its probe fits' own times; the fits of all encoders
    # share two worker processes (run_protocols), so these add up to more than the gate's wall time
    seconds: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # probe settings (chosen C, train accuracy, ...)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def readouts(self) -> list[str]:
        seen: list[str] = []
        for tasks in self.rows.values():
            for scores in tasks.values():
                seen += [r for r in scores if r not in seen]
        return seen

    def markdown(self) -> str:
        """The gate table (rows: encoders, columns: task x readout, "acc ± se"), chance, the checks, verdict."""
        tasks = [t for t in TASKS if any(t in v for v in self.rows.values())]
        readouts = self.readouts
        head = ["encoder"] + [f"{t} ({r})" for t in tasks for r in readouts]
        if self.similarity:
            head.append("cross-frame cos (slots)")
        if self.token_similarity:
            head.append("cross-frame cos (tokens)")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, by_task in self.rows.items():
            cells = [name] + [by_task[t][r].text() if r in by_task.get(t, {}) else "" for t in tasks
                              for r in readouts]
            if self.similarity:
                cells.append(f"{self.similarity[name]:.2f}" if name in self.similarity else "")
            if self.token_similarity:
                cells.append(f"{self.token_similarity[name]:.2f}" if name in self.token_similarity else "")
            lines.append("| " + " | ".join(cells) + " |")
        chance = ", ".join(f"{t} {c:.1f}" for t, c in self.chance.items())
        lines.append("")
        lines.append(f"{self.split} split, {self.num_eval} clips (probes fit on {self.num_train} train clips); "
                     f"chance: {chance}. Decision on {self.checks[0].readout if self.checks else '-'} pooling:")
        lines += [f"- {c.text()}" for c in self.checks]
        lines.append(f"- gate: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "split": self.split, "num_train": self.num_train, "num_eval": self.num_eval,
            "chance": self.chance,
            "rows": {e: {t: {r: {"acc": s.acc, "se": s.se, "n": s.n} for r, s in by_r.items()}
                         for t, by_r in by_t.items()} for e, by_t in self.rows.items()},
            "checks": [c.to_dict() for c in self.checks], "similarity": self.similarity,
            "token_similarity": self.token_similarity,
            "seconds": self.seconds, "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateResult":
        """The result `to_dict` wrote; its checks are decided again from the rows, with the recorded readout and
        margin, and must agree with the recorded verdict."""
        rows = {e: {t: {r: Score(float(s["acc"]), int(s["n"])) for r, s in by_r.items()} for t, by_r in by_t.items()}
                for e, by_t in d["rows"].items()}
        first = d["checks"][0] if d.get("checks") else {}
        checks = decide(rows, first.get("readout", DECISION_READOUT), first.get("margin", MARGIN_SE))
        result = cls(rows, checks, split=d["split"], num_train=int(d["num_train"]), num_eval=int(d["num_eval"]),
                     chance=dict(d.get("chance", {})), similarity=dict(d.get("similarity", {})),
                     token_similarity=dict(d.get("token_similarity", {})), seconds=dict(d.get("seconds", {})),
                     details=dict(d.get("details", {})))
        if result.passed != bool(d["passed"]):
            raise ValueError("a recorded gate result whose checks do not give its recorded verdict")
        return result


# ---------------------------------------------------------------------------------------------- records
RECORDS = "gate"  # the folder, under a runs folder, of recorded gate results


def source_fingerprint() -> str:
    """sha256 (12 hex digits) of mvd_lib's Python source: a recorded gate result is reused only by the same code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def teacher_identity(run: Any) -> str:
    """A finished teacher run as the gate's record names it: "<verb>@<hash> <sha256 of its weights, 16 digits>",
    so a teacher trained again under the same config hash (other weights) is gated again."""
    from mvd_lib.identity import sha256_file

    return f"{run.ref} {sha256_file(run.weights())[:16]}"


def record_path(p: Any, image_teacher: str, video_teacher: str, split: str, num_train: int, num_eval: int,
                root: str | Path) -> Path:
    """Where `run_gate` records the gate of these teachers (`teacher_identity`) at profile `p`:
    `root/gate/<profile>-<hash>.json`, the hash of everything the result depends on (the teachers, the floors'
    architecture and seed, the benchmark, the sample, the split, the probe grid and mvd_lib's source)."""
    key = {"image_teacher": image_teacher, "video_teacher": video_teacher, "teacher_arch": p.teacher_arch,
           "model": config_dict(p.model.vit()), "seed": p.seed, "synthetic": config_dict(p.data.synthetic),
           "split": split, "num_train": num_train, "num_eval": num_eval, "c_grid": list(DEFAULT_C_GRID),
           "source": source_fingerprint()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / RECORDS / f"{p.name}-{digest}.json"


def gate_from_features(features: Mapping[str, tuple[dict[str, Features], dict[str, Features]]],
                       tasks: Sequence[str] = TASKS, readouts: Sequence[str] = READOUTS,
                       c_grid: Sequence[float] = DEFAULT_C_GRID, seed: int = 0, split: str = "val",
                       margin: float = MARGIN_SE, workers: int | None = None) -> GateResult:
    """Fit the probes on already extracted features: {encoder: (train {readout: Features}, eval {...})}.
    workers: processes the independent probe fits are shared among (probe_protocols.run_protocols; the same
    results for any number)."""
    missing = [e for e in ENCODERS if e not in features]
    if missing:
        raise KeyError(f"the gate needs features of {list(ENCODERS)}; missing {missing}")
    rows: dict[str, dict[str, dict[str, Score]]] = {}
    details: dict[str, Any] = {}
    similarity: dict[str, float] = {}
    seconds: dict[str, float] = {}
    chance: dict[str, float] = {}
    grids: dict[str, tuple[int, ...]] = {}
    num_train = num_eval = 0
    keys = [(name, task, r) for name in features for task in tasks for r in readouts]
    jobs = [ProtocolJob("linear", features[name][0][r].select(task), features[name][1][r].select(task),
                        {"c_grid": tuple(c_grid)}) for name, task, r in keys]
    fits = dict(zip(keys, run_protocols(jobs, seed=seed, workers=workers)))
    for name, (train, evaluation) in features.items():
        start = time.perf_counter()
        for task in tasks:
            for r in readouts:
                res = fits[name, task, r]
                rows.setdefault(name, {}).setdefault(task, {})[r] = Score(res.top1, res.num_test)
                details.setdefault(name, {}).setdefault(task, {})[r] = {
                    "c": res.c, "train_top1": res.train_top1, "converged": res.converged}
                chance[task] = res.chance
                num_train, num_eval = res.num_train, res.num_test
        grid = next((f.grid for f in evaluation.values() if f.grid is not None), None)
        if grid is not None:
            grids[name] = tuple(grid)
        if "time" in evaluation and grid is not None and grid[0] > 1:
            similarity[name] = cross_frame_similarity(time_slots(evaluation["time"]))
        seconds[name] = time.perf_counter() - start + sum(fits[name, t, r].seconds for t in tasks for r in readouts)
    ordered = {e: rows[e] for e in list(ENCODERS) + [e for e in rows if e not in ENCODERS]}
    return GateResult(ordered, decide(ordered, margin=margin), split=split, num_train=num_train,
                      num_eval=num_eval, chance=chance, similarity=similarity, seconds=seconds,
                      details={"probes": details, "grids": grids})


def _as_video_reader(encoder: nn.Module, tubelet_size: int) -> nn.Module:
    """A bare image encoder reads the clip on the frames distillation gives it (ImageTeacher)."""
    return ImageTeacher(encoder, tubelet_size=tubelet_size) if isinstance(encoder, ImageViT) else encoder


def evaluate_gate(encoders: Mapping[str, nn.Module], synthetic_cfg: SyntheticConfig, num_train: int = 3000,
                  num_eval: int = 2000, split: str = "val", batch_size: int = 64, seed: int = 0,
                  progress: bool = False, tubelet_size: int = 2, c_grid: Sequence[float] = DEFAULT_C_GRID,
                  device: str | torch.device | None = None,
                  log: Callable[[str], None] | None = None) -> GateResult:
    """Run the gate: features of `encoders` (the four of ENCODERS, frozen) on `num_train` clips of the "train"
    split and `num_eval` clips of `split` ("val" while designing, "test" once for the final table), linear
    probes on both tasks and both poolings, the premise checks.

    A bare `ImageViT` is wrapped in `ImageTeacher(encoder, tubelet_size)` so it reads the front frame of each
    tubelet, as in distillation; pass an ImageTeacher to choose otherwise. Clips are rendered once and shared
    by all encoders. Deterministic in (encoders, synthetic_cfg, sizes, split, seed)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"the gate evaluates on one of {EVAL_SPLITS}, got {split!r}")
    missing = [e for e in ENCODERS if e not in encoders]
    if missing:
        raise KeyError(f"the gate needs encoders {list(ENCODERS)}; missing {missing}")
    train = SyntheticClips("train", num_train, synthetic_cfg, cache=True).materialize(progress=progress)
    evaluation = SyntheticClips(split, num_eval, synthetic_cfg, cache=True).materialize(progress=progress)
    features: dict[str, tuple[dict[str, Features], dict[str, Features]]] = {}
    extract_seconds: dict[str, float] = {}
    token_similarity: dict[str, float] = {}
    for name, encoder in encoders.items():
        start = time.perf_counter()
        model = _as_video_reader(encoder, tubelet_size)
        kw = dict(poolings=READOUTS, batch_size=batch_size, device=device, progress=progress)
        features[name] = (extract_features(model, train, **kw), extract_features(model, evaluation, **kw))
        token_similarity[name] = encoder_token_similarity(model, evaluation, device=device)
        extract_seconds[name] = time.perf_counter() - start
        if log is not None:
            log(f"gate: features of {name} in {extract_seconds[name]:.0f} s")
    result = gate_from_features(features, c_grid=c_grid, seed=seed, split=split)
    result.seconds = {n: extract_seconds[n] + result.seconds.get(n, 0.0) for n in extract_seconds}
    result.token_similarity = token_similarity
    return result


def floor_encoders(p: Any) -> dict[str, nn.Module]:
    """Random-init encoders of a profile's two teacher architectures at its geometry (the gate's floors),
    seeded with the profile's seed: {"random_image": ImageViT, "random_video": VideoViT}."""
    from mvd_lib import build

    student = p.model.vit()
    return {"random_image": build.image_encoder(p.teacher_arch, student, seed=p.seed).eval(),
            "random_video": build.video_encoder(p.teacher_arch, student, seed=p.seed).eval()}


def run_gate(p: Any = "quick", split: str = "val", num_train: int | None = None, num_eval: int | None = None,
             root: str | None = None, progress: bool = True, image_teacher: Any = None, video_teacher: Any = None,
             device: str | torch.device | None = None, log: Callable[[str], None] | None = None,
             lanes: int = 1, force: bool = False) -> GateResult:
    """The gate of a profile (a name or a profiles.Profile): train or load its two teachers ("pretrain-image" and
    "pretrain-video" runs; shipped teachers are adopted), build the random floors, and
    evaluate on `num_train` train clips and `num_eval` clips of `split` (defaults: the profile's gate_train and
    gate_eval, 3000 and 2000 but at smoke). `image_teacher` / `video_teacher`: finished runs (`Run`) to
    gate instead of the profile's. The result records the teacher runs in `details["teachers"]`. lanes: 2 trains
    the two teachers side by side, one thread each, where neither is finished or shipped (lanes.run_jobs).

    The result is recorded under `root` (record_path) and a later call with the same inputs loads it instead of
    evaluating again (`details["recorded"]` names the file, `details["loaded"]` says which happened); `force`
    evaluates again and replaces the record."""
    from mvd_lib import runner
    from mvd_lib.lanes import Job, run_jobs

    p = runner.profile(p) if isinstance(p, str) else p
    if split not in EVAL_SPLITS:
        raise ConfigError(f"the gate evaluates on one of {EVAL_SPLITS}, got {split!r}")
    if p.data.source != "synthetic":
        raise ConfigError(f"the gate needs the synthetic benchmark (its appearance and motion labels); "
                          f"profile {p.name!r} reads annotation lists")
    jobs = [Job(verb, verb, p) for verb, given in (("pretrain-image", image_teacher), ("pretrain-video", video_teacher))
            if given is None]
    teachers = run_jobs(jobs, lanes=lanes, root=root, progress=progress, log=log)
    image = image_teacher or teachers["pretrain-image"]
    video = video_teacher or teachers["pretrain-video"]
    num_train = p.gate_train if num_train is None else num_train
    num_eval = p.gate_eval if num_eval is None else num_eval
    record = record_path(p, teacher_identity(image), teacher_identity(video), split, num_train, num_eval,
                         runner.RunOptions(root=root).root)
    if record.exists() and not force:
        result = GateResult.from_dict(json.loads(record.read_text()))
        result.details.update(recorded=str(record), loaded=True)
        if log is not None:
            log(f"gate: loaded the recorded result {record} (force to evaluate again)")
        return result
    encoders = {"image_teacher": image.encoder(), "video_teacher": video.encoder(), **floor_encoders(p)}
    result = evaluate_gate(encoders, p.data.synthetic, num_train=num_train, num_eval=num_eval, split=split,
                           seed=p.seed, progress=progress, tubelet_size=p.model.vit().tubelet_size, device=device,
                           log=log)
    result.details["teachers"] = {name: {"run": r.ref, "folder": str(r.folder),
                                         "wall_time_s": r.metrics.get("wall_time_s"), "steps": r.metrics.get("steps")}
                                  for name, r in (("image", image), ("video", video))}
    result.details["profile"] = p.name
    write_json(record, result.to_dict())
    result.details.update(recorded=str(record), loaded=False)
    return result
