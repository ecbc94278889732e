"""Attentive probe, k-NN and low-shot curves: known answers where only an attention / order-aware readout
works, chance on noise, hyper-parameters chosen without the test split, determinism, the folded attention
equal to standard multi-head attention, and the low-shot curve ending at the full protocol."""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

from mvd_lib.probe import Features, fit_probe
from mvd_lib.probe_protocols import (PROTOCOLS, AttentivePooler, AttentiveProbeConfig, LowShotCurve,
                                     ProtocolResult, fit_attentive_probe, fit_knn, low_shot_curve, low_shot_rows,
                                     ProtocolJob, normalize_tokens, position_statistics, run_protocol, run_protocols,
                                     token_view)
from mvd_lib.rng import generator

# A small budget that solves the known-answer tasks below in about a second per fit on one thread.
FAST = AttentiveProbeConfig(epochs=20, lr_grid=(3e-3, 1e-2))
L, D = 16, 32  # tokens per clip, features per token


def marker_tokens(n: int, seed: int) -> Features:
    """Tokens [n, L, D] of pure noise except two: a MARKED token (marker m + pattern v_y) and an unmarked one
    carrying the other class's pattern v_{1-y}, at random distinct positions. Every clip holds m + v_0 + v_1
    in some order, so the mean over tokens has the same distribution in both classes; only a readout that
    finds the marked token (attention by content) can tell them apart."""
    g = generator(seed)
    m, v0, v1 = torch.randn(3, D, generator=generator(99))  # fixed directions shared by train and test
    y = torch.arange(n) % 2
    x = torch.randn(n, L, D, generator=g)
    where = torch.stack([torch.randperm(L, generator=g)[:2] for _ in range(n)])  # [n, 2] distinct positions
    own, other = torch.where(y[:, None] == 0, v0, v1), torch.where(y[:, None] == 0, v1, v0)
    rows = torch.arange(n)
    x[rows, where[:, 0]] = m + own + 0.3 * torch.randn(n, D, generator=g)
    x[rows, where[:, 1]] = other + 0.3 * torch.randn(n, D, generator=g)
    return Features(x=x.numpy(), y=y.numpy(), index=np.arange(n), pooling="tokens", grid=(L, 1, 1))


def order_tokens(n: int, seed: int) -> Features:
    """Tokens [n, L, D] of noise plus one token of type A (+u) and one of type C (-u): class 0 has A somewhere
    in the first half of the clip and C somewhere in the second, class 1 the reverse. As a SET of tokens both
    classes are identical, so any order-blind readout (a mean, or attention without positions) is at chance."""
    g = generator(seed)
    u = torch.randn(D, generator=generator(7))
    y = torch.arange(n) % 2
    x = torch.randn(n, L, D, generator=g)
    first = torch.randint(0, L // 2, (n,), generator=g)
    second = torch.randint(L // 2, L, (n,), generator=g)
    ta, tc = torch.where(y == 0, first, second), torch.where(y == 0, second, first)
    rows = torch.arange(n)
    x[rows, ta] = u + 0.3 * torch.randn(n, D, generator=g)
    x[rows, tc] = -u + 0.3 * torch.randn(n, D, generator=g)
    return Features(x=x.numpy(), y=y.numpy(), index=np.arange(n), pooling="tokens", grid=(L, 1, 1))


def mean_pooled(f: Features) -> Features:
    return Features(x=f.x.mean(axis=1), y=f.y, index=f.index, pooling="mean")


def blobs(n: int, num_classes: int, dim: int, spread: float, seed: int) -> Features:
    """Gaussian class clusters: class means ~ N(0, spread^2), unit noise. spread 0 = pure noise."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).normal(size=(num_classes, dim)) * spread
    y = np.arange(n) % num_classes
    return Features(x=means[y] + rng.normal(size=(n, dim)), y=y, index=np.arange(n))


def blob_tokens(n: int, seed: int, num_classes: int = 3, spread: float = 0.3) -> Features:
    """Tokens [n, 4, D]: every token is its class mean (~ N(0, spread^2) per dim) plus unit noise."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).normal(size=(num_classes, 1, D)) * spread
    y = np.arange(n) % num_classes
    return Features(x=means[y] + rng.normal(size=(n, 4, D)), y=y, index=np.arange(n), pooling="tokens")


# Chance tolerances: 2 classes and 400 test clips give a binomial sd of 2.5 points at chance, so +-10 points
# is 4 sd; 4 classes and 400 test clips give sd 2.2 points, so +-10 points is 4.6 sd.
TOL = 10.0


# ---------------------------------------------------------------------------------------------- attentive
def test_attentive_probe_finds_the_marked_token_where_mean_pooling_is_at_chance():
    train, test = marker_tokens(600, seed=0), marker_tokens(400, seed=1)
    linear = fit_probe(mean_pooled(train), mean_pooled(test), (1e-2, 1e-1, 1.0))
    assert abs(linear.top1 - 50.0) <= TOL, linear.top1
    # Even a linear probe on all tokens concatenated in order cannot, since the marked token moves.
    flat = fit_probe(*(Features(x=f.x.reshape(len(f.y), -1), y=f.y, index=f.index) for f in (train, test)),
                     (1e-2, 1e-1, 1.0))
    assert abs(flat.top1 - 50.0) <= TOL, flat.top1
    att = fit_attentive_probe(train, test, FAST)
    assert att.top1 >= 95.0, att.top1
    assert att.protocol == "attentive" and att.num_tokens == L and att.num_features == D
    assert att.chance == 50.0 and att.top5 is None and att.chosen["lr"] in FAST.lr_grid


def test_attentive_probe_reads_order_through_its_positions():
    train, test = order_tokens(600, seed=0), order_tokens(400, seed=1)
    linear = fit_probe(mean_pooled(train), mean_pooled(test), (1e-2, 1e-1, 1.0))
    assert abs(linear.top1 - 50.0) <= TOL, linear.top1
    ordered = fit_attentive_probe(train, test, FAST)  # learned positions, starting from sin-cos
    assert ordered.top1 >= 90.0, ordered.top1
    # Without positions (and without the per-position standardization, itself a position cue) the probe is a
    # function of the SET of tokens, identical in both classes: chance.
    blind = fit_attentive_probe(train, test, dataclasses.replace(FAST, position="none", standardize=False))
    assert abs(blind.top1 - 50.0) <= TOL, blind.top1


def test_attentive_probe_on_noise_stays_at_chance():
    g = generator(0)
    x = torch.randn(800, L, D, generator=g).numpy()
    y = np.arange(800) % 4
    train = Features(x=x[:400], y=y[:400], index=np.arange(400), pooling="tokens")
    test = Features(x=x[400:], y=y[400:], index=np.arange(400), pooling="tokens")
    res = fit_attentive_probe(train, test, FAST)
    assert abs(res.top1 - 25.0) <= TOL, res.top1  # 4 classes, 400 test clips (see TOL)


def test_attentive_hyper_parameters_are_chosen_without_the_test_split():
    train, test = blob_tokens(300, seed=0), blob_tokens(200, seed=1)
    cfg = AttentiveProbeConfig(epochs=4, lr_grid=(1e-4, 1e-2))
    clean = fit_attentive_probe(train, test, cfg, seed=3)
    rng = np.random.default_rng(9)
    poisoned = Features(x=rng.normal(size=test.x.shape) * 5, y=rng.permutation(test.y), index=test.index,
                        pooling="tokens")
    dirty = fit_attentive_probe(train, poisoned, cfg, seed=3)
    assert dirty.chosen == clean.chosen and dirty.holdout_top1 == clean.holdout_top1
    assert dirty.train_top1 == clean.train_top1
    assert dirty.top1 != clean.top1  # the test split did change: only the final score saw it
    assert len(set(clean.holdout_top1)) > 1  # the held-out scores discriminate between the settings


def test_attentive_probe_is_deterministic_and_leaves_the_global_rng_alone():
    train, test = blob_tokens(200, seed=0), blob_tokens(100, seed=1)
    cfg = AttentiveProbeConfig(epochs=3, lr_grid=(3e-3,))
    state = torch.get_rng_state()
    a, b = fit_attentive_probe(train, test, cfg, seed=5), fit_attentive_probe(train, test, cfg, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db
    c = fit_attentive_probe(train, test, cfg, seed=6)
    assert a.top1 > 60.0  # it learned something (chance 33%), so its predictions depend on the weights
    assert c.test_pred.tolist() != a.test_pred.tolist()  # another seed: another init and data order
    p5 = AttentivePooler(D, L, 2, generator=generator(5)).state_dict()
    p5b = AttentivePooler(D, L, 2, generator=generator(5)).state_dict()
    p6 = AttentivePooler(D, L, 2, generator=generator(6)).state_dict()
    assert all(torch.equal(p5[k], p5b[k]) for k in p5)
    assert not torch.equal(p5["query"], p6["query"]) and not torch.equal(p5["q.weight"], p6["q.weight"])


def test_folded_attention_equals_multi_head_attention():
    pooler = AttentivePooler(D, L, 3, heads=4, queries=2, position="sincos", generator=generator(0))
    with torch.no_grad():
        for p in pooler.parameters():  # move every weight off its init so biases and norms matter
            p.add_(0.3 * torch.randn(p.shape, generator=generator(p.numel())))
    mha = torch.nn.MultiheadAttention(D, 4, batch_first=True)
    k_bias = torch.randn(D, generator=generator(1))  # any key bias: it cancels in the softmax
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([pooler.q.weight, pooler.k.weight, pooler.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([pooler.q.bias, k_bias, pooler.v.bias]))
        mha.out_proj.weight.copy_(pooler.proj.weight)
        mha.out_proj.bias.copy_(pooler.proj.bias)
        tokens = torch.randn(5, L, D, generator=generator(2))  # [B, L, D]
        x = pooler.norm(tokens) + pooler.pos
        expected, _ = mha(pooler.query.expand(5, -1, -1), x, x, need_weights=False)  # [B, Q, D]
        torch.testing.assert_close(pooler.attend(tokens), expected, rtol=1e-5, atol=1e-5)
        assert pooler(tokens).shape == (5, 3)


def test_token_view_of_token_and_time_features():
    tokens = Features(x=np.zeros((3, 8, 4), np.float16), y=[0, 1, 0], index=[0, 1, 2], pooling="tokens",
                      grid=(2, 2, 2))
    x, grid = token_view(tokens)
    assert x.dtype == np.float16 and x.shape == (3, 8, 4) and grid == (2, 2, 2)
    timed = Features(x=np.arange(24).reshape(3, 8), y=[0, 1, 0], index=[0, 1, 2], pooling="time", grid=(2, 4, 4))
    x, grid = token_view(timed)
    assert x.shape == (3, 2, 4) and grid == (2, 1, 1) and x[1, 1].tolist() == [12, 13, 14, 15]
    with pytest.raises(ValueError, match="needs token features"):
        token_view(Features(x=np.zeros((3, 4)), y=[0, 1, 0], index=[0, 1, 2], pooling="mean"))
    with pytest.raises(ValueError, match="needs pooled features"):
        fit_probe(tokens, tokens)


# ---------------------------------------------------------------------------------------------- k-NN
def test_knn_separates_blobs_and_stays_at_chance_on_noise():
    good = fit_knn(blobs(400, 4, 16, 2.0, seed=0), blobs(400, 4, 16, 2.0, seed=1))
    assert good.top1 >= 95.0 and good.train_top1 >= 95.0 and good.protocol == "knn"
    noise = fit_knn(blobs(400, 4, 16, 0.0, seed=0), blobs(400, 4, 16, 0.0, seed=1))
    assert abs(noise.top1 - 25.0) <= TOL, noise.top1  # 4 classes, 400 test clips (see TOL)


def test_knn_by_hand():
    # Bank: class 0 along +e0, class 1 along +e1 (after centering the bank mean is 0.5 * (e0 + e1)).
    train = Features(x=[[2, 0], [3, 0], [0, 2], [0, 3], [2.5, 0.1], [0.1, 2.5]], y=[0, 0, 1, 1, 0, 1],
                     index=range(6))
    test = Features(x=[[5, 0.5], [0.2, 4], [1, 1.2]], y=[0, 1, 1], index=range(3))
    res = fit_knn(train, test, k_grid=(1,), holdout_fraction=None, temperature=None)
    assert res.test_pred.tolist() == [0, 1, 1] and res.top1 == 100.0 and res.chosen == {"k": 1}
    assert res.holdout_top1 == [] and res.num_holdout == 0 and res.train_top1 == 100.0  # leave-one-out
    with pytest.raises(ValueError, match="single setting"):
        fit_knn(train, test, k_grid=(1, 3), holdout_fraction=None)


def test_knn_temperature_weights_close_neighbours():
    # Query e0: one class-1 neighbour at cosine 1, two class-0 neighbours at cosine 0.6. With k = 3 plain
    # votes say class 0 (2 to 1); weights exp(cos / 0.07) say class 1 (e^(1/0.07) > 2 e^(0.6/0.07)).
    train = Features(x=[[1, 0], [0.6, 0.8], [0.6, -0.8]], y=[1, 0, 0], index=range(3))
    test = Features(x=[[1, 0]], y=[1], index=[0])
    kw = dict(k_grid=(3,), holdout_fraction=None, center=False)
    assert fit_knn(train, test, temperature=None, **kw).test_pred.tolist() == [0]
    assert fit_knn(train, test, temperature=0.07, **kw).test_pred.tolist() == [1]


def test_knn_k_is_chosen_without_the_test_split():
    train, test = blobs(300, 3, 24, 0.4, seed=0), blobs(300, 3, 24, 0.4, seed=1)
    clean = fit_knn(train, test, seed=3)
    rng = np.random.default_rng(9)
    dirty = fit_knn(train, Features(x=rng.normal(size=test.x.shape) * 5, y=rng.permutation(test.y),
                                    index=test.index), seed=3)
    assert dirty.chosen == clean.chosen and dirty.holdout_top1 == clean.holdout_top1
    assert dirty.top1 != clean.top1 and len(set(clean.holdout_top1)) > 1


# ---------------------------------------------------------------------------------------------- by name
def test_run_protocol_by_name_gives_serialisable_results():
    train, test = blobs(200, 3, 8, 2.0, seed=0), blobs(100, 3, 8, 2.0, seed=1)
    assert PROTOCOLS == ("linear", "attentive", "knn")
    linear = run_protocol("linear", train, test, seed=1, c_grid=(0.1, 1.0))
    assert linear.to_dict() == fit_probe(train, test, (0.1, 1.0), seed=1).to_dict() | {"seconds": linear.seconds}
    assert linear.protocol == "linear" and linear.chosen == {"c": linear.c}
    knn = run_protocol("knn", train, test, seed=1, k_grid=(1, 5))
    assert isinstance(knn, ProtocolResult) and knn.to_dict()["chosen"]["k"] in (1, 5)
    timed = Features(x=np.repeat(train.x, 2, axis=1), y=train.y, index=train.index, pooling="time", grid=(2, 1, 1))
    timed_test = Features(x=np.repeat(test.x, 2, axis=1), y=test.y, index=test.index, pooling="time", grid=(2, 1, 1))
    att = run_protocol("attentive", timed, timed_test, seed=1, config=FAST, epochs=2, lr_grid=(1e-2,))
    assert att.num_tokens == 2 and att.settings["epochs"] == 2 and att.grid == [{"lr": 1e-2, "weight_decay": 0.05}]
    json.dumps([r.to_dict() for r in (linear, knn, att)])
    with pytest.raises(ValueError, match="unknown protocol"):
        run_protocol("svm", train, test)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown attentive-probe argument"):
        run_protocol("attentive", timed, timed_test, c_grid=(1.0,))


@pytest.mark.skipif(sys.platform != "linux", reason="fits are shared among worker processes on Linux only")
def test_fits_shared_among_worker_processes_give_the_results_of_fitting_one_after_another():
    train, test = blobs(200, 3, 8, 2.0, seed=0), blobs(100, 3, 8, 2.0, seed=1)
    jobs = [ProtocolJob("linear", train, test, {"c_grid": (0.01, 0.1, 1.0)}),
            ProtocolJob("attentive", marker_tokens(400, 0), marker_tokens(200, 1), {"config": FAST}),
            ProtocolJob("knn", train, test, {"k_grid": (1, 5)}),
            ProtocolJob("linear", train, test, {"c_grid": (10.0,), "holdout_fraction": None})]
    one_by_one = run_protocols(jobs, seed=3, workers=1)
    shared = run_protocols(jobs, seed=3, workers=2)
    assert [type(r) for r in shared] == [type(r) for r in one_by_one]
    for a, b in zip(one_by_one, shared):
        assert {**a.to_dict(), "seconds": 0} == {**b.to_dict(), "seconds": 0}
        np.testing.assert_array_equal(a.test_pred, b.test_pred)
    assert one_by_one[1].top1 > 80  # the attentive job learned: a real fit, not an empty one
    with pytest.raises(ValueError, match="one thread"):
        run_protocols([ProtocolJob("linear", train, test, {"threads": 2})] * 2, workers=2)


def _dies_outside(parent: int, x: np.ndarray, y: np.ndarray, index: np.ndarray, pooling: str) -> Features:
    """Unpickles as Features in the parent process; kills any other process that unpickles it."""
    if os.getpid() != parent:
        os._exit(1)
    return Features(x=x, y=y, index=index, pooling=pooling)


@dataclasses.dataclass
class DiesInAWorker(Features):
    """Features that kill the worker process they are sent to (a worker killed for memory, say)."""

    def __reduce__(self):
        return _dies_outside, (os.getpid(), self.x, self.y, self.index, self.pooling)


@pytest.mark.skipif(sys.platform != "linux", reason="fits are shared among worker processes on Linux only")
def test_fits_are_made_here_when_a_worker_dies():
    train, test = blobs(200, 3, 8, 2.0, seed=0), blobs(100, 3, 8, 2.0, seed=1)
    dying = DiesInAWorker(x=train.x, y=train.y, index=train.index, pooling=train.pooling)
    jobs = [ProtocolJob("linear", dying, test, {"c_grid": (0.1, 1.0)}),
            ProtocolJob("knn", dying, test, {"k_grid": (1, 5)})]
    with pytest.warns(RuntimeWarning, match="worker process sharing 2 probe fits died"):
        results = run_protocols(jobs, seed=1, workers=2)
    expected = run_protocols([dataclasses.replace(job, train=train) for job in jobs], seed=1, workers=1)
    assert [{**r.to_dict(), "seconds": 0} for r in results] == [{**r.to_dict(), "seconds": 0} for r in expected]


# ---------------------------------------------------------------------------------------------- low shot
def test_low_shot_curve_rises_and_ends_at_the_full_probe():
    train, test = blobs(400, 4, 16, 0.8, seed=0), blobs(400, 4, 16, 0.8, seed=1)
    curve = low_shot_curve(train, test, shots=(1, 5, 25, None), repeats=3, seed=2, c_grid=(1e-2, 1e-1, 1.0))
    assert isinstance(curve, LowShotCurve) and curve.shots == [1, 5, 25, None]
    assert curve.clips_per_class == [1.0, 5.0, 25.0, 100.0] and curve.num_test == 400
    assert [len(v) for v in curve.values] == [3, 3, 3, 1]
    assert curve.held_out == [False, True, True, True]  # one clip per class cannot be held out
    assert curve.chosen[0] == [{"c": 1e-2}] * 3  # the fixed setting
    # Rising (each point at most 3 points below the previous one), from well below the full probe.
    assert all(b >= a - 3.0 for a, b in zip(curve.mean, curve.mean[1:])), curve.mean
    assert curve.mean[0] < curve.mean[-1] - 5.0, curve.mean
    full = fit_probe(train, test, (1e-2, 1e-1, 1.0), seed=2)
    assert curve.mean[-1] == full.top1 and curve.std[-1] == 0.0
    assert curve.table()[1]["values"] == curve.values[1] and "mean" in curve.to_dict()


def test_low_shot_subsets_are_seeded_and_nested():
    train, test = blobs(120, 3, 8, 1.0, seed=0), blobs(60, 3, 8, 1.0, seed=1)
    a = low_shot_curve(train, test, shots=(2, 4), repeats=2, protocol="knn", seed=0, k_grid=(1, 3))
    b = low_shot_curve(train, test, shots=(2, 4), repeats=2, protocol="knn", seed=0, k_grid=(1, 3))
    assert a.values == b.values and a.chosen == b.chosen
    assert a.held_out == [False, True] and a.chosen[0] == [{"k": 1}, {"k": 1}]
    with pytest.raises(ValueError, match="shots must be"):
        low_shot_curve(train, test, shots=(0,))
    tokens, tokens_test = blob_tokens(60, seed=0), blob_tokens(30, seed=1)
    att = low_shot_curve(tokens, tokens_test, shots=(2,), repeats=1, protocol="attentive", config=FAST, epochs=2)
    assert att.chosen == [[{"lr": 3e-3, "weight_decay": 0.05}]] and att.held_out == [False]
    y = np.repeat(np.arange(3), [10, 10, 3])
    two, five = low_shot_rows(y, 2, seed=0), low_shot_rows(y, 5, seed=0)
    assert np.bincount(y[two]).tolist() == [2, 2, 2] and np.bincount(y[five]).tolist() == [5, 5, 3]
    assert set(two) <= set(five)  # nested within one repeat
    assert not np.array_equal(low_shot_rows(y, 2, seed=0, repeat=1), two)


def test_position_statistics_and_standardized_tokens_known_answer():
    g = generator(0)
    x = torch.randn(50, 6, 8, generator=g) * torch.arange(1, 9).float() + torch.arange(6).float()[:, None] * 10
    mean, std = position_statistics(x.numpy(), chunk=7)  # numpy, read in chunks
    torch.testing.assert_close(mean, x.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, x.std(0, unbiased=False), rtol=1e-4, atol=1e-4)
    z = normalize_tokens(x, (mean, std))
    expected = torch.nn.functional.layer_norm((x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-5), (8,), eps=1e-5)
    torch.testing.assert_close(z, expected, rtol=1e-4, atol=1e-4)


def test_standardization_finds_a_small_signal_under_a_shared_position_offset():
    # Every clip shares a large offset per position (as position embeddings give frozen tokens); the class is
    # a small shift of one feature at one position. Standardizing per position uncovers it; without it the
    # per-token LayerNorm keeps the offsets, and the probe stays at chance.
    g = generator(1)
    offset = torch.randn(L, D, generator=g) * 20

    def clips(n, seed):
        gg = generator(seed)
        y = torch.arange(n) % 2
        x = offset + torch.randn(n, L, D, generator=gg) * 0.5
        x[:, 3, 5] += 2.0 * (2 * y - 1).float()
        return Features(x=x.numpy(), y=y.numpy(), index=np.arange(n), pooling="tokens")

    train, test = clips(400, 2), clips(300, 3)
    found = fit_attentive_probe(train, test, dataclasses.replace(FAST, standardize=True))
    buried = fit_attentive_probe(train, test, dataclasses.replace(FAST, standardize=False))
    assert found.top1 >= 75.0, found.top1  # 300 test clips: 82.3 measured
    assert abs(buried.top1 - 50.0) <= TOL, buried.top1  # without it the shift drowns in the offsets: chance


def test_normalize_tokens_is_layer_norm_without_affine_and_keeps_float16():
    x = torch.randn(5, 6, 8, generator=generator(0)) * 3 + 1
    expected = torch.nn.LayerNorm(8, elementwise_affine=False)(x)
    torch.testing.assert_close(normalize_tokens(x), expected, rtol=1e-5, atol=1e-5)
    z16 = normalize_tokens(x.half().numpy(), chunk=2)  # numpy float16, read in chunks
    assert z16.dtype == torch.float16 and z16.shape == (5, 6, 8)
    torch.testing.assert_close(z16.float(), normalize_tokens(x.half().float()), rtol=2e-3, atol=2e-3)
