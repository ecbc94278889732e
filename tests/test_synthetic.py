"""The synthetic benchmark's design, tested: determinism, disjoint splits, time-reversal twins, motion that
lives only in the frame order (linear probes), appearance visible in every frame, and the torch datasets."""
import dataclasses

import mvd_lib  # noqa: F401  (installs the torchvision guard before anything imports torchvision)
import numpy as np
import pytest
import torch

from mvd_lib import synthetic as S
from mvd_lib import transforms as T

CFG = S.SyntheticConfig()


# ---------------------------------------------------------------------------------------------- config
def test_defaults_documented_values():
    assert (CFG.frames, CFG.height, CFG.width) == (16, 32, 32)
    assert CFG.speed_px == 2.0 and CFG.object_px == 16.0  # 2 px/frame: the object crosses the frame once
    assert CFG.num_motions == 10 and CFG.num_appearance == 16
    assert S.SyntheticConfig(height=64, width=64).speed_px == 4.0
    assert S.SyntheticConfig(speed=3.0).speed_px == 3.0


@pytest.mark.parametrize("bad", [
    dict(frames=0), dict(height=4), dict(num_appearance=1), dict(num_appearance=17),
    dict(motions=("right", "up")),  # twins missing
    dict(motions=("right", "left", "right")), dict(motions=("sideways", "left")),
    dict(growth=0.5), dict(noise=-0.1), dict(speed=-1.0), dict(object_size=0.0), dict(jitter=1.0),
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        S.SyntheticConfig(**bad)


def test_synthetic_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown SyntheticConfig field"):
        S.synthetic_config(frame=16)
    assert S.synthetic_config(frames=8).frames == 8


# ---------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("geometry", [(16, 32, 32), (16, 64, 64), (8, 32, 32), (4, 16, 16), (6, 24, 40)])
def test_any_geometry(geometry):
    t, h, w = geometry
    cfg = S.SyntheticConfig(frames=t, height=h, width=w)
    video, a, m = S.make_clip(cfg, "train", 5)
    assert video.shape == (t, h, w, 3) and video.dtype == np.uint8
    assert 0 <= a < cfg.num_appearance and 0 <= m < cfg.num_motions
    item = S.SyntheticClips("train", 8, cfg, task="motion")[5]
    assert item["video"].shape == (3, t, h, w) and item["video"].dtype == torch.float32
    image, _ = S.make_image(cfg, 3)
    assert image.shape == (h, w, 3)


def test_same_seed_same_clip():
    v1, a1, m1 = S.make_clip(CFG, "train", 17)
    v2, a2, m2 = S.make_clip(S.SyntheticConfig(), "train", 17)  # a fresh, equal config
    np.testing.assert_array_equal(v1, v2)
    assert (a1, m1) == (a2, m2)
    np.testing.assert_array_equal(S.make_image(CFG, 9)[0], S.make_image(CFG, 9)[0])


def test_seed_split_and_index_change_the_clip():
    base = S.make_clip(CFG, "train", 3)[0]
    others = [S.make_clip(dataclasses.replace(CFG, seed=1), "train", 3)[0], S.make_clip(CFG, "train", 4)[0]]
    others += [S.make_clip(CFG, split, 3)[0] for split in ("pretrain", "val", "test")]
    for other in others:
        assert np.abs(base.astype(int) - other.astype(int)).mean() > 5
    image = S.make_image(CFG, 3)[0]
    assert np.abs(image.astype(int) - base[0].astype(int)).mean() > 5


def test_eval_splits_use_held_out_glyphs():
    bank = S.glyph_bank()
    for label in range(len(S.APPEARANCES)):  # every class keeps ~1/5 of its bitmaps for val/test
        held, kept = len(bank.pool(label, True)), len(bank.pool(label, False))
        assert 0.18 < held / (held + kept) < 0.22 and held >= 25
    for split, heldout in [("pretrain", False), ("train", False), ("images", False), ("val", True), ("test", True)]:
        glyphs = [o.glyph for i in range(60) for o in S.sample_spec(CFG, split, i).objects]
        assert all(bank.heldout[g] == heldout for g in glyphs), split
        specs = [S.sample_spec(CFG, split, i) for i in range(60)]
        assert all(bank.labels[s.objects[0].glyph] == s.appearance for s in specs)
    mixed = dataclasses.replace(CFG, heldout_glyphs=False)
    glyphs = {o.glyph for i in range(300) for o in S.sample_spec(mixed, "train", i).objects}
    assert any(bank.heldout[g] for g in glyphs) and not all(bank.heldout[g] for g in glyphs)


def test_labels_sampled_independently_and_balanced():
    from scipy.stats import chi2_contingency

    n = 6000
    draws = np.array([S.item_labels(CFG, "train", i) for i in range(n)])
    table = np.zeros((CFG.num_appearance, CFG.num_motions))
    np.add.at(table, (draws[:, 0], draws[:, 1]), 1)
    assert chi2_contingency(table).pvalue > 0.001  # no association between the two labels
    for counts, k in [(table.sum(1), CFG.num_appearance), (table.sum(0), CFG.num_motions)]:
        assert np.all(np.abs(counts - n / k) < 5 * np.sqrt(n / k))  # uniform within 5 sigma
    ds = S.SyntheticClips("train", 40, CFG)
    items = [ds[i] for i in range(40)]
    assert [S.sample_spec(CFG, "train", i).appearance for i in range(40)] == [it["appearance"] for it in items]
    assert ds.labels("appearance").tolist() == [it["appearance"] for it in items]
    assert ds.labels("motion").tolist() == [it["motion"] for it in items]


# ---------------------------------------------------------------------------------------------- time reversal
def test_twin_mapping_is_a_fixed_point_free_involution():
    everything = S.SyntheticConfig(motions=tuple(S.MOTIONS))
    for cfg in (CFG, everything):
        for m in range(cfg.num_motions):
            twin = S.twin_motion(m, cfg)
            assert twin != m and S.twin_motion(twin, cfg) == m
    assert CFG.motions[S.twin_motion(CFG.motions.index("grow"))] == "shrink"
    with pytest.raises(ValueError):
        S.twin_motion(CFG.num_motions)


@pytest.mark.parametrize("motions", [S.DEFAULT_MOTIONS, tuple(m for m in S.MOTIONS if m not in S.DEFAULT_MOTIONS)])
def test_reversed_clip_is_the_twin_class_pixel_for_pixel(motions):
    cfg = S.SyntheticConfig(motions=motions, noise=0.0, num_objects=2)
    for m in range(cfg.num_motions):
        (index,) = S.find_clips(cfg, "train", motion=m)
        spec = S.sample_spec(cfg, "train", index)
        video = S.render(spec, cfg)
        reversed_video, twin = S.reverse_clip(video, spec.motion, cfg)
        twin_spec = S.reverse_spec(spec, cfg)
        assert twin == twin_spec.motion == S.twin_motion(m, cfg) != m
        assert twin_spec.appearance == spec.appearance
        # the backwards clip IS a clip of the twin class with the same parameters and appearance
        np.testing.assert_allclose(reversed_video.astype(int), S.render(twin_spec, cfg).astype(int), atol=1)
        assert np.abs(video.astype(int) - reversed_video.astype(int)).max() > 50  # and it is not static


def test_reverse_clip_on_dataset_items():
    ds = S.SyntheticClips("val", 12, CFG, task="motion")
    for i in range(12):
        item = ds[i]
        rev, twin = S.reverse_clip(item["video"], item["motion"], CFG)  # torch [C, T, H, W]: time is dim 1
        assert torch.equal(rev[:, 0], item["video"][:, -1]) and torch.equal(rev[:, -1], item["video"][:, 0])
        assert twin == S.twin_motion(item["label"], CFG)


# ---------------------------------------------------------------------------------------------- probes
def _probe_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """4-fold cross-validated accuracy of a linear probe: standardized features, ridge-regularized least
    squares on one-hot targets (closed form, so fast and deterministic)."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0))
    return float(cross_val_score(probe, x, y, cv=4).mean())


@pytest.fixture(scope="module")
def probe_sample():
    """Per-frame features [N, T, D] and labels of a fixed sample of 1200 training clips."""
    n = 1200
    feats, app, mot = [], [], []
    for i in range(n):
        video, a, m = S.make_clip(CFG, "train", i)
        feats.append(S.frame_features(video))
        app.append(a)
        mot.append(m)
    return np.stack(feats), np.array(app), np.array(mot)


def test_motion_lives_in_frame_order_not_in_frame_statistics(probe_sample):
    """A linear probe on time-AVERAGED per-frame features is at chance for motion; the same probe on the same
    features in time ORDER is far above it.

    Tolerance: 1200 cross-validated predictions, chance 1/10, binomial sd = sqrt(0.1 * 0.9 / 1200) = 0.0087;
    we allow 4 sd (0.035). The construction makes the class-conditional means of any time-averaged per-frame
    feature identical, so in the population the probe's weights are zero and it is exactly at chance."""
    feats, app, mot = probe_sample
    n = len(mot)
    chance = 1 / CFG.num_motions
    averaged = _probe_accuracy(feats.mean(1), mot)
    ordered = _probe_accuracy(feats.reshape(n, -1), mot)
    assert abs(averaged - chance) < 0.035, averaged
    assert ordered > chance + 0.3, ordered
    # positive control: the averaged features do carry per-frame information (appearance), so the chance
    # result above is about motion, not about a blind probe
    assert _probe_accuracy(feats.mean(1), app) > 1 / CFG.num_appearance + 0.04


def test_every_frame_shows_the_whole_object():
    """Appearance is recoverable from any one frame: in every frame of every class the object is at least 0.45
    opaque and its glyph box at least 0.3 of the short side (9.6 px at 32 px; the 8x8 digits span 1.2 px per
    bitmap pixel or more)."""
    for index in range(300):
        spec = S.sample_spec(CFG, "train", index)
        motion = S.MOTIONS[CFG.motions[spec.motion]]
        for obj in spec.objects:
            _, _, _, box, opacity = S._trajectory(obj, motion, CFG, CFG.frames)
            assert opacity.min() >= 0.45 and box.min() >= 0.3 * min(CFG.height, CFG.width)


def test_random_frame_has_the_same_state_law_for_every_class():
    """The time-mixture of the bounded factors: pooled over clips and frames, the rotation / scale / opacity
    offsets of each class have the same mean and spread (twins exactly; families within sampling error).
    Spinning in place is added to the default classes so that all three bounded factors are driven."""
    cfg = S.SyntheticConfig(motions=S.DEFAULT_MOTIONS + ("rotate_cw", "rotate_ccw"))
    per_class: dict[int, list[np.ndarray]] = {m: [] for m in range(cfg.num_motions)}
    for index in range(3600):
        spec = S.sample_spec(cfg, "train", index)
        motion = S.MOTIONS[cfg.motions[spec.motion]]
        _, _, angle, box, opacity = S._trajectory(spec.objects[0], motion, cfg, cfg.frames)
        state = np.stack([np.rad2deg(angle) - spec.objects[0].angle, np.log(box), opacity], 1)  # [T, 3]
        per_class[spec.motion].append(state)
    stats = np.array([[np.concatenate(v).mean(0), np.concatenate(v).std(0)] for v in per_class.values()])
    spread = stats[:, 1].mean(0)  # [3]
    assert np.all(np.abs(stats[:, 0] - stats[:, 0].mean(0)) < 0.2 * spread)  # ~3.5 sd of a class mean
    assert np.all(np.abs(stats[:, 1] - spread) < 0.2 * spread)


# ---------------------------------------------------------------------------------------------- datasets
def test_undriven_factor_stays_fixed():
    """Without spinning classes (the default) no clip varies its orientation: the rotation offset is held at 0."""
    assert "rotate_cw" not in CFG.motions
    holds = []
    for index in range(200):
        spec = S.sample_spec(CFG, "train", index)
        holds.append(spec.objects[0].hold)
        _, _, angle, _, _ = S._trajectory(spec.objects[0], S.MOTIONS[CFG.motions[spec.motion]], CFG, CFG.frames)
        assert np.allclose(angle, angle[0])
    holds = np.array(holds)
    assert np.all(holds[:, 0] == 0) and np.any(holds[:, 1] != 0) and np.any(holds[:, 2] != 0)


def test_clip_dataset_items_and_tasks():
    video, a, m = S.make_clip(CFG, "train", 2)
    for task, label in [("appearance", a), ("motion", m)]:
        ds = S.SyntheticClips("train", 4, CFG, task=task)
        item = ds[2]
        assert set(item) == {"video", "index", "appearance", "motion", "label"}
        assert (item["label"], item["appearance"], item["motion"], item["index"]) == (label, a, m, 2)
        assert ds.num_classes == (CFG.num_appearance if task == "appearance" else CFG.num_motions)
    item = S.SyntheticClips("pretrain", 4, CFG)[2]
    assert "label" not in item and {"video", "index", "appearance", "motion"} <= set(item)
    x = S.SyntheticClips("train", 4, CFG)[2]["video"]  # [C, T, H, W], ImageNet-normalized
    back = T.denormalize(x).permute(1, 2, 3, 0).numpy() * 255  # [T, H, W, C]
    np.testing.assert_allclose(back, video.astype(np.float32), atol=1e-3)
    with pytest.raises(ValueError):
        S.SyntheticClips("images", 4, CFG)
    with pytest.raises(ValueError):
        S.SyntheticClips("train", 4, CFG, task="colour")
    with pytest.raises(IndexError):
        S.SyntheticClips("train", 4, CFG)[4]


def test_in_memory_cache_gives_identical_items():
    plain = S.SyntheticClips("train", 6, CFG, task="motion")
    cached = S.SyntheticClips("train", 6, CFG, task="motion", cache=True)
    for i in range(6):
        assert torch.equal(plain[i]["video"], cached[i]["video"])
        assert torch.equal(cached[i]["video"], cached[i]["video"])  # second read comes from the cache
    assert cached._memo.filled.all()
    lazy = S.SyntheticClips("train", 6, CFG).materialize(progress=False)
    assert lazy._memo.filled.all() and torch.equal(lazy[3]["video"], plain[3]["video"])
    images = S.SyntheticImages(5, CFG, cache=True)
    assert torch.equal(images[1]["image"], S.SyntheticImages(5, CFG)[1]["image"])


def test_image_dataset():
    ds = S.SyntheticImages(100_000, CFG)
    assert len(ds) == 100_000 and ds.num_classes == CFG.num_appearance
    item = ds[99_999]
    assert set(item) == {"image", "label", "index"} and item["image"].shape == (3, 32, 32)
    assert item["index"] == 99_999 and 0 <= item["label"] < CFG.num_appearance
    assert torch.equal(item["image"], ds[99_999]["image"])
    with pytest.raises(IndexError):
        ds[100_000]


def test_stills_are_more_varied_than_clip_frames():
    """image_variety widens the nuisance ranges of the stills: their object angles spread wider."""
    clip_angles = [S.sample_spec(CFG, "train", i).objects[0] for i in range(400)]
    still_angles = [S.sample_spec(CFG, "images", i).objects[0] for i in range(400)]
    clip_spread = np.std([o.angle + CFG.rotation * o.hold[0] for o in clip_angles])
    still_spread = np.std([o.angle + CFG.rotation * o.hold[0] for o in still_angles])
    assert still_spread > 1.25 * clip_spread


def test_frame_features_shape():
    video = S.make_clip(CFG, "train", 0)[0]
    f = S.frame_features(video)
    assert f.shape == (CFG.frames, 37) and np.isfinite(f).all()


# ---------------------------------------------------------------------------------------------- scene layout
SCENE = S.SyntheticConfig(layout="scene", num_appearance=len(S.SCENES), motions=S.PATH_MOTIONS, object_size=16.0,
                          noise=0.0)


def test_scene_layout_config():
    assert SCENE.appearance_names == S.SCENES and SCENE.object_px == 16.0
    assert S.SyntheticConfig(layout="scene", num_appearance=4).object_px == 8.0  # default mover: short side / 4
    for bad in (dict(layout="room"), dict(layout="scene", num_appearance=len(S.SCENES) + 1),
                dict(scene_frequency=(3.0, 2.0)), dict(scene_frequency=(0.5, 2.0)), dict(drift=-1.0)):
        with pytest.raises(ValueError):
            S.SyntheticConfig(**bad)


def test_every_scene_class_renders_a_distinct_static_scene():
    """Each class draws its own pattern; without drift the scene is the same in every frame, so frames differ
    only where the mover is; the mover's glyph is drawn from one pool whatever the class (it carries no label)."""
    bank = S.glyph_bank()
    weights = []
    for label in range(SCENE.num_appearance):
        (index,) = S.find_clips(SCENE, "train", appearance=label)
        spec = S.sample_spec(SCENE, "train", index)
        assert spec.scene is not None and spec.scene.kind == label and spec.scene.drift == (0.0, 0.0)
        assert all(bank.labels[o.glyph] >= 10 for o in spec.objects)  # the shape glyphs, for every class
        w = S.scene_weight(spec.scene, SCENE, SCENE.frames)
        assert w.shape == (1, SCENE.height, SCENE.width) and 0.0 <= w.min() and w.max() <= 1.0
        weights.append(w[0])
        video = S.render(spec, SCENE).astype(int)
        changed = (np.abs(video - video[:1]).max(-1) > 0).mean(0)  # [H, W] fraction of frames that differ
        assert (changed == 0).mean() > 0.15  # the part of the scene the mover never crosses stays fixed
    flat = np.stack(weights).reshape(len(weights), -1)
    assert np.all(flat.std(1)[:-1] > 0.15)  # patterns, except the smooth "plain" gradient
    corr = np.corrcoef(flat)
    assert np.all(np.abs(corr[~np.eye(len(flat), dtype=bool)]) < 0.9)  # no two classes draw the same picture


def test_drifting_scene_reverses_with_the_clip():
    cfg = dataclasses.replace(SCENE, drift=0.5)
    for m in range(cfg.num_motions):
        (index,) = S.find_clips(cfg, "train", motion=m)
        spec = S.sample_spec(cfg, "train", index)
        assert abs(np.hypot(*spec.scene.drift) - 0.5) < 1e-9
        video = S.render(spec, cfg)
        reversed_video, twin = S.reverse_clip(video, spec.motion, cfg)
        np.testing.assert_allclose(reversed_video.astype(int), S.render(S.reverse_spec(spec, cfg), cfg).astype(int),
                                   atol=1)
    assert S.sample_spec(cfg, "images", 0).scene.drift == (0.0, 0.0)  # stills do not drift


def test_scene_layout_is_deterministic():
    for split in ("pretrain", "val", "images"):
        a, b = S.sample_spec(SCENE, split, 7), S.sample_spec(dataclasses.replace(SCENE), split, 7)
        np.testing.assert_array_equal(S.render(a, SCENE), S.render(b, SCENE))
    assert np.abs(S.make_clip(SCENE, "val", 7)[0].astype(int) - S.make_clip(SCENE, "test", 7)[0].astype(int)).mean() > 5


@pytest.fixture(scope="module")
def scene_sample():
    """Per-frame features [N, T, D], frame-order features [N, T-2, 3] (in order and with the frames shuffled)
    and labels of 1200 training clips of the scene layout."""
    n = 1200
    rng = np.random.default_rng(0)
    frame, step, shuffled, app, mot = [], [], [], [], []
    for i in range(n):
        video, a, m = S.make_clip(SCENE, "train", i)
        frame.append(S.frame_features(video))
        step.append(S.step_features(video))
        shuffled.append(S.step_features(video[rng.permutation(len(video))]))
        app.append(a)
        mot.append(m)
    return np.stack(frame), np.stack(step), np.stack(shuffled), np.array(app), np.array(mot)


def test_scene_motion_lives_in_frame_order(scene_sample):
    """Path motions on a static scene: a linear probe on time-averaged per-frame features is at chance for
    motion. On the time-ordered sequence of per-frame features it stays near chance: on the torus every
    per-frame statistic has the same class-conditional mean at every time, which leaves a linear probe only
    second-order cues (about 21% in a 6-class run of this test). How consecutive frames relate (the shift
    between frame differences) tells the classes apart. What a shuffled frame order keeps (the path's axis or
    circle) tells the classes apart only up to their time-reversed twins: right vs left, up vs down, clockwise
    vs counter-clockwise are at chance without the order and near-perfect with it.
    Tolerance: 1200 predictions, chance 1/6, binomial sd 0.011, 4 sd = 0.043; twins: 1200 binary predictions
    in 3 pairs, sd 0.0144, 4 sd = 0.058."""
    frame, step, shuffled, app, mot = scene_sample
    n, chance = len(mot), 1 / SCENE.num_motions
    assert abs(_probe_accuracy(frame.mean(1), mot) - chance) < 0.043
    assert _probe_accuracy(frame.reshape(n, -1), mot) < chance + 0.1
    assert _probe_accuracy(step.reshape(n, -1), mot) > chance + 0.5

    def twin_accuracy(x):  # binary probes, one per twin pair, weighted by pair size
        total = 0.0
        for m in range(SCENE.num_motions):
            twin = S.twin_motion(m, SCENE)
            if m < twin:
                rows = (mot == m) | (mot == twin)
                total += _probe_accuracy(x[rows].reshape(rows.sum(), -1), mot[rows]) * rows.sum()
        return total / n

    assert abs(twin_accuracy(shuffled) - 0.5) < 0.058
    assert twin_accuracy(step) > 0.9
    # positive control: the same per-frame features carry the scene class
    assert _probe_accuracy(frame.mean(1), app) > 1 / SCENE.num_appearance + 0.08
