"""The notebooks' views of the claims (claims.py, notebook views): comparisons of any arms, verdicts as rows and as
sentences, Figure 3 matrices from saved rows, the exact-rebuild check, and sections of docs/paper_results.md."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mvd_lib import claims


def rows_for(values: dict[tuple[str, str], list[float]], protocol: str = "linear") -> list[dict]:
    return [{"arm": arm, "seed": s, "protocol": protocol, "task": task, "top1": v}
            for (arm, task), vs in values.items() for s, v in enumerate(vs)]


C2_HOLDS = {("image-teacher student", "appearance"): [60.0, 62.0, 61.0],
            ("video-teacher student", "appearance"): [40.0, 41.0, 42.0],
            ("image-teacher student", "motion"): [30.0, 31.0, 29.0],
            ("video-teacher student", "motion"): [50.0, 52.0, 51.0]}


def test_compare_arms_agrees_with_judge_on_a_claims_comparisons():
    rows = rows_for(C2_HOLDS) + rows_for(C2_HOLDS, "finetune")
    assert claims.compare_arms(rows, claims.CLAIMS["C2"].comparisons) == claims.judge(rows, ["C2"])["C2"]


def test_random_teacher_controls():
    rows = rows_for({("co-teaching student", "motion"): [50.0, 52.0, 51.0],
                     ("random-teacher student", "motion"): [20.0, 21.0, 22.0],
                     ("video-teacher student", "motion"): [20.0, 21.0, 22.0],
                     ("random-video-teacher student", "motion"): [50.0, 52.0, 51.0]})
    result = claims.compare_arms(rows, claims.RANDOM_TEACHER_CONTROLS)
    assert list(result) == ["linear"]  # only the protocol that has scores
    outcomes = result["linear"]["outcomes"]
    assert [(o["better"], o["worse"], o["verdict"]) for o in outcomes] == [
        ("co-teaching student", "random-teacher student", "reproduced"),
        ("video-teacher student", "random-video-teacher student", "not reproduced")]  # the others have no scores
    assert result["linear"]["verdict"] == "not reproduced"
    for name in ("random-image-teacher student", "random-video-teacher student"):
        assert claims.ARMS[name].verb == "distill"
        assert name not in claims.arms_needed()  # not part of the default experiment


def test_verdict_rows_carry_the_numbers():
    verdicts = claims.judge(rows_for(C2_HOLDS), ["C2"])
    rows = claims.verdict_rows(verdicts)
    assert len(rows) == 2  # two comparisons, one protocol
    first = rows[0]
    assert (first["claim"], first["protocol"], first["task"]) == ("C2", "linear", "appearance")
    assert first["better mean ± std"] == "61.0 ± 1.0" and first["worse mean ± std"] == "41.0 ± 1.0"
    assert first["n"] == 3 and first["difference"] == pytest.approx(20.0)
    assert first["p"] == pytest.approx(claims.welch_greater([60, 62, 61], [40, 41, 42]))
    assert first["verdict"] == first["claim verdict"] == "reproduced"


def test_findings_are_written_from_the_numbers():
    (sentence,) = claims.findings(claims.judge(rows_for(C2_HOLDS), ["C2"]))
    p = claims.welch_greater([60, 62, 61], [40, 41, 42])
    assert sentence.startswith("C2 (Table 1) on linear: reproduced (appearance: ")
    assert f"image-teacher student 61.0 ± 1.0 vs video-teacher student 41.0 ± 1.0 over 3 seeds, p = {p:.3g}" in sentence
    assert "motion: video-teacher student 51.0 ± 1.0 vs image-teacher student 30.0 ± 1.0" in sentence

    one_seed = {k: v[:1] for k, v in C2_HOLDS.items()}  # one seed: Welch cannot decide
    (sentence,) = claims.findings(claims.judge(rows_for(one_seed), ["C2"]))
    assert sentence.startswith("C2 (Table 1) on linear: inconclusive (")
    assert "image-teacher student 60.0 vs video-teacher student 40.0 over 1 seed, p = n/a, inconclusive" in sentence


def test_findings_and_rows_of_c4_and_c8():
    c4 = {"benchmark (val)": {"verdict": "reproduced", "outcomes": [
        {"better": "image teacher", "worse": "video teacher", "over": "clips", "better_value": 0.9,
         "worse_value": 0.4, "p_greater": 0.001, "p_reverse": 0.999, "verdict": "reproduced"},
        {"better": "image-teacher student", "worse": "video-teacher student", "over": "seeds", "better_value": 0.7,
         "worse_value": 0.5, "better_seeds": [0.6, 0.8], "worse_seeds": [0.5, 0.5], "p_greater": 0.04,
         "p_reverse": 0.96, "verdict": "reproduced"}]}}
    scores = rows_for({("video-teacher student", "motion"): [50.0, 52.0], ("VideoMAE longer", "motion"): [40.0, 42.0]})
    compute = [{"arm": "video-teacher student", "seed": s, "total_pflop": 2.0, "wall_time_s": 1.0} for s in (0, 1)]
    compute += [{"arm": "VideoMAE longer", "seed": s, "total_pflop": 3.0, "wall_time_s": 1.0} for s in (0, 1)]
    verdicts = {"C4": c4, "C8": claims.judge_compute(scores, compute)}
    c4_text, c8_text = claims.findings(verdicts)
    assert c4_text == ("C4 (Figure 3) on benchmark (val): reproduced: slot-centred constancy image teacher 0.900 vs "
                       "video teacher 0.400 (over clips, p = 0.001); image-teacher student 0.700 vs video-teacher "
                       "student 0.500 (over seeds, p = 0.04).")
    assert c8_text.startswith("C8 (Table 6) on linear: reproduced with total training compute (teachers counted) "
                              "video-teacher student 2 PFLOP vs VideoMAE longer 3 PFLOP (motion: ")
    rows = claims.verdict_rows(verdicts)
    assert [r["claim"] for r in rows] == ["C4", "C4", "C8"]
    assert rows[0]["n"] is None and rows[0]["better mean ± std"] == "0.900"  # one model each, over clips
    assert rows[1]["n"] == 2 and rows[1]["better mean ± std"] == "0.700 ± 0.141"
    assert rows[2]["protocol"] == "linear" and rows[2]["difference"] == pytest.approx(10.0)


def test_similarity_matrices_average_seeds_in_figure_order():
    eye, ones = np.eye(3), np.ones((3, 3))
    rows = [{"arm": "video teacher", "seed": 0, "dataset": "d", "raw": ones.tolist(), "centred": eye.tolist(),
             "num_clips": 5, "source": "target"},
            {"arm": "image-teacher student", "seed": 0, "dataset": "d", "raw": eye.tolist(), "centred": eye.tolist(),
             "num_clips": 5, "source": "encoder"},
            {"arm": "image-teacher student", "seed": 1, "dataset": "d", "raw": ones.tolist(), "centred": -eye,
             "num_clips": 5, "source": "encoder"},
            {"arm": "video teacher", "seed": 0, "dataset": "other", "raw": eye.tolist(), "centred": eye.tolist(),
             "num_clips": 5, "source": "target"}]
    mats = claims.similarity_matrices(rows, "d")
    assert list(mats) == ["video teacher", "image-teacher student"]  # SIMILARITY_ARMS order
    np.testing.assert_allclose(mats["video teacher"].raw, ones)
    np.testing.assert_allclose(mats["image-teacher student"].raw, (eye + ones) / 2)
    np.testing.assert_allclose(mats["image-teacher student"].centred, np.zeros((3, 3)))
    assert mats["video teacher"].num_clips == 5 and mats["video teacher"].source == "target"
    with pytest.raises(KeyError, match="no similarity rows for dataset 'missing'"):
        claims.similarity_matrices(rows, "missing")


def test_paper_section():
    text = claims.paper_section("Table 6")
    assert text.startswith("## Table 6: training time") and "| VideoMAE | 1600 | 214 | 81.5 |" in text
    assert "## Table 7" not in text
    assert "MVD-H(T-H, 800 ep) 87.3/97.4" in claims.paper_section("Tables 3, 4, 5")
    with pytest.raises(KeyError, match="no section '## Table 10"):
        claims.paper_section("Table 10")


def test_similarity_datasets_at_the_profiles_geometry(monkeypatch):
    from mvd_lib import samples

    asked = []  # the footage is decoded elsewhere (tests/test_samples.py); here only what is asked of it
    monkeypatch.setattr(samples, "footage_clips", lambda name, frames, size: asked.append((name, frames, size)) or name)
    data = claims.similarity_datasets("smoke")
    assert list(data) == ["benchmark (val)", "bigbuckbunny", "bikes"]
    assert len(data["benchmark (val)"]) == 16 and tuple(data["benchmark (val)"][0]["video"].shape) == (3, 8, 16, 16)
    assert asked == [("bigbuckbunny", 8, 16), ("bikes", 8, 16)] and data["bikes"] == "bikes"


def test_rebuild_differences_with_one_seed(tmp_path):
    """A one-seed experiment: its p-values are NaN, so the saved verdicts never equal the rebuilt ones as Python
    objects (NaN != NaN), yet the rebuild is exact as text; a changed byte in either file is found."""
    from mvd_lib import runner

    # two random encoders stand in for two students: the check is about records, not about what they hold
    probes = [runner.run("probe", "smoke", encoder="random", seed=s, root=tmp_path / "runs", progress=False)
              for s in (0, 1)]
    records = claims.Records("smoke", (0,), {("image-teacher student", 0): {"model": None, "probe": probes[0]},
                                             ("video-teacher student", 0): {"model": None, "probe": probes[1]}})
    dest = claims.write_results(records, tmp_path / "results")
    saved = json.loads((dest / "verdicts.json").read_text())
    assert np.isnan(saved["C2"]["linear"]["outcomes"][0]["p_greater"])
    assert saved != claims.build_tables(dest)[1]  # NaN: object equality cannot tell
    assert claims.rebuild_differences(dest) == []

    tables = (dest / "tables.md").read_text()
    (dest / "tables.md").write_text(tables.replace("Top-1 %", "Top-1 percent", 1))
    (problem,) = claims.rebuild_differences(dest)
    assert "tables.md differs from its rebuild at line 3" in problem and "Top-1 percent" in problem
    (dest / "tables.md").write_text(tables)
    (dest / "verdicts.json").write_text((dest / "verdicts.json").read_text() + "\n")
    (problem,) = claims.rebuild_differences(dest)
    assert "verdicts.json differs from its rebuild" in problem and "<end>" in problem
    (dest / "verdicts.json").unlink()
    assert claims.rebuild_differences(dest) == [f"{dest / 'verdicts.json'} is missing"]


def test_results_of_some_claims_show_only_their_sections_and_name_the_profile_overrides(tmp_path):
    """An experiment run for some claims (`claims --claims C2,C3 --profile-set ...`): its tables hold the sections
    it can judge, name the others as not run, and carry the profile overrides through export and rebuild."""
    from mvd_lib import runner

    probes = [runner.run("probe", "smoke", encoder="random", seed=s, root=tmp_path / "runs", progress=False)
              for s in (0, 1)]
    runs = {("image-teacher student", s): {"model": None, "probe": probes[s]} for s in (0, 1)}
    runs |= {("video-teacher student", s): {"model": None, "probe": probes[1 - s]} for s in (0, 1)}
    records = claims.Records("smoke", (0, 1), runs, overrides=("distill_optim.epochs=3",))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "similarity.json").write_text('[{"arm": "image teacher"}]\n')  # an earlier experiment's
    dest = claims.write_results(records, tmp_path / "results")
    assert not (dest / "similarity.json").exists()
    assert claims.load_export(dest).overrides == ("distill_optim.epochs=3",)
    assert claims.results_match(records, dest)
    assert not claims.results_match(claims.Records("smoke", (0, 1), runs), dest)  # other profile overrides
    tables = (dest / "tables.md").read_text()
    assert tables.startswith("# Results: profile smoke with distill_optim.epochs=3, seeds [0, 1]\n")
    assert [line for line in tables.splitlines() if line.startswith("## ")] == [
        f"## Table 1 (C2): {claims.CLAIMS['C2'].text}", "## Run times, from the run records"]
    assert ("Not in this experiment (their arms were not run): Table 2 (C1), Table 7 (C5), "
            "Table 8 (C6), Table 9 (C7), C3 (Table 1), Figure 3 (C4), Table 6 (C8).\n") in tables
    # the run times are the records' own: the two probes, nothing shipped
    times = [p.metrics["wall_time_s"] for p in probes]
    assert claims.run_times(dest) == [{"verb": "probe", "preset": "smoke", "runs": 2, "total_s": sum(times),
                                       "min_s": min(times), "max_s": max(times), "shipped": False}]
    assert tables.endswith(f"| probe | smoke | 2 | {sum(times):.0f} | {min(times):.0f}-{max(times):.0f} |\n\n"
                           f"Every run but the shipped ones: 2 runs, {sum(times):.0f} s ({sum(times) / 3600:.2f} h).\n")
    shipped = tmp_path / "artifacts" / "probe" / probes[0].folder.name  # as if the repository shipped one probe
    shipped.mkdir(parents=True)
    (shipped / "metrics.json").write_text("{}")
    assert sorted((r["runs"], r["shipped"]) for r in claims.run_times(dest, artifacts=tmp_path / "artifacts")) == [
        (1, False), (1, True)]
    assert claims.rebuild_differences(dest) == []


COMMITTED = sorted(p for p in (Path(__file__).resolve().parents[1] / "results").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_results_rebuild_exactly_from_their_run_records(folder):
    """Every results folder in git (results/laptop, results/quick, ...): its tables and verdicts are exactly what
    its saved run records give."""
    assert claims.rebuild_differences(folder) == []


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_each_committed_run_records_the_command_that_names_it(folder):
    """Every saved run record's command.txt, parsed as the command line parses it, rebuilds a config whose hash
    (with the record's dependencies) is the run's own: the command reproduces that run, not its preset's."""
    from mvd_lib.config import config_hash
    from mvd_lib.profiles import preset

    records = sorted(folder.glob("runs/*/*/config.json"))
    assert records
    for path in records:
        record = json.loads(path.read_text())
        words = shlex.split((path.parent / "command.txt").read_text())
        assert words[:4] == ["python", "-m", "mvd_lib", record["verb"]] and "#" not in words, path
        values = {flag: [words[i + 1] for i, w in enumerate(words) if w == flag]
                  for flag in ("--preset", "--set", "--profile-set")}
        cfg = preset(record["verb"], values["--preset"][0], values["--set"], values["--profile-set"])
        assert config_hash(cfg, record["dependencies"] or None) == record["hash"], path


def test_table_beside_paper():
    rows = rows_for(C2_HOLDS) + rows_for({("random init", "motion"): [10.0, 12.0, 11.0]}, "finetune")
    table = claims.table_beside_paper(rows, "Table 1")
    assert list(table.index) == ["image-teacher student", "video-teacher student", "co-teaching student",
                                 "random init", "random-teacher student"]  # the claim's arms, then the controls
    assert table.loc["image-teacher student", "linear appearance"] == "61.0 ± 1.0 (n=3)"
    assert table.loc["random init", "finetune motion"] == "11.0 ± 1.0 (n=3)"
    assert table.loc["random init", "linear motion"] == ""  # no scores: an empty cell
    assert table.loc["co-teaching student", "paper SSv2"] == 70.7 and np.isnan(table.loc["random init", "paper K400"])
    assert list(claims.table_beside_paper(rows, "Table 7", ["image teacher + pixels"]).loc[
        "image teacher + pixels", ["paper K400", "paper SSv2"]].fillna(-1)) == [-1, 67.9]  # Table 7: SSv2 only
    with pytest.raises(KeyError, match="no paper numbers for 'Table 6'"):
        claims.table_beside_paper(rows, "Table 6")


def test_results_match(tmp_path):
    from mvd_lib import runner

    probes = [runner.run("probe", "smoke", encoder="random", seed=s, root=tmp_path / "runs", progress=False)
              for s in (0, 1)]
    records = claims.Records("smoke", (0,), {("random init", 0): {"model": None, "probe": probes[0]}})
    dest = tmp_path / "results"
    assert not claims.results_match(records, dest)  # nothing written yet
    claims.write_results(records, dest)
    assert claims.results_match(records, dest)
    other = claims.Records("smoke", (0,), {("random init", 0): {"model": None, "probe": probes[1]}})
    assert not claims.results_match(other, dest)  # another run behind the same arm
    assert not claims.results_match(claims.Records("smoke", (0, 1), records.runs), dest)  # other seeds
    (dest / "tables.md").unlink()
    assert not claims.results_match(records, dest)  # incomplete results are written again
