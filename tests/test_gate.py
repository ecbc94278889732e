"""The teacher-quality gate: standard-error arithmetic, the decision (a case that passes and each way it can
fail), probes on constructed features with known answers, the cross-frame similarity, and one tiny
end-to-end call on random nano encoders."""
import json
import math

import mvd_lib  # noqa: F401  (installs the torchvision guard before anything imports torchvision)
import numpy as np
import pytest

from mvd_lib import gate as G
from mvd_lib.probe import Features


def _rows(img_app, vid_app, rimg_app, rvid_app, img_mot, vid_mot, rimg_mot, rvid_mot, n=1000, mean=None):
    """Gate rows with the given time-pooling accuracies (mean pooling: `mean` or the same numbers)."""
    acc = {"image_teacher": (img_app, img_mot), "video_teacher": (vid_app, vid_mot),
           "random_image": (rimg_app, rimg_mot), "random_video": (rvid_app, rvid_mot)}
    rows = {}
    for name, (a, m) in acc.items():
        ma, mm = (mean[name] if mean else (a, m))
        rows[name] = {"appearance": {"mean": G.Score(ma, n), "time": G.Score(a, n)},
                      "motion": {"mean": G.Score(mm, n), "time": G.Score(m, n)}}
    return rows


PASSING = dict(img_app=60.0, vid_app=45.0, rimg_app=30.0, rvid_app=28.0,
               img_mot=20.0, vid_mot=50.0, rimg_mot=18.0, rvid_mot=25.0)


# ---------------------------------------------------------------------------------------------- arithmetic
def test_binomial_standard_error_known_values():
    assert G.binomial_se(50.0, 100) == pytest.approx(5.0)
    assert G.binomial_se(90.0, 400) == pytest.approx(1.5)
    assert G.binomial_se(0.0, 10) == 0.0 and G.binomial_se(100.0, 10) == 0.0
    assert G.Score(20.0, 1600).se == pytest.approx(1.0)
    with pytest.raises(ValueError):
        G.binomial_se(50.0, 0)
    with pytest.raises(ValueError):
        G.binomial_se(0.5 + 100, 10)


def test_check_uses_the_standard_error_of_the_difference():
    rows = _rows(**PASSING)
    check = G.compare(rows, "appearance", "image_teacher", "video_teacher")
    se_a, se_b = 100 * math.sqrt(0.6 * 0.4 / 1000), 100 * math.sqrt(0.45 * 0.55 / 1000)
    assert check.diff == pytest.approx(15.0)
    assert check.se_diff == pytest.approx(math.hypot(se_a, se_b))
    assert check.z == pytest.approx(15.0 / math.hypot(se_a, se_b))
    assert check.passed and check.readout == "time"


def test_margin_is_strictly_more_than_three_standard_errors():
    # 50% vs p on n = 10_000: choose the worse accuracy so that z lands just below / just above 3
    n = 10_000
    def z_for(worse):
        return G.compare({"a": {"t": {"time": G.Score(50.0, n)}}, "b": {"t": {"time": G.Score(worse, n)}}},
                         "t", "a", "b")
    below, above = z_for(47.9), z_for(47.8)
    assert below.z < 3 < above.z
    assert not below.passed and above.passed
    equal = G.compare({"a": {"t": {"time": G.Score(0.0, n)}}, "b": {"t": {"time": G.Score(0.0, n)}}}, "t", "a", "b")
    assert equal.z == 0.0 and not equal.passed  # zero variance, zero difference: not a win


# ---------------------------------------------------------------------------------------------- decision
def test_passing_case():
    checks = G.decide(_rows(**PASSING))
    assert [(c.task, c.better, c.worse) for c in checks] == list(G.PREMISES)
    assert all(c.passed for c in checks)
    assert G.GateResult(_rows(**PASSING), checks).passed


@pytest.mark.parametrize("change, failing", [
    (dict(vid_app=58.0), ("appearance", "image_teacher", "video_teacher")),  # video teacher as good spatially
    (dict(vid_app=70.0), ("appearance", "image_teacher", "video_teacher")),  # video teacher better spatially
    (dict(rimg_app=57.0), ("appearance", "image_teacher", "random_image")),  # image teacher at its floor
    (dict(img_mot=47.0), ("motion", "video_teacher", "image_teacher")),  # image teacher as good temporally
    (dict(rvid_mot=48.0), ("motion", "video_teacher", "random_video")),  # video teacher at its floor
])
def test_each_way_to_fail(change, failing):
    checks = G.decide(_rows(**{**PASSING, **change}))
    failed = [(c.task, c.better, c.worse) for c in checks if not c.passed]
    assert failed == [failing]
    assert not G.GateResult(_rows(**{**PASSING, **change}), checks).passed


def test_decision_uses_time_pooling_not_mean_pooling():
    # mean pooling would fail every premise (all 30 %), time pooling passes: PASS
    flat = {name: (30.0, 30.0) for name in G.ENCODERS}
    rows = _rows(**PASSING, mean=flat)
    assert G.GateResult(rows, G.decide(rows)).passed
    assert not all(c.passed for c in G.decide(rows, readout="mean"))
    # and the other way round: time pooling flat, mean pooling passing -> FAIL
    means = {"image_teacher": (60.0, 20.0), "video_teacher": (45.0, 50.0), "random_image": (30.0, 18.0),
             "random_video": (28.0, 25.0)}
    rows = _rows(**{k: 30.0 for k in PASSING}, mean=means)
    assert not G.GateResult(rows, G.decide(rows)).passed


def test_compare_names_a_missing_score():
    rows = _rows(**PASSING)
    del rows["random_video"]["motion"]["time"]
    with pytest.raises(KeyError, match="random_video"):
        G.decide(rows)


def test_markdown_and_json():
    rows = _rows(**PASSING)
    result = G.GateResult(rows, G.decide(rows), split="val", num_train=3000, num_eval=1000,
                          chance={"appearance": 10.0, "motion": 100 / 6},
                          similarity={name: 0.5 for name in G.ENCODERS})
    text = result.markdown()
    assert "| encoder | appearance (mean) | appearance (time) | motion (mean) | motion (time) | cross-frame cos (slots) |" in text
    assert f"| image_teacher | 60.0 ± {G.binomial_se(60.0, 1000):.1f} |" in text
    assert "gate: PASS" in text and text.count("- PASS") == 4
    data = json.loads(json.dumps(result.to_dict()))
    assert data["passed"] is True and data["rows"]["video_teacher"]["motion"]["time"]["acc"] == 50.0
    assert data["rows"]["video_teacher"]["motion"]["time"]["se"] == pytest.approx(G.binomial_se(50.0, 1000))
    assert len(data["checks"]) == 4 and all(c["passed"] for c in data["checks"])


def test_a_recorded_result_reads_back_as_it_was_written():
    rows = _rows(**PASSING, n=2000)
    result = G.GateResult(rows, G.decide(rows), split="test", num_train=3000, num_eval=2000,
                          chance={"appearance": 10.0, "motion": 100 / 12},
                          similarity={name: 0.25 for name in G.ENCODERS}, details={"profile": "quick"})
    back = G.GateResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.markdown() == result.markdown() and back.to_dict() == result.to_dict()
    failing = _rows(**{**PASSING, "vid_mot": 26.0}, n=2000)
    assert not G.GateResult.from_dict(G.GateResult(failing, G.decide(failing)).to_dict()).passed
    tampered = result.to_dict() | {"passed": False}
    with pytest.raises(ValueError, match="verdict"):
        G.GateResult.from_dict(tampered)


def test_a_record_is_named_by_every_input_of_the_gate(tmp_path):
    from mvd_lib.profiles import profile

    p = profile("smoke")
    args = dict(p=p, image_teacher="pretrain-image@aaaa 0123", video_teacher="pretrain-video@bbbb 4567", split="val",
                num_train=32, num_eval=16, root=tmp_path)
    path = G.record_path(**args)
    assert path.parent == tmp_path / "gate" and path.name.startswith("smoke-") and path.suffix == ".json"
    assert G.record_path(**args) == path
    changed = [{"image_teacher": "pretrain-image@cccc 0123"}, {"image_teacher": "pretrain-image@aaaa 89ab"},
               {"video_teacher": "pretrain-video@cccc 4567"}, {"split": "test"},
               {"num_train": 33}, {"num_eval": 17}, {"p": profile("smoke", seed=1)},
               {"p": profile("smoke", ["data.synthetic.num_appearance=5"])}]
    assert len({G.record_path(**(args | c)) for c in changed} | {path}) == len(changed) + 1


# ---------------------------------------------------------------------------------------------- diagnostics
def test_cross_frame_similarity_known_answers():
    rng = np.random.default_rng(0)
    n, t, d = 400, 4, 32
    clip = rng.normal(size=(n, 1, d))
    slot_offset = rng.normal(size=(1, t, d)) * 10  # a per-slot constant does not count
    assert G.cross_frame_similarity(clip + slot_offset) == pytest.approx(1.0)
    independent = rng.normal(size=(n, t, d))
    assert abs(G.cross_frame_similarity(independent)) < 0.03
    # half shared, half independent: cosine ~ 1/2
    mixed = clip + rng.normal(size=(n, t, d))
    assert G.cross_frame_similarity(mixed) == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError):
        G.cross_frame_similarity(rng.normal(size=(n, 1, d)))


def test_token_cross_frame_similarity_known_answers():
    rng = np.random.default_rng(0)
    n, t, s, d = 300, 4, 3, 16
    per_position = rng.normal(size=(n, 1, s, d))  # constant over time at each position
    assert G.token_cross_frame_similarity(per_position + rng.normal(size=(1, t, s, d))) == pytest.approx(1.0)
    assert abs(G.token_cross_frame_similarity(rng.normal(size=(n, t, s, d)))) < 0.03
    # a clip-level constant shared by all positions, but the positions themselves change: 1/2 shared variance
    shared = rng.normal(size=(n, 1, 1, d))
    assert G.token_cross_frame_similarity(shared + rng.normal(size=(n, t, s, d))) == pytest.approx(0.5, abs=0.05)


# ---------------------------------------------------------------------------------------------- probes
def _features(x_train, x_eval, labels_train, labels_eval, grid):
    out = []
    for x, labels in ((x_train, labels_train), (x_eval, labels_eval)):
        n = len(x)
        slots = x.reshape(n, grid[0], -1)
        out.append({"time": Features(x=x, y=labels["appearance"], index=np.arange(n), labels=labels,
                                     label="appearance", pooling="time", grid=grid),
                    "mean": Features(x=slots.mean(1), y=labels["appearance"], index=np.arange(n), labels=labels,
                                     label="appearance", pooling="mean", grid=grid)})
    return tuple(out)


def test_gate_from_features_known_answer():
    """Constructed features: the image teacher carries the appearance label, the video teacher the motion
    label (only in the order of its time slots), the floors carry nothing. The gate must PASS, with the
    video teacher near chance on motion under mean pooling and far above it under time pooling."""
    rng = np.random.default_rng(1)
    n_train, n_eval, t, d, k = 600, 400, 2, 8, 4
    grid = (t, 1, 1)

    def labels(n):
        return {"appearance": rng.integers(k, size=n), "motion": rng.integers(2, size=n)}

    lab_tr, lab_ev = labels(n_train), labels(n_eval)

    def make(kind, lab):
        n = len(lab["appearance"])
        x = rng.normal(size=(n, t, d))
        if kind == "image":
            x[:, :, :k] += 3.0 * np.eye(k)[lab["appearance"]][:, None, :]  # the same in every slot
        if kind == "video":  # motion 0: +s in slot 0, -s in slot 1; motion 1: the reverse; mean over slots 0
            s = np.where(lab["motion"] == 0, 3.0, -3.0)[:, None]
            x[:, 0, 0] += s[:, 0]
            x[:, 1, 0] -= s[:, 0]
        return x.reshape(n, t * d)

    feats = {name: _features(make(kind, lab_tr), make(kind, lab_ev), lab_tr, lab_ev, grid)
             for name, kind in (("image_teacher", "image"), ("video_teacher", "video"),
                                ("random_image", "none"), ("random_video", "none"))}
    result = G.gate_from_features(feats, c_grid=(0.01, 1.0))
    assert result.passed, result.markdown()
    assert result.num_train == n_train and result.num_eval == n_eval
    assert result.chance == {"appearance": 25.0, "motion": 50.0}
    assert result.rows["image_teacher"]["appearance"]["time"].acc > 90
    assert result.rows["video_teacher"]["motion"]["time"].acc > 90
    assert abs(result.rows["video_teacher"]["motion"]["mean"].acc - 50) < 10  # order is invisible to the mean
    assert result.similarity["image_teacher"] > result.similarity["video_teacher"]


def test_gate_needs_all_four_encoders():
    with pytest.raises(KeyError, match="random_video"):
        G.gate_from_features({name: ({}, {}) for name in G.ENCODERS[:3]})


# ---------------------------------------------------------------------------------------------- end to end
def test_evaluate_gate_end_to_end_on_nano_encoders():
    from mvd_lib.config import vit_config
    from mvd_lib.mae import ImageViT
    from mvd_lib.synthetic import SyntheticConfig
    from mvd_lib.videomae import videomae_encoder

    cfg = SyntheticConfig(frames=8, height=16, width=16, num_appearance=3, motions=("right", "left", "down", "up"))
    vit = vit_config("vit_nano", num_frames=8, img_size=16, patch_size=4, tubelet_size=2)
    encoders = {"image_teacher": ImageViT(vit, seed=1), "video_teacher": videomae_encoder(vit, seed=2),
                "random_image": ImageViT(vit, seed=3), "random_video": videomae_encoder(vit, seed=4)}
    result = G.evaluate_gate(encoders, cfg, num_train=40, num_eval=20, split="val", batch_size=16,
                             c_grid=(1.0,))
    assert list(result.rows) == list(G.ENCODERS)
    for by_task in result.rows.values():
        assert set(by_task) == {"appearance", "motion"}
        for scores in by_task.values():
            assert set(scores) == {"mean", "time"} and all(s.n == 20 for s in scores.values())
    assert len(result.checks) == 4 and result.num_train == 40 and result.split == "val"
    assert set(result.similarity) == set(G.ENCODERS) == set(result.token_similarity)
    assert all(-1.0 <= v <= 1.0 for v in [*result.similarity.values(), *result.token_similarity.values()])
    # a bare image encoder reads the front frame of each tubelet: 4 time slots, like the video encoders
    assert result.details["grids"] == {name: (4, 4, 4) for name in G.ENCODERS}
    with pytest.raises(ValueError, match="val"):
        G.evaluate_gate(encoders, cfg, num_train=8, num_eval=8, split="train")
    with pytest.raises(KeyError, match="random_image"):
        G.evaluate_gate({k: v for k, v in encoders.items() if k != "random_image"}, cfg, 8, 8)
