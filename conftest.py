"""Test-session setup shared by tests/ and the notebooks under nbval.

`make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadfile`), one per core of the 2-core
machine it is sized for. `loadfile` keeps each file on one worker, in order: a notebook's cells run top to bottom
in one kernel, as in a serial `pytest`. Two notebooks may run at the same time on the two workers; when they
need the same run, the run folder's lock makes one train it and the other load it (runner.run).
Each worker runs torch on one thread, and so do the notebook kernels and subprocesses it starts (through
OMP_NUM_THREADS): two workers of two threads each would oversubscribe two cores.
Files holding a test marked `slow` are collected first, and `make test` passes `--no-loadscope-reorder`, so
their long tests start at once on one worker while the other works through the rest (xdist's default order puts
files with few tests, such as the learning test's, last, where they leave one core idle at the end).
A plain `pytest` (no `-n`) keeps the same order and runs in one process, torch's default threads.
"""
from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files and tests keep their order
