"""Linear probe: accuracy where there is signal, chance where there is none, C chosen without the test split,
order-aware "time" pooling, determinism, and feature shapes on real encoders; token features, features of a
chosen layer, and features saved to disk."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import mvd_decoder_config, vit_config
from mvd_lib.mae import ImageViT
from mvd_lib.probe import (Features, encoder_tokens, extract_features, fit_probe, linear_probe, load_features,
                           pool_tokens, save_features, stratified_holdout, token_grid)
from mvd_lib.rng import generator
from mvd_lib.student import MVDStudent
from mvd_lib.teachers import ImageTeacher, VideoTeacher
from mvd_lib.videomae import videomae_encoder
from mvd_lib.vit import VideoViT

NANO = vit_config("vit_nano", num_frames=4, img_size=16)  # grid (2, 4, 4), D = 64
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def blobs(n: int, num_classes: int, dim: int, spread: float, seed: int) -> Features:
    """Gaussian class clusters: class means ~ N(0, spread^2), unit noise. spread 0 = pure noise."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).normal(size=(num_classes, dim)) * spread  # shared by train and test
    y = np.arange(n) % num_classes
    x = means[y] + rng.normal(size=(n, dim))
    return Features(x=x, y=y, index=np.arange(n))


def test_separable_features_probe_well_and_noise_stays_at_chance():
    good = fit_probe(blobs(400, 4, 16, 2.0, seed=0), blobs(400, 4, 16, 2.0, seed=1), C_GRID)
    assert good.top1 >= 95.0 and good.chance == 25.0 and good.converged
    # Pure noise, 4 classes, 400 test clips: accuracy ~ Binomial(400, 0.25)/400, sd 2.2 points.
    # Tolerance +-10 points (4.5 sd) around chance.
    noise = fit_probe(blobs(400, 4, 16, 0.0, seed=0), blobs(400, 4, 16, 0.0, seed=1), C_GRID)
    assert abs(noise.top1 - 25.0) <= 10.0, noise.top1
    assert noise.top5 is None  # 4 classes: top-5 would be trivially 100


def test_top5_reported_with_more_than_five_classes():
    r = fit_probe(blobs(300, 10, 16, 0.7, seed=0), blobs(300, 10, 16, 0.7, seed=1), C_GRID)
    assert r.top5 is not None and r.top1 <= r.top5 <= 100.0 and r.num_classes == 10
    assert r.test_pred.shape == (300,)
    assert r.top1 == pytest.approx(100.0 * np.mean(r.test_pred == np.arange(300) % 10))


def test_c_is_chosen_without_the_test_split():
    train, test = blobs(300, 3, 24, 0.5, seed=0), blobs(300, 3, 24, 0.5, seed=1)
    clean = fit_probe(train, test, C_GRID, seed=3)
    rng = np.random.default_rng(9)
    # Poison the test split: shuffled labels and features from another distribution.
    poisoned = Features(x=rng.normal(size=test.x.shape) * 5, y=rng.permutation(test.y), index=test.index)
    dirty = fit_probe(train, poisoned, C_GRID, seed=3)
    assert dirty.c == clean.c
    assert dirty.holdout_top1 == clean.holdout_top1
    assert dirty.train_top1 == clean.train_top1
    assert dirty.top1 != clean.top1  # the test split did change: only the final score saw it
    assert len(set(clean.holdout_top1)) > 1  # the held-out curve discriminates between the Cs


def test_stratified_holdout_is_disjoint_stratified_and_seeded():
    y = np.repeat(np.arange(4), [10, 10, 5, 1])
    fit, held = stratified_holdout(y, 0.2, seed=0)
    assert set(fit).isdisjoint(held) and len(fit) + len(held) == len(y)
    assert np.bincount(y[held], minlength=4).tolist() == [2, 2, 1, 0]  # the lone class-3 clip stays in fit
    assert np.array_equal(stratified_holdout(y, 0.2, seed=0)[1], held)
    assert not np.array_equal(stratified_holdout(y, 0.2, seed=1)[1], held)
    with pytest.raises(ValueError, match="no held-out"):
        stratified_holdout(np.array([0, 1]), 0.2, seed=0)


def test_pool_tokens_by_hand():
    tokens = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)  # [B, N, D], grid (2, 2, 2)
    mean = pool_tokens(tokens, (2, 2, 2), "mean")
    timed = pool_tokens(tokens, (2, 2, 2), "time")
    assert mean.shape == (2, 3) and timed.shape == (2, 6)
    torch.testing.assert_close(timed[0], torch.cat([tokens[0, :4].mean(0), tokens[0, 4:].mean(0)]))
    torch.testing.assert_close(mean, tokens.mean(1))
    with pytest.raises(ValueError, match="do not fill the grid"):
        pool_tokens(tokens[:, :6], (2, 2, 2), "time")
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_tokens(tokens, (2, 2, 2), "max")


def order_tokens(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens [n, 3*4, 8] on a (3, 2, 2) grid where only the time order tells the two classes apart:
    class 0 shows pattern a, then b, then c; class 1 shows c, b, a (its time-reverse). The same three
    patterns (random per clip, plus noise) appear in both, so every order-free statistic is identical."""
    g = generator(seed)
    y = torch.arange(n) % 2
    u = torch.randn(8, generator=torch.Generator().manual_seed(7))  # a fixed direction
    a = u + 0.3 * torch.randn(n, 8, generator=g)
    c = -u + 0.3 * torch.randn(n, 8, generator=g)
    b = 0.3 * torch.randn(n, 8, generator=g)
    slices = torch.stack([a, b, c], dim=1)  # [n, T'=3, D]
    slices = torch.where(y[:, None, None] == 1, slices.flip(1), slices)
    tokens = slices[:, :, None, :].expand(n, 3, 4, 8) + 0.3 * torch.randn(n, 3, 4, 8, generator=g)
    return tokens.reshape(n, 12, 8), y.numpy()


def test_time_pooling_keeps_the_order_that_mean_pooling_loses():
    results = {}
    for pooling in ("mean", "time"):
        feats = []
        for seed in (0, 1):
            tokens, y = order_tokens(400, seed)
            feats.append(Features(x=pool_tokens(tokens, (3, 2, 2), pooling).numpy(), y=y, index=np.arange(400)))
        results[pooling] = fit_probe(feats[0], feats[1], C_GRID)
    # 2 classes, 400 test clips: sd 2.5 points at chance; tolerance +-10 points (4 sd).
    assert abs(results["mean"].top1 - 50.0) <= 10.0, results["mean"].top1
    assert results["time"].top1 >= 95.0, results["time"].top1


def test_fit_probe_is_deterministic():
    train, test = blobs(240, 6, 32, 0.4, seed=0), blobs(120, 6, 32, 0.4, seed=1)
    a, b = fit_probe(train, test, C_GRID, seed=5), fit_probe(train, test, C_GRID, seed=5)
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db


class Clips(torch.utils.data.Dataset):
    """Random clips carrying the synthetic benchmark's two label sets."""

    def __init__(self, n: int, seed: int, frames: int = 4, size: int = 16):
        g = generator(seed)
        self.video = torch.randn(n, 3, frames, size, size, generator=g)
        self.appearance = (torch.arange(n) % 3).tolist()
        self.motion = (torch.arange(n) % 2).tolist()

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "appearance": self.appearance[i], "motion": self.motion[i],
                "index": 100 + i}


def test_feature_shapes_labels_and_one_pass_on_a_tiny_vit():
    model = VideoViT(NANO, seed=0).train()
    calls = []
    model.patch_embed.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    data = Clips(7, seed=0)
    feats = extract_features(model, data, batch_size=3, progress=False)
    assert calls == [3, 3, 1]  # one encoder pass per clip serves both poolings
    assert model.training  # mode restored
    assert NANO.grid == (2, 4, 4) and NANO.width == 64
    assert feats["mean"].x.shape == (7, 64) and feats["time"].x.shape == (7, 2 * 64)
    assert feats["mean"].x.dtype == np.float32 and feats["time"].grid == (2, 4, 4)
    assert sorted(feats["time"].labels) == ["appearance", "motion"]
    assert feats["time"].index.tolist() == list(range(100, 107))
    assert feats["time"].select("motion").y.tolist() == data.motion
    assert feats["time"].select("appearance").y.dtype == np.int64
    with pytest.raises(KeyError, match="no label set 'label'"):
        feats["time"].select("label")

    model.eval()
    with torch.no_grad():
        tokens = model(data.video)  # [7, 32, 64]
    np.testing.assert_allclose(feats["time"].x, pool_tokens(tokens, model.grid, "time").numpy(), rtol=1e-5, atol=1e-6)
    again = extract_features(model, data, batch_size=4, progress=False)
    np.testing.assert_allclose(again["mean"].x, feats["mean"].x, rtol=1e-5, atol=1e-6)


def test_encoder_tokens_of_students_classifiers_and_teachers():
    video = torch.randn(2, 3, 4, 16, 16, generator=generator(1))
    student = MVDStudent(NANO, mvd_decoder_config(NANO), {"img": 16, "vid": 16}, seed=0).eval()
    classifier = VideoClassifier(NANO, num_classes=5, seed=0).eval()
    with torch.no_grad():
        t_student = encoder_tokens(student, video)
        torch.testing.assert_close(t_student, VideoViT.forward(student, video))
        t_cls = encoder_tokens(classifier, video)  # before pooling and fc_norm
        torch.testing.assert_close(classifier.fc_norm(t_cls.mean(1)), classifier.features(video))
        encoder = videomae_encoder(NANO, seed=0).eval()
        torch.testing.assert_close(encoder_tokens(VideoTeacher(encoder), video), encoder(video))
        image = ImageViT(vit_config("vit_nano", img_size=16), seed=0).eval()
        t_img = encoder_tokens(ImageTeacher(image, tubelet_size=2), video)
    assert t_student.shape == t_cls.shape == (2, 32, 64)
    assert t_img.shape == (2, 2 * 16, 64) and token_grid(ImageTeacher(image, 2), 4) == (2, 4, 4)
    with pytest.raises(TypeError, match="cannot find"):
        encoder_tokens(torch.nn.Linear(3, 3), video)


def test_linear_probe_runs_on_a_random_init_encoder():
    model = VideoViT(NANO, seed=3)  # never trained: the floor of every probe table
    result = linear_probe(model, Clips(30, seed=0), Clips(12, seed=1), pooling="time", label="appearance",
                          c_grid=C_GRID, batch_size=8, progress=False)
    assert result.num_features == 128 and result.num_train == 30 and result.num_test == 12
    assert result.label == "appearance" and result.pooling == "time" and result.num_classes == 3
    correct = result.top1 * 12 / 100  # top-1 counts whole clips of the 12
    assert abs(correct - round(correct)) < 1e-6 and result.c in C_GRID and len(result.holdout_top1) == len(C_GRID)


def test_a_single_c_is_fitted_once_without_a_held_out_choice():
    train, test = blobs(120, 3, 8, 1.0, seed=0), blobs(60, 3, 8, 1.0, seed=1)
    one = fit_probe(train, test, (0.1,), holdout_fraction=0.2)  # one C: nothing to choose, no held-out fits
    none = fit_probe(train, test, (0.1,), holdout_fraction=None)
    grid = fit_probe(train, test, (0.1, 1.0), holdout_fraction=0.2)
    assert one.holdout_top1 == none.holdout_top1 == [] and one.num_holdout == none.num_holdout == 0
    assert one.c == none.c == 0.1 and len(grid.holdout_top1) == 2 and grid.num_holdout > 0
    assert none.top1 == one.top1 and none.test_pred.tolist() == one.test_pred.tolist()
    chosen = fit_probe(train, test, (grid.c,), holdout_fraction=0.2)  # the final fit ignores the held-out fits
    assert chosen.top1 == grid.top1 and chosen.test_pred.tolist() == grid.test_pred.tolist()
    with pytest.raises(ValueError, match="single setting"):
        fit_probe(train, test, (0.1, 1.0), holdout_fraction=None)


def test_token_features_come_from_the_same_pass_in_float16():
    model = VideoViT(NANO, seed=0)
    calls = []
    model.patch_embed.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    data = Clips(7, seed=0)
    feats = extract_features(model, data, poolings=("mean", "tokens"), batch_size=3, progress=False)
    assert calls == [3, 3, 1]  # one pass serves the pooled and the token features
    tokens = feats["tokens"]
    assert tokens.x.shape == (7, 32, 64) and tokens.x.dtype == np.float16 and tokens.pooling == "tokens"
    assert tokens.grid == (2, 4, 4) and tokens.select("motion").x is tokens.x  # no copy per label set
    with torch.no_grad():
        expected = model.eval()(data.video).numpy()  # [7, 32, 64]
    np.testing.assert_allclose(tokens.x.astype(np.float32), expected, rtol=2e-3, atol=2e-3)  # float16 rounding
    np.testing.assert_allclose(feats["mean"].x, expected.mean(1), rtol=1e-5, atol=1e-6)
    full = extract_features(model, data, poolings=("tokens",), batch_size=4, progress=False, token_dtype="float32")
    assert full["tokens"].x.dtype == np.float32
    np.testing.assert_allclose(full["tokens"].x, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="token_dtype"):
        extract_features(model, data, poolings=("tokens",), token_dtype="int8", progress=False)
    with pytest.raises(ValueError, match=r"must be \[N, L, D\]"):
        Features(x=np.zeros((3, 4)), y=[0, 1, 2], index=[0, 1, 2], pooling="tokens")


def test_features_of_a_chosen_layer_stop_at_that_block():
    model = VideoViT(NANO, seed=0).eval()  # depth 2
    video = torch.randn(3, 3, 4, 16, 16, generator=generator(2))
    later = []
    model.blocks[1].register_forward_hook(lambda m, i, o: later.append(1))
    with torch.no_grad():
        first = encoder_tokens(model, video, layer=0)
        assert later == []  # block 1 never ran
        torch.testing.assert_close(first, model.blocks[0](model.embed(video)))
        last = encoder_tokens(model, video, layer=-1)
        torch.testing.assert_close(last, model(video, pre_norm=True))  # the last block, before the final norm
        image = ImageViT(vit_config("vit_nano", img_size=16), seed=0).eval()
        t_img = encoder_tokens(ImageTeacher(image, tubelet_size=2), video, layer=0)
        frames = video[:, :, ::2].transpose(1, 2).reshape(6, 3, 16, 16)
        x = image.patch_embed(frames) + image.pos_embed[:, 1:]
        cls = (image.cls_token + image.pos_embed[:, :1]).expand(6, -1, -1)
        torch.testing.assert_close(t_img, image.blocks[0](torch.cat([cls, x], 1))[:, 1:].reshape(3, 32, 64))
    feats = extract_features(model, Clips(4, seed=0), poolings=("mean",), layer=0, progress=False)
    assert feats["mean"].layer == 0 and feats["mean"].select("motion").layer == 0
    last = extract_features(model, Clips(4, seed=0), poolings=("mean",), layer=-1, progress=False)["mean"]
    assert last.layer == 1  # recorded as the block index
    np.testing.assert_allclose(last.x, model(Clips(4, seed=0).video, pre_norm=True).mean(1).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="layer 2 is out of range for an encoder of 2 blocks"):
        extract_features(model, Clips(4, seed=0), layer=2, progress=False)


def test_saved_features_load_back(tmp_path):
    model = VideoViT(NANO, seed=0)
    feats = extract_features(model, Clips(5, seed=0), poolings=("time", "tokens"), batch_size=2, progress=False,
                             layer=1)
    folder = save_features(feats, tmp_path / "feats", meta={"videos": "train.csv"})
    assert sorted(p.name for p in (folder / "tokens").iterdir()) == [
        "features.json", "index.npy", "label_appearance.npy", "label_motion.npy", "x.npy"]
    info = json.loads((folder / "tokens" / "features.json").read_text())
    assert info["layer"] == 1 and info["grid"] == [2, 4, 4] and info["dtype"] == "float16"
    assert info["shape"] == [5, 32, 64] and info["meta"] == {"videos": "train.csv"}
    for mmap in (False, True):
        back = load_features(folder, mmap=mmap)
        assert sorted(back) == ["time", "tokens"]
        for p, f in feats.items():
            g = back[p]
            assert np.array_equal(g.x, f.x) and g.x.dtype == f.x.dtype and np.array_equal(g.index, f.index)
            assert g.grid == f.grid and g.layer == 1 and g.label == f.label and g.pooling == p
            assert all(np.array_equal(g.labels[k], f.labels[k]) for k in f.labels)
    one = load_features(folder, poolings=("time",))
    assert list(one) == ["time"]
    with pytest.raises(FileNotFoundError, match="no saved \\['mean'\\] features"):
        load_features(folder, poolings=("mean",))
    with pytest.raises(FileNotFoundError, match="no saved features"):
        load_features(tmp_path)
