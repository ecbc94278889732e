"""Claims: the criterion on numbers with a known answer, verdicts combined, and a tiny experiment exported as run
records whose tables rebuild exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mvd_lib import claims


def test_welch_greater_by_hand():
    a, b = [10.0, 11.0, 12.0], [1.0, 2.0, 3.0]
    assert claims.welch_greater(a, b) < 1e-3 and claims.welch_greater(b, a) > 0.999
    # t = (11 - 2) / sqrt(1/3 + 1/3) = 11.02, df = 4 (equal variances, equal sizes): p = 1.95e-4
    assert claims.welch_greater(a, b) == pytest.approx(1.95e-4, rel=0.02)
    assert np.isnan(claims.welch_greater([1.0], [0.0]))  # one seed tells nothing
    assert claims.welch_greater([2.0, 2.0], [1.0, 1.0]) == 0.0 and claims.welch_greater([1.0, 1.0], [2.0, 2.0]) == 1.0


def test_compare_gives_the_three_verdicts():
    assert claims.compare([10, 11, 12], [1, 2, 3])[2] == "reproduced"
    assert claims.compare([1, 2, 3], [10, 11, 12])[2] == "not reproduced"
    assert claims.compare([5, 9, 1], [4, 8, 2])[2] == "inconclusive"
    # at least as good: equal means hold it; a significantly better rival refutes it
    assert claims.compare([5, 6, 7], [5, 6, 7], "at_least")[2] == "reproduced"
    assert claims.compare([5, 6, 7], [5.5, 6.5, 7.5], "at_least")[2] == "inconclusive"
    assert claims.compare([1, 2, 3], [10, 11, 12], "at_least")[2] == "not reproduced"
    # one seed a side cannot be tested: no verdict either way, whatever the means say
    assert claims.compare([24.8], [24.0], "at_least")[2] == "inconclusive"
    assert claims.compare([90.0], [10.0])[2] == "inconclusive"


def test_combine():
    assert claims.combine(["reproduced", "reproduced"]) == "reproduced"
    assert claims.combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert claims.combine(["inconclusive", "not reproduced"]) == "not reproduced"
    assert claims.combine([]) == "inconclusive"


def rows_for(values: dict[tuple[str, str], list[float]], protocol: str = "linear") -> list[dict]:
    return [{"arm": arm, "seed": s, "protocol": protocol, "task": task, "top1": v}
            for (arm, task), vs in values.items() for s, v in enumerate(vs)]


def test_judge_c2_both_ways():
    holds = rows_for({("image-teacher student", "appearance"): [60, 62, 61],
                      ("video-teacher student", "appearance"): [40, 41, 42],
                      ("image-teacher student", "motion"): [30, 31, 29],
                      ("video-teacher student", "motion"): [50, 52, 51]})
    assert claims.judge(holds, ["C2"])["C2"]["linear"]["verdict"] == "reproduced"
    swapped = rows_for({("image-teacher student", "appearance"): [40, 41, 42],
                        ("video-teacher student", "appearance"): [60, 62, 61],
                        ("image-teacher student", "motion"): [30, 31, 29],
                        ("video-teacher student", "motion"): [50, 52, 51]})
    result = claims.judge(swapped, ["C2"])["C2"]["linear"]
    assert result["verdict"] == "not reproduced"
    assert [o["verdict"] for o in result["outcomes"]] == ["not reproduced", "reproduced"]


def test_arms_for_runs_only_what_the_chosen_claims_need():
    table1 = ["image teacher", "video teacher", "random init", "image-teacher student", "video-teacher student",
              "co-teaching student", "random-teacher student"]
    assert claims.arms_for(["C2", "C4"]) == claims.arms_for(["C4"]) == table1
    assert claims.arms_for(["C8"]) == table1 + ["VideoMAE baseline", "VideoMAE longer"]
    assert "per-token student" in claims.arms_for(["C7"]) and "VideoMAE longer" not in claims.arms_for(["C1"])
    assert claims.arms_for([*claims.CLAIMS, "C4", "C8"]) == claims.arms_needed()  # the default: every claim
    with pytest.raises(claims.ConfigError, match="unknown claim"):
        claims.arms_for(["C9"])


def test_constancy_of_constant_and_changing_features():
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 4, 16, generator=g)  # [N, 1, P, D]
    still = base.expand(64, 6, 4, 16).clone()  # identical in every time slot
    moving = torch.randn(64, 6, 4, 16, generator=g)  # unrelated from slot to slot
    assert claims.constancy(still) == pytest.approx(np.ones(64))
    assert abs(claims.constancy(moving).mean()) < 0.1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    arms = ["random init", "image-teacher student", "video-teacher student"]
    records = claims.run_experiments("smoke", seeds=(0, 1), arms=arms, protocols=("linear",), root=root / "runs",
                                     log=None)
    return root, records


def test_every_arm_and_seed_is_scored(tiny):
    _, records = tiny
    rows = claims.score_rows(records)
    assert len(rows) == 3 * 2 * 2  # arms x seeds x tasks
    assert {r["protocol"] for r in rows} == {"linear"} and all(r["num_test"] == 16 for r in rows)
    students = {r["model_hash"] for r in rows if r["arm"] == "image-teacher student"}
    assert len(students) == 2  # one student per seed, the teachers shared


def test_exported_records_rebuild_the_tables_exactly(tiny):
    root, records = tiny
    dest = claims.write_results(records, root / "results")
    assert not list((dest / "runs").rglob("*.pth"))  # records only, never weights
    verbs = {p.name for p in (dest / "runs").iterdir()}
    assert verbs == {"pretrain-image", "pretrain-video", "distill", "probe"}  # the teachers come along
    tables, verdicts = claims.build_tables(dest)
    assert tables == (dest / "tables.md").read_text()
    assert verdicts == json.loads((dest / "verdicts.json").read_text())
    scores = json.loads((dest / "scores.json").read_text())
    scores[0]["top1"] += 1.0  # a table that does not come from the records is refused
    (dest / "scores.json").write_text(json.dumps(scores))
    with pytest.raises(ValueError, match="does not match the run records"):
        claims.build_tables(dest)


def test_an_experiment_extended_with_finetunes_of_some_arms_keeps_its_records(tiny, tmp_path):
    root, records = tiny
    dest = claims.write_results(records, tmp_path / "results")
    first = {p.relative_to(dest): p.read_bytes() for p in (dest / "runs").rglob("*.json")}
    more = claims.run_experiments("smoke", seeds=(0, 1), arms=["video-teacher student"], protocols=("finetune",),
                                  root=root / "runs", log=None)
    claims.write_results(more, dest, extend=True)
    rows = json.loads((dest / "scores.json").read_text())
    finetuned = {(r["arm"], r["seed"], r["task"]) for r in rows if r["protocol"] == "finetune"}
    assert finetuned == {("video-teacher student", s, t) for s in (0, 1) for t in claims.TASKS}
    assert len([r for r in rows if r["protocol"] == "linear"]) == 3 * 2 * 2  # the first experiment's rows stay
    assert all((dest / name).read_bytes() == data for name, data in first.items())  # and its records, unchanged
    tables, _ = claims.build_tables(dest)
    assert tables == (dest / "tables.md").read_text() and "finetune" in tables
    # another profile's or seeds' runs are not the same models: refused before anything is written
    with pytest.raises(claims.ConfigError, match="seeds"):
        claims.extendable(dest, "smoke", (), (0,))
    with pytest.raises(claims.ConfigError, match="no experiment"):
        claims.extendable(tmp_path / "nothing", "smoke", (), (0, 1))
    # a probe of other protocols for an arm that has one would be dropped silently: refused
    attentive = claims.run_experiments("smoke", seeds=(0,), arms=["random init"], protocols=("attentive",),
                                       root=root / "runs", log=None)
    attentive.seeds = (0, 1)
    with pytest.raises(claims.ConfigError, match="new experiment"):
        claims.write_results(attentive, dest, extend=True)
