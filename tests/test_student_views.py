"""Views the distillation and cross-frame notebooks (05, 08) need: similarity by time lag, and the frozen teachers a
distill run regressed (analysis.similarity_by_lag, analysis.distill_teachers)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mvd_lib import analysis as A
from mvd_lib import build, runner
from mvd_lib.distill import teacher_targets
from mvd_lib.runs import Run
from mvd_lib.target_cache import teacher_fingerprint
from mvd_lib.teachers import ImageTeacher, VideoTeacher


# ================================================================================ similarity by lag
def test_a_toeplitz_matrix_gives_back_its_values_at_each_lag():
    values = np.array([1.0, 0.8, 0.5, 0.1])  # lag 0, 1, 2, 3
    t = len(values)
    matrix = values[np.abs(np.arange(t)[:, None] - np.arange(t)[None, :])]
    np.testing.assert_allclose(A.similarity_by_lag(matrix), values[1:])
    np.testing.assert_allclose(A.similarity_by_lag(torch.as_tensor(matrix)), values[1:])


def test_lag_means_average_both_off_diagonals():
    matrix = np.array([[1.0, 0.2, 0.4],
                       [0.6, 1.0, 0.0],
                       [0.8, 0.3, 1.0]])
    # lag 1: 0.2, 0.0 above and 0.6, 0.3 below; lag 2: 0.4 above, 0.8 below
    np.testing.assert_allclose(A.similarity_by_lag(matrix), [(0.2 + 0.0 + 0.6 + 0.3) / 4, (0.4 + 0.8) / 2])


def test_lag_profile_of_real_similarities_and_bad_shapes():
    feats = torch.randn(6, 1, 4, 8, generator=torch.Generator().manual_seed(0)).expand(6, 5, 4, 8)
    sim = A.frame_similarity(feats)  # identical slots: every lag reads 1
    np.testing.assert_allclose(A.similarity_by_lag(sim.raw), np.ones(4), atol=1e-12)
    for bad in (np.ones(3), np.ones((2, 3)), np.ones((1, 1))):
        with pytest.raises(ValueError, match="square"):
            A.similarity_by_lag(bad)


# ================================================================================ teachers of a distill run
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """The smoke profile's teachers and three students (co-teaching, image-only, random-teacher control)."""
    root = tmp_path_factory.mktemp("runs")
    p = runner.profile("smoke")
    kw = dict(root=root, progress=False)
    return root, {v: runner.run("distill", p, v, **kw) for v in ("", "img", "random")}


def _cached_teacher_keys(root) -> set[str]:
    """The teacher fingerprints of every target cache the runs under `root` filled (folder names hold t<key>)."""
    return {part[1:] for d in (root / "cache" / "targets").iterdir() for part in d.name.split("-")
            if part.startswith("t")}


def test_rebuilt_teachers_are_the_ones_the_runs_cached_targets_of(smoke_runs):
    root, runs = smoke_runs
    cached = _cached_teacher_keys(root)
    for variant, run in runs.items():
        teachers = A.distill_teachers(run)
        assert set(teachers) == set(run.metrics["teacher_dims"]), variant
        for branch, teacher in teachers.items():
            assert isinstance(teacher, ImageTeacher if branch == "img" else VideoTeacher)
            assert teacher_fingerprint(teacher) in cached, (variant, branch)  # the very weights the run regressed
            assert not any(p.requires_grad for p in teacher.parameters())
    # the control's teachers are random but seeded: another seed gives teachers the runs never saw
    cfg = runs["random"].config
    other = build.build_video_teacher(cfg.teacher_arch, cfg.student.vit(), seed=cfg.seed + 201)
    assert teacher_fingerprint(other) not in cached


def test_rebuilt_teachers_give_the_targets_a_trained_student_was_fitted_to(smoke_runs):
    _, runs = smoke_runs
    run = runs[""]
    teachers = A.distill_teachers(run)
    video = runner.clips("smoke", "val")[0]["video"][None]
    targets = teacher_targets(teachers, video)
    assert targets["img"].shape == (1, 64, run.metrics["teacher_dims"]["img"])  # 4x4x4 grid, smoke
    assert targets["vid"].shape == (1, 64, run.metrics["teacher_dims"]["vid"])
    # the image teacher of the co-teaching run is the image-only run's teacher: the same pretrain-image run
    same = A.distill_teachers(runs["img"])["img"]
    assert torch.equal(same(video), targets["img"])


def test_refusals_name_the_problem(smoke_runs, tmp_path):
    root, runs = smoke_runs
    image_teacher = Run.load(next((root / "pretrain-image").iterdir()))
    with pytest.raises(ValueError, match="pretrain-image run"):
        A.distill_teachers(image_teacher)
    moved = tmp_path / "distill" / runs[""].folder.name  # the student without the runs folder of its teachers
    shutil.copytree(runs[""].folder, moved)
    with pytest.raises(FileNotFoundError, match="pretrain-image run with hash"):
        A.distill_teachers(Run.load(moved))
    # the control needs no teacher run: its random teachers are rebuilt from the seed alone
    alone = tmp_path / "distill" / runs["random"].folder.name
    shutil.copytree(runs["random"].folder, alone)
    assert set(A.distill_teachers(Run.load(alone))) == {"img", "vid"}
