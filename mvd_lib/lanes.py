"""Lanes: independent runs trained side by side in worker processes, each after the runs it needs.

On the 2-core CPUs the laptop profiles target, two one-thread runs side by side train about 1.3 times as many
steps per second as one two-thread run (`python -m mvd_lib bench` on two threads, then at OMP_NUM_THREADS=1 one and
two at a time, measures it on a machine; the README gives the figures). `run_jobs`
takes train-or-load calls (`Job`s, the arguments of `runner.run`), plans each one (its hash and the runs it
depends on) as soon as the runs it names have finished, loads or adopts here what is finished or shipped, and
hands what must be trained to `lanes` worker processes of cores // lanes threads each, pinned to their own cores
where the OS allows. Every run is recorded as `runner.run` records it: the same config, hash and command; its
`device` line says how many threads trained it.

    jobs = [Job("student", "distill", p, "img", {"seed": 0}),
            Job("student/probe", "probe", p, settings={"encoder": RunOf("student"), "seed": 0})]
    runs = run_jobs(jobs, lanes=2, root="runs")   # {"student": Run, "student/probe": Run}

With lanes=1 every job runs here, one after another in the jobs' order: the plain train-or-load path.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mvd_lib import runner
from mvd_lib.devices import usable_cores
from mvd_lib.profiles import Profile, run_config
from mvd_lib.runs import Run
from mvd_lib.runtypes import RunOptions

__all__ = ["Job", "RunOf", "run_jobs"]


@dataclass(frozen=True)
class RunOf:
    """A setting of a `Job` that names the run of an earlier job, by its key: once that run has finished, the
    setting holds its reference ("verb@hash"), as `runner.run(..., encoder=run)` would."""

    key: str


@dataclass(frozen=True)
class Job:
    """One train-or-load call: `runner.run(verb, profile, variant, **settings)`, named `key` in the results.
    Settings are top-level config fields; a `RunOf` value waits for that job's run."""

    key: str
    verb: str
    profile: Profile
    variant: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> list[str]:
        """Keys of the jobs whose runs this one names."""
        return [v.key for v in self.settings.values() if isinstance(v, RunOf)]


def _check(jobs: Sequence[Job], lanes: int) -> None:
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    seen: set[str] = set()
    for job in jobs:
        if job.key in seen:
            raise ValueError(f"two jobs are named {job.key!r}")
        later = [k for k in job.needs if k not in seen]
        if later:
            raise ValueError(f"job {job.key!r} names the runs of {later}, which are not earlier jobs")
        seen.add(job.key)


def _plan(job: Job, runs: Mapping[str, Run], options: RunOptions) -> runner.Plan:
    """The job's plan, the runs it names resolved to their references (they have finished)."""
    settings = {k: runs[v.key].ref if isinstance(v, RunOf) else v for k, v in job.settings.items()}
    cfg = run_config(job.verb, job.profile, job.variant, settings)
    return runner.plan(job.verb, cfg, job.profile, options)


# ------------------------------------------------------------------------------------------------ workers
_LANE = 0  # this worker's lane number (set when it starts)


def _start_lane(numbers: Any, threads: int) -> None:
    """Worker start: take a lane number, use `threads` threads, pin to that lane's cores where possible."""
    global _LANE
    import torch

    _LANE = numbers.get()
    torch.set_num_threads(threads)
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        mine = cores[_LANE * threads:(_LANE + 1) * threads]
        if len(mine) == threads:
            os.sched_setaffinity(0, mine)


def _start_method(threads: int) -> str:
    """How lanes start. A forked worker needs no importable __main__ (scripts, notebooks and stdin alike), as
    DataLoader workers do, and is safe while it computes on one thread; a forked torch that had used several
    threads hangs in OpenMP when it starts several again, so workers of more threads start fresh ("spawn": the
    calling script must guard its entry point with `if __name__ == "__main__"`)."""
    return "fork" if threads == 1 and sys.platform == "linux" else "spawn"


def _train(verb: str, cfg: Any, p: Profile, options: RunOptions) -> tuple[str, int, float]:
    """In a worker: train the run (its dependencies have finished); (its folder, the lane, seconds)."""
    start = time.perf_counter()
    run = runner.execute(runner.plan(verb, cfg, p, options), options)
    return str(run.folder), _LANE, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ schedule
@dataclass
class _Node:
    plan: runner.Plan
    needs: list[str]  # fingerprints of the planned runs it depends on
    state: str = "waiting"  # waiting | training | done


def run_jobs(jobs: Sequence[Job], lanes: int = 1, root: str | os.PathLike | None = None,
             artifacts: str | os.PathLike | None = None, progress: bool = False,
             log: Callable[[str], None] | None = print) -> dict[str, Run]:
    """Train or load every job's run, and every run they depend on, each dependency first; {key: Run}.

    root: the runs folder (default: runner.run's, runs/ or $MVD_RUNS). lanes: runs trained at once, each in its own
    worker process with usable_cores() // lanes threads (at least one); 1: everything here, one after another,
    with progress bars if `progress`. Runs already finished or shipped are loaded or adopted here, never sent to a
    lane. If a run fails, no further run starts; the runs in the other lanes finish (a stopped run resumes on the
    next call), then the error is raised."""
    jobs = list(jobs)
    _check(jobs, lanes)
    options = RunOptions(root=root, artifacts=Path(artifacts) if artifacts is not None else None,
                         progress=progress and lanes == 1)
    by_job: dict[str, Run] = {}
    if lanes == 1:
        for job in jobs:
            start = time.perf_counter()
            run = by_job[job.key] = runner.execute(_plan(job, by_job, options), options)
            if log:
                log(f"{job.key}: {run.verb} {run.name} ({run.hash}) {run.status}, {time.perf_counter() - start:.0f} s")
        return by_job

    nodes: dict[str, _Node] = {}  # fingerprint -> node, dependencies before the runs that need them
    done: dict[str, Run] = {}  # fingerprint -> finished run
    fingerprint: dict[str, str] = {}  # job key -> its run's fingerprint

    def add(plan: runner.Plan) -> str:
        fp = plan.fingerprint()
        if fp not in nodes:
            needs = [add(dep) for dep in plan.deps.values() if isinstance(dep, runner.Plan)]
            nodes[fp] = _Node(plan, needs)
        return fp

    threads = max(1, usable_cores() // lanes)
    context = multiprocessing.get_context(_start_method(threads))
    numbers = context.Queue()
    for lane in range(lanes):
        numbers.put(lane)
    waiting = list(jobs)
    training: dict[concurrent.futures.Future, str] = {}
    failure: BaseException | None = None
    start = time.perf_counter()
    if log:
        log(f"lanes: {lanes} worker processes, {threads} thread{'s' * (threads > 1)} each")
    with concurrent.futures.ProcessPoolExecutor(lanes, mp_context=context, initializer=_start_lane,
                                                initargs=(numbers, threads)) as pool:
        while True:
            progressed = True
            while progressed and failure is None:
                progressed = False
                for job in [j for j in waiting if all(fingerprint.get(k) in done for k in j.needs)]:
                    runs = {k: done[fingerprint[k]] for k in job.needs}
                    fingerprint[job.key] = add(_plan(job, runs, options))
                    waiting.remove(job)
                    progressed = True
                for fp, node in nodes.items():
                    if node.state != "waiting" or any(n not in done for n in node.needs):
                        continue
                    if not runner.would_train(node.plan, options):  # finished, shipped or diverged: here, at once
                        done[fp] = runner.execute(node.plan, options)
                        node.state = "done"
                        progressed = True
                    elif len(training) < lanes:
                        plan = node.plan
                        training[pool.submit(_train, plan.verb, plan.cfg, plan.profile, options)] = fp
                        node.state = "training"
                        if log:
                            log(f"lanes: start {plan.verb} {plan.cfg.name} ({plan.hash})")
            if not training:
                break
            finished, _ = concurrent.futures.wait(training, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                fp = training.pop(future)
                node = nodes[fp]
                try:
                    folder, lane, seconds = future.result()
                except BaseException as err:  # noqa: BLE001  (raised below, once the other lanes have stopped)
                    failure = failure or err
                    if log:
                        log(f"lanes: {node.plan.verb} {node.plan.cfg.name} failed ({type(err).__name__}); "
                            f"{len(training)} run(s) still training finish first")
                    continue
                done[fp] = Run.load(folder)
                node.state = "done"
                if log:  # runs of jobs still waiting to be planned are counted one per job
                    count = sum(n.state == "done" for n in nodes.values())
                    log(f"lanes: lane {lane} trained {node.plan.verb} {node.plan.cfg.name} ({node.plan.hash}) "
                        f"in {seconds:.0f} s [{count}/{len(nodes) + len(waiting)} runs done, "
                        f"{time.perf_counter() - start:.0f} s]")
    if failure is not None:
        raise failure
    stuck = [j.key for j in waiting] + [fp for fp, n in nodes.items() if n.state != "done"]
    if stuck:  # every job names earlier jobs only, so this would be a bug in the schedule
        raise RuntimeError(f"lanes: runs left unscheduled: {stuck}")
    return {job.key: done[fingerprint[job.key]] for job in jobs}
