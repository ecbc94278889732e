"""Evaluation protocols on frozen features beside the linear probe: attentive probe, k-NN, low-shot curves.

The paper scores encoders by full finetuning (mvd_reference.md section 6); probe.py adds the linear probe.
Each protocol here asks the same frozen features a different question, with the same discipline as
`probe.fit_probe`: hyper-parameters are chosen on a stratified held-out part of the TRAINING split
(`probe.holdout_split`; a grid of one setting skips the choice), the model is refitted on the whole training
split, and the test split is scored once. Every result reports top-1 / top-5 / chance, the chosen
hyper-parameters and the held-out scores.

- "linear": `probe.fit_probe` (multinomial logistic regression on standardized pooled features).
- "attentive": the attentive probe of V-JEPA (Bardes et al. 2024), reduced to its core: learned queries read
  the frozen tokens by multi-head cross-attention, then a linear classifier.

      tokens [B, L, D] (frozen) -> standardize per (position, feature) with the training split's statistics
        -> LayerNorm -> + position [L, D] (learned, starting from sin-cos)
        -> cross-attention from Q learned queries, H heads                     [B, Q, D]
        -> LayerNorm -> flatten [B, Q*D] -> Linear                              logits [B, K]

  The frozen tokens may not carry their position (an image encoder's frames, a "time" pooling's slots), so
  a position table is added; with it, time order is readable (without it, and without the per-position
  standardization, the probe is blind to order). The standardization removes what every clip shares at a
  position (the encoder's position embedding dominates frozen tokens; the class signal is a small deviation):
  on the quick profile's video teacher (time slots, val split) it lifts motion from 12.0% to 38.4%, the
  time-ordered linear probe's level, with 4 queries and 40 epochs (chosen on val; 19.6% with 20 epochs).
  The queries are parameters, so the attention is computed in folded form (q^T W_k x for the logits, W_v
  applied after the attention-weighted mean): exactly multi-head attention, at O(L * D * H * Q) per clip
  instead of O(L * D^2) for projecting every token.
- "knn": cosine k-NN on centered, L2-normalized pooled features, votes weighted by exp(cos / T) (DINO,
  Caron et al. 2021), k chosen on the held-out part.
- `low_shot_curve`: any protocol's accuracy against labelled clips per class, several seeded subsets per
  point, one fixed test split.

`run_protocol(name, train, test, seed, **kw)` calls a protocol by name (`PROTOCOLS`).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import math
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvd_lib.config import PROTOCOLS as CONFIG_PROTOCOLS
from mvd_lib.devices import usable_cores
from mvd_lib.pos_embed import sincos_1d, sincos_3d
from mvd_lib.probe import (Features, ProbeResult, check_splits, fit_probe, holdout_split, score_predictions,
                           stratified_holdout)
from mvd_lib.rng import generator

ProtocolName = Literal["linear", "attentive", "knn"]
PROTOCOLS: tuple[ProtocolName, ...] = CONFIG_PROTOCOLS  # type: ignore[assignment]  (defined with the configs)
PositionKind = Literal["sincos", "learned", "none"]
TOKEN_NORM_EPS = 1e-5  # epsilon of the attentive probe's LayerNorm over the frozen tokens
DEFAULT_K_GRID: tuple[int, ...] = (1, 5, 10, 20, 50)  # k values tried by the k-NN protocol


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ProtocolResult:
    """A protocol fitted on the training split and scored once on the test split; `to_dict()` for JSON.
    Same reporting fields as probe.ProbeResult, with the hyper-parameters by name in `chosen` / `grid`."""

    protocol: str  # "attentive" or "knn"
    top1: float  # test top-1 accuracy, percent
    top5: float | None  # test top-5 accuracy, percent (None with 5 classes or fewer)
    train_top1: float  # accuracy on the full training split, percent (k-NN: leave-one-out)
    chosen: dict[str, float]  # chosen hyper-parameters, e.g. {"lr": 0.003, "weight_decay": 0.05} or {"k": 10}
    grid: list[dict[str, float]]  # hyper-parameter settings tried, in order (ties go to the first)
    holdout_top1: list[float]  # held-out accuracy (percent) for each setting in `grid` (empty: no choice made)
    num_train: int  # training clips
    num_holdout: int  # of which held out to choose the hyper-parameters
    num_test: int  # test clips
    num_features: int  # D, features per token (F for pooled features)
    num_tokens: int  # L, tokens per clip (1 for pooled features)
    num_classes: int  # classes in the training split
    chance: float  # 100 / num_classes, percent
    seed: int  # seed of the held-out split, the initial weights and the data order
    label: str = "label"  # label set probed
    pooling: str = ""  # pooling of the features ("" when train and test differ)
    seconds: float = 0.0  # wall time of the fits
    settings: dict[str, Any] = field(default_factory=dict)  # fixed settings (epochs, heads, temperature, ...)
    test_pred: np.ndarray | None = field(default=None, repr=False)  # [N_test] int64 predicted class per test clip

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "test_pred"}
        out["test_pred"] = None if self.test_pred is None else self.test_pred.tolist()
        return out


def _choose(scores: list[float]) -> int:
    """Index of the best held-out score; ties go to the first setting."""
    return int(np.argmax(scores))


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` intra-op torch threads (None: leave the setting alone), then restore."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- attentive
@dataclass(frozen=True)
class AttentiveProbeConfig:
    """Architecture and fixed training budget of the attentive probe; the grids are searched on held-out data."""

    epochs: int = 40  # passes over the training clips (the same for the choice and for the refit)
    batch_size: int = 64  # clips per AdamW step
    lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # peak learning rates tried (cosine decay to 0)
    weight_decay_grid: tuple[float, ...] = (0.05,)  # AdamW weight decays tried (on Linear weights only)
    heads: int = 4  # attention heads (must divide the feature dimension D)
    queries: int = 4  # learned queries; their outputs are concatenated for the classifier
    position: PositionKind = "learned"  # added to the normalized tokens: learned (from sin-cos), fixed sin-cos, none
    standardize: bool = True  # each (position, feature) minus its training mean, over its training std, first
    eval_batch_size: int = 512  # clips per forward pass when scoring

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "heads", "queries", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttentiveProbeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr_grid or min(self.lr_grid) <= 0:
            raise ValueError(f"AttentiveProbeConfig.lr_grid must hold positive values, got {self.lr_grid}")
        if not self.weight_decay_grid or min(self.weight_decay_grid) < 0:
            raise ValueError(f"AttentiveProbeConfig.weight_decay_grid must hold values >= 0, "
                             f"got {self.weight_decay_grid}")
        if self.position not in ("sincos", "learned", "none"):
            raise ValueError(f"AttentiveProbeConfig.position must be 'sincos', 'learned' or 'none', "
                             f"got {self.position!r}")

    def settings(self) -> list[dict[str, float]]:
        """The (lr, weight_decay) settings searched, in order: lr ascending, then weight decay ascending."""
        return [{"lr": lr, "weight_decay": wd}
                for lr, wd in itertools.product(sorted(set(self.lr_grid)), sorted(set(self.weight_decay_grid)))]


def probe_positions(kind: PositionKind, num_tokens: int, dim: int,
                    grid: tuple[int, int, int] | None) -> torch.Tensor:
    """[L, D] position added to the probe's tokens: "sincos" is the MVD 3-D sin-cos table of `grid` when it
    fits (D divisible by 16, T'*H'*W' = L), else a 1-D sin-cos table over the token index; "none" is zeros."""
    if kind == "none":
        return torch.zeros(num_tokens, dim)
    if grid is not None and math.prod(grid) == num_tokens and dim % 16 == 0:
        return sincos_3d(dim, *grid)
    if dim % 2:
        raise ValueError(f"a sin-cos position needs an even feature dimension, got {dim}; use position='none'")
    return sincos_1d(dim, torch.arange(num_tokens))


class AttentivePooler(nn.Module):
    """Learned queries + multi-head cross-attention over frozen tokens + LayerNorm + linear classifier.
    tokens [B, L, D] -> logits [B, K]. See the module docstring for the data flow.

    Parameters are laid out as in nn.MultiheadAttention (q / k / v / proj Linear layers); the key bias is
    omitted because it adds the same logit to every token and cancels in the softmax. All initial weights are
    drawn from `generator` (truncated normal, std 0.02; biases 0; LayerNorms 1 / 0)."""

    def __init__(self, dim: int, num_tokens: int, num_classes: int, heads: int = 4, queries: int = 1,
                 position: PositionKind = "learned", grid: tuple[int, int, int] | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attentive probe heads ({heads}) must divide the feature dimension ({dim})")
        self.heads, self.head_dim = heads, dim // heads
        with torch.random.fork_rng(devices=[]):  # layers draw default weights from the global RNG: discard them
            self.norm = nn.LayerNorm(dim, eps=TOKEN_NORM_EPS)
            self.query = nn.Parameter(torch.empty(queries, dim))
            self.q = nn.Linear(dim, dim)
            self.k = nn.Linear(dim, dim, bias=False)
            self.v = nn.Linear(dim, dim)
            self.proj = nn.Linear(dim, dim)
            self.out_norm = nn.LayerNorm(dim)
            self.head = nn.Linear(queries * dim, num_classes)
        table = probe_positions(position, num_tokens, dim, grid)  # [L, D]
        if position == "learned":
            self.pos = nn.Parameter(table)
        else:
            self.register_buffer("pos", table)
        nn.init.trunc_normal_(self.query, std=0.02, generator=generator)
        for layer in (self.q, self.k, self.v, self.proj, self.head):
            nn.init.trunc_normal_(layer.weight, std=0.02, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def decayed(self) -> list[nn.Parameter]:
        """The Linear weights (AdamW decays these; biases, norms, queries and positions are left alone)."""
        return [layer.weight for layer in (self.q, self.k, self.v, self.proj, self.head)]

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cross-attention output of the queries. tokens: [B, L, D] -> [B, Q, D] (before `out_norm`).

        Equal to nn.MultiheadAttention(queries, x, x) with x = norm(tokens) + pos, computed without forming x:
        with z = normalize_tokens(tokens) (LayerNorm without its affine part), x = w * z + s where
        s = norm.bias + pos [L, D], so
            logits = (key * w) . z + key . s        (key = q^T W_k per query and head)
            pooled = w * (attn @ z) + attn @ s      (the attention-weighted mean of x)
        and W_v is applied to `pooled` (the weights sum to 1, so the value bias passes through). No gradient
        flows into the frozen tokens, so the only per-token work is two matrix products with z."""
        return self.attend_normalized(normalize_tokens(tokens))

    def attend_normalized(self, z: torch.Tensor) -> torch.Tensor:
        """`attend` on tokens already normalized by `normalize_tokens`. z: [B, L, D] -> [B, Q, D]."""
        B, L, D = z.shape
        H, E = self.heads, self.head_dim
        shift = self.norm.bias + self.pos  # [L, D]
        q = self.q(self.query).reshape(-1, H, E) * E**-0.5  # [Q, H, E]
        key = torch.einsum("qhe,hed->qhd", q, self.k.weight.reshape(H, E, D)).reshape(-1, D)  # [Q H, D]
        logits = (z.reshape(B * L, D) @ (key * self.norm.weight).T).reshape(B, L, -1).transpose(1, 2)  # [B, Q H, L]
        attn = (logits + (shift @ key.T).T).softmax(dim=-1)  # [B, Q H, L]
        pooled = self.norm.weight * (attn @ z) + attn @ shift  # [B, Q H, D]
        out = torch.einsum("bqhd,hed->bqhe", pooled.reshape(B, -1, H, D), self.v.weight.reshape(H, E, D))
        out = out + self.v.bias.reshape(H, E)  # [B, Q, H, E]
        return self.proj(out.reshape(B, -1, D))  # [B, Q, D]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, L, D] -> logits [B, K]."""
        return self.classify(normalize_tokens(tokens))

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] of tokens already normalized by `normalize_tokens`, z: [B, L, D]."""
        return self.head(self.out_norm(self.attend_normalized(z)).flatten(1))


def position_statistics(tokens: torch.Tensor | np.ndarray, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each [L, D] float32: every (position, feature) of tokens [N, L, D] over the N clips.

    Frozen tokens are dominated by what is the same in every clip at a position (the encoder's position
    embedding, the benchmark's layout); the class signal is a small deviation from it, which the per-token
    LayerNorm alone leaves buried (the slot-centring lesson of the cross-frame similarity, analysis.py).
    Accumulated in float64 `chunk` clips at a time."""
    total = torch.zeros(tokens.shape[1:], dtype=torch.float64)
    square = torch.zeros_like(total)
    for i in range(0, len(tokens), chunk):
        part = torch.as_tensor(np.asarray(tokens[i:i + chunk]) if not isinstance(tokens, torch.Tensor)
                               else tokens[i:i + chunk]).double()
        total += part.sum(0)
        square += (part * part).sum(0)
    n = len(tokens)
    mean = total / n
    var = (square / n - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()


def normalize_tokens(tokens: torch.Tensor | np.ndarray, stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                     chunk: int = 256) -> torch.Tensor:
    """Every token [.., L, D] minus its mean over D, divided by its std (LayerNorm without the affine part),
    computed in float32 and returned as a tensor in the dtype of `tokens` (float16 stays float16). With
    `stats` (mean, std [L, D], `position_statistics` of the training split) each (position, feature) is first
    standardized by them. A numpy array (e.g. memory-mapped features) is read `chunk` rows at a time into one
    preallocated tensor, so the float32 working memory stays small. The probe's fits normalize the frozen
    tokens once, not at every step."""
    D = tokens.shape[-1]

    def one(part: torch.Tensor) -> torch.Tensor:
        if stats is not None:
            part = (part - stats[0]) / (stats[1] + TOKEN_NORM_EPS)
        return F.layer_norm(part, (D,), eps=TOKEN_NORM_EPS)

    if isinstance(tokens, torch.Tensor):
        return one(tokens.float()).to(tokens.dtype)
    out = torch.empty(tokens.shape, dtype=torch.float16 if tokens.dtype == np.float16 else torch.float32)
    for i in range(0, len(tokens), chunk):
        out[i:i + chunk] = one(torch.from_numpy(np.array(tokens[i:i + chunk], dtype=np.float32))).to(out.dtype)
    return out


def token_view(features: Features) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """(tokens [N, L, D], their grid or None) of features the attentive probe can read: pooling "tokens"
    as they are, pooling "time" as its T' time-slot features [N, T', D] (grid (T', 1, 1))."""
    if features.x.ndim == 3:
        grid = features.grid if features.grid and math.prod(features.grid) == features.x.shape[1] else None
        return features.x, grid
    if features.pooling == "time" and features.grid is not None:
        t = features.grid[0]
        return features.x.reshape(len(features.x), t, -1), (t, 1, 1)
    raise ValueError(f"the attentive probe needs token features (pooling 'tokens') or time-slot features "
                     f"(pooling 'time' with a grid), got pooling {features.pooling!r} with shape {features.x.shape}")


def _train_pooler(z: torch.Tensor, y: torch.Tensor, num_classes: int, grid: tuple[int, int, int] | None,
                  cfg: AttentiveProbeConfig, lr: float, weight_decay: float, seed: int,
                  device: torch.device) -> AttentivePooler:
    """Train a fresh probe on normalized tokens z [N, L, D] (`normalize_tokens`) and classes y [N] (0..K-1)
    with AdamW, cosine decay to 0 over cfg.epochs. Initial weights and the data order come from one CPU
    generator seeded with `seed`; the tokens stay where they are and each batch is moved to `device`."""
    g = generator(seed)
    model = AttentivePooler(z.shape[2], z.shape[1], num_classes, cfg.heads, cfg.queries, cfg.position, grid, g)
    model.to(device)
    decayed = {id(p) for p in model.decayed()}
    groups = [{"params": model.decayed(), "weight_decay": weight_decay},
              {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr)
    n = len(y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total)))
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g)
        for i in range(steps_per_epoch):
            rows = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = F.cross_entropy(model.classify(z[rows].to(device).float()), y[rows].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def _predict(model: AttentivePooler, z: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax probabilities [N, K] of normalized tokens z [N, L, D]."""
    device = model.query.device
    return torch.cat([model.classify(z[i:i + batch_size].to(device).float()).softmax(dim=-1).cpu()
                      for i in range(0, len(z), batch_size)]).numpy()


def fit_attentive_probe(train: Features, test: Features, config: AttentiveProbeConfig = AttentiveProbeConfig(),
                        holdout_fraction: float | None = 0.2, seed: int = 0, threads: int | None = 1,
                        device: str | torch.device = "cpu") -> ProtocolResult:
    """Fit an attentive probe on `train` token features and score it once on `test`.

    1. Hold out a stratified `holdout_fraction` of the TRAINING split (by `seed`); for each (lr, weight decay)
       of the config's grids train a fresh probe on the rest and score the held-out part. The best setting
       wins; ties go to the first (smaller lr, then smaller weight decay).
    2. Train a fresh probe on the whole training split with that setting (same epochs) and score the test
       split once. holdout_fraction None skips step 1 (the grids must then hold one setting each).
    Features: pooling "tokens" ([N, L, D], float16 or float32) or "time" (its T' time slots are the tokens).
    Deterministic in `seed` (held-out split, initial weights, data order) for a fixed thread count; the
    global RNG is left untouched. threads: torch intra-op threads during the fit (None: unchanged).
    device: where the probe trains; the tokens stay in host memory and travel batch by batch."""
    with _torch_threads(threads):
        return _fit_attentive(train, test, config, holdout_fraction, seed, torch.device(device))


def _fit_attentive(train: Features, test: Features, cfg: AttentiveProbeConfig, holdout_fraction: float | None,
                   seed: int, device: torch.device) -> ProtocolResult:
    classes = check_splits(train, test, "attentive probe", pooled=False)
    tokens, grid = token_view(train)
    test_tokens = token_view(test)[0]
    stats = position_statistics(tokens) if cfg.standardize else None  # from the training split only
    z = normalize_tokens(tokens, stats)  # [N, L, D], normalized once for every fit
    z_test = normalize_tokens(test_tokens, stats)
    y = torch.from_numpy(np.searchsorted(classes, train.y))  # [N] in 0..K-1
    settings = cfg.settings()
    start = time.perf_counter()

    held_acc: list[float] = []
    split = holdout_split(train.y, holdout_fraction, seed, settings)
    best = settings[0]
    if split is not None:
        fit_idx, held_idx = (torch.from_numpy(i) for i in split)
        z_fit, z_held = z[fit_idx], z[held_idx]
        if cfg.standardize:  # the choice sees the statistics of the part it trains on, not of the held-out part
            fit_stats = position_statistics(tokens[split[0]])
            z_fit, z_held = normalize_tokens(tokens[split[0]], fit_stats), normalize_tokens(tokens[split[1]], fit_stats)
        for s in settings:
            model = _train_pooler(z_fit, y[fit_idx], len(classes), grid, cfg, s["lr"], s["weight_decay"], seed,
                                  device)
            pred = _predict(model, z_held, cfg.eval_batch_size).argmax(axis=1)
            held_acc.append(float(100.0 * np.mean(pred == y[held_idx].numpy())))
        best = settings[_choose(held_acc)]

    model = _train_pooler(z, y, len(classes), grid, cfg, best["lr"], best["weight_decay"], seed, device)
    train_acc = float(100.0 * np.mean(_predict(model, z, cfg.eval_batch_size).argmax(axis=1) == y.numpy()))
    top1, top5, pred = score_predictions(_predict(model, z_test, cfg.eval_batch_size), classes, test.y)
    fixed = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("lr_grid", "weight_decay_grid")}
    return ProtocolResult(
        protocol="attentive", top1=top1, top5=top5, train_top1=train_acc, chosen=dict(best), grid=settings,
        holdout_top1=held_acc, num_train=len(train.y), num_holdout=0 if split is None else len(split[1]),
        num_test=len(test.y), num_features=z.shape[2], num_tokens=z.shape[1], num_classes=len(classes),
        chance=100.0 / len(classes), seed=seed, label=train.label,
        pooling=train.pooling if train.pooling == test.pooling else "", seconds=time.perf_counter() - start,
        settings=fixed, test_pred=pred,
    )


# ---------------------------------------------------------------------------------------------- k-NN
def _normalize(x: np.ndarray, mean: np.ndarray | None) -> torch.Tensor:
    """Rows of x [N, F], minus `mean` when given, scaled to unit L2 norm -> float32 tensor [N, F]."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float32).copy())
    if mean is not None:
        t -= torch.from_numpy(mean.astype(np.float32))
    return F.normalize(t, dim=1)


def _neighbours(query: torch.Tensor, bank: torch.Tensor, k: int, exclude_self: bool = False,
                chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine similarities [M, k], bank rows [M, k]) of the k nearest bank rows to each query row, most
    similar first. exclude_self: query row i is bank row i and is not its own neighbour (leave-one-out)."""
    sims, rows = [], []
    for i in range(0, len(query), chunk):
        s = query[i:i + chunk] @ bank.T  # [m, N_bank]
        if exclude_self:
            s[torch.arange(len(s)), torch.arange(i, i + len(s))] = -torch.inf
        top = s.topk(k, dim=1)
        sims.append(top.values)
        rows.append(top.indices)
    return torch.cat(sims), torch.cat(rows)


def _votes(sims: torch.Tensor, rows: torch.Tensor, bank_y: torch.Tensor, k: int, num_classes: int,
           temperature: float | None) -> np.ndarray:
    """Class votes [M, K] of the first k neighbours: weight exp(cos / T) each (DINO), or 1 with T None."""
    w = torch.ones_like(sims[:, :k]) if temperature is None else (sims[:, :k] / temperature).exp()
    votes = torch.zeros(len(sims), num_classes)
    votes.scatter_add_(1, bank_y[rows[:, :k]], w)
    return votes.numpy()


def fit_knn(train: Features, test: Features, k_grid: Sequence[int] = DEFAULT_K_GRID,
            temperature: float | None = 0.07, center: bool = True, holdout_fraction: float | None = 0.2,
            seed: int = 0, threads: int | None = 1) -> ProtocolResult:
    """Cosine k-NN on pooled features: choose k on held-out training clips, then score the test split once.

    Features are centered by the mean of the clips that form the neighbour bank (`center`; a frozen ViT's
    tokens share a large common component) and L2-normalized. Each of the k nearest bank clips votes for its
    class with weight exp(cos / temperature) (DINO's weighted k-NN, T = 0.07), or 1 with temperature None;
    the class with the most votes wins (ties: the lower class). k is chosen from `k_grid` (k larger than the
    bank is capped) on a stratified held-out part of the training split, with the rest as the bank; ties go
    to the smaller k. The test split is then scored once against the whole training split. train_top1 is the
    leave-one-out accuracy on the training split. Deterministic (no randomness beyond the held-out split).
    threads: torch intra-op threads for the similarity products (None: unchanged)."""
    with _torch_threads(threads):
        return _fit_knn(train, test, k_grid, temperature, center, holdout_fraction, seed)


def _fit_knn(train: Features, test: Features, k_grid: Sequence[int], temperature: float | None, center: bool,
             holdout_fraction: float | None, seed: int) -> ProtocolResult:
    classes = check_splits(train, test, "k-NN")
    grid = sorted({int(k) for k in k_grid})
    if not grid or grid[0] < 1:
        raise ValueError(f"k_grid must hold values >= 1, got {list(k_grid)}")
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature must be positive (or None for plain votes), got {temperature}")
    start = time.perf_counter()
    y = torch.from_numpy(np.searchsorted(classes, train.y))  # [N] in 0..K-1
    K = len(classes)

    held_acc: list[float] = []
    split = holdout_split(train.y, holdout_fraction, seed, grid)
    best = grid[0]
    if split is not None:
        fit_idx, held_idx = split
        mean = train.x[fit_idx].mean(axis=0) if center else None
        bank, query = _normalize(train.x[fit_idx], mean), _normalize(train.x[held_idx], mean)
        sims, rows = _neighbours(query, bank, min(grid[-1], len(fit_idx)))
        for k in grid:
            votes = _votes(sims, rows, y[fit_idx], min(k, len(fit_idx)), K, temperature)
            held_acc.append(float(100.0 * np.mean(votes.argmax(axis=1) == y[held_idx].numpy())))
        best = grid[_choose(held_acc)]

    mean = train.x.mean(axis=0) if center else None
    bank = _normalize(train.x, mean)
    k = min(best, len(bank))
    top1, top5, pred = score_predictions(_votes(*_neighbours(_normalize(test.x, mean), bank, k), y, k, K,
                                                temperature), classes, test.y)
    loo_k = min(best, len(bank) - 1)
    loo = _votes(*_neighbours(bank, bank, loo_k, exclude_self=True), y, loo_k, K, temperature) if loo_k else None
    return ProtocolResult(
        protocol="knn", top1=top1, top5=top5,
        train_top1=float(100.0 * np.mean(loo.argmax(axis=1) == y.numpy())) if loo is not None else 0.0,
        chosen={"k": best}, grid=[{"k": k} for k in grid], holdout_top1=held_acc, num_train=len(train.y),
        num_holdout=0 if split is None else len(split[1]), num_test=len(test.y), num_features=train.x.shape[1],
        num_tokens=1, num_classes=K, chance=100.0 / K, seed=seed, label=train.label,
        pooling=train.pooling if train.pooling == test.pooling else "", seconds=time.perf_counter() - start,
        settings={"temperature": temperature, "center": center}, test_pred=pred,
    )


# ---------------------------------------------------------------------------------------------- by name
Result = ProbeResult | ProtocolResult


def run_protocol(name: ProtocolName, train: Features, test: Features, seed: int = 0, **kw: Any) -> Result:
    """Fit protocol `name` on `train`, score `test` once.

    "linear": probe.fit_probe(train, test, seed=seed, **kw) (c_grid, holdout_fraction, max_iter, threads).
    "attentive": fit_attentive_probe; kw may hold `config` (an AttentiveProbeConfig), AttentiveProbeConfig
        fields that override it (e.g. epochs=10, lr_grid=(1e-3,)), holdout_fraction, threads and device.
    "knn": fit_knn(train, test, seed=seed, **kw) (k_grid, temperature, center, holdout_fraction, threads).
    Every protocol takes holdout_fraction (None: fit the single setting given, no choice) and threads."""
    if name == "linear":
        return fit_probe(train, test, seed=seed, **kw)
    if name == "knn":
        return fit_knn(train, test, seed=seed, **kw)
    if name == "attentive":
        config = kw.pop("config", AttentiveProbeConfig())
        fields = {f.name for f in dataclasses.fields(AttentiveProbeConfig)}
        overrides = {k: kw.pop(k) for k in list(kw) if k in fields}
        unknown = sorted(set(kw) - {"holdout_fraction", "threads", "device"})
        if unknown:
            raise TypeError(f"unknown attentive-probe argument(s) {unknown}; use holdout_fraction, threads, device, "
                            f"config or AttentiveProbeConfig fields {sorted(fields)}")
        return fit_attentive_probe(train, test, dataclasses.replace(config, **overrides), seed=seed, **kw)
    raise ValueError(f"unknown protocol {name!r}; use one of {PROTOCOLS}")


# Feature values (summed over the jobs' training splits) from which `run_protocols` shares its fits among worker
# processes by default: smaller fits take less time than starting the workers (a few seconds).
PARALLEL_MIN_VALUES = 10_000_000


@dataclass(frozen=True)
class ProtocolJob:
    """One fit of `run_protocols`: protocol `name` on `train`, scored once on `test`, with `settings` (the
    keyword arguments of `run_protocol`, e.g. {"c_grid": (0.1, 1.0)} or {"lr_grid": (1e-3,)})."""

    name: ProtocolName
    train: Features
    test: Features
    settings: Mapping[str, Any] = field(default_factory=dict)


def _run_job(job: ProtocolJob, seed: int) -> Result:
    return run_protocol(job.name, job.train, job.test, seed=seed, **dict(job.settings))


def run_protocols(jobs: Sequence[ProtocolJob], seed: int = 0, workers: int | None = None) -> list[Result]:
    """`run_protocol` on each job, in order, the independent fits shared among `workers` processes.

    Every fit runs on one thread (the protocols' default), in the parent or in a worker, so the results are the
    same as fitting the jobs one after another; only the wall time changes. workers None: one per CPU core this
    process may use (devices.usable_cores: one in a lane), at most 2, when the jobs' training splits hold
    PARALLEL_MIN_VALUES feature values or more, else 1 (no workers).
    Workers are forked (on Linux only; elsewhere the jobs run one after another), so they need no importable
    __main__ and work from scripts, notebooks and stdin alike, as DataLoader workers do. If a worker dies (killed
    for memory, say), the jobs are fitted here one after another instead, with a warning."""
    jobs = list(jobs)
    if workers is None:
        size = sum(job.train.x.size for job in jobs)
        workers = min(2, usable_cores()) if size >= PARALLEL_MIN_VALUES else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if any(dict(job.settings).get("threads", 1) != 1 for job in jobs):
        raise ValueError("run_protocols fits each job on one thread; leave out `threads`")
    if workers == 1 or len(jobs) < 2 or sys.platform != "linux":
        return [_run_job(job, seed) for job in jobs]
    context = multiprocessing.get_context("fork")
    try:
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            return list(pool.map(_run_job, jobs, [seed] * len(jobs)))
    except concurrent.futures.process.BrokenProcessPool:
        warnings.warn(f"a worker process sharing {len(jobs)} probe fits died (out of memory?); fitting them here "
                      "one after another", RuntimeWarning, stacklevel=2)
        return [_run_job(job, seed) for job in jobs]


# ---------------------------------------------------------------------------------------------- low shot
# Settings used on training subsets too small to hold anything out (e.g. one clip per class), by protocol.
FIXED_SETTINGS: dict[str, dict[str, Any]] = {
    "linear": {"c_grid": (1e-2,)},
    "knn": {"k_grid": (1,)},
    "attentive": {"lr_grid": (3e-3,), "weight_decay_grid": (0.05,)},
}


@dataclass
class LowShotCurve:
    """Test top-1 of one protocol against labelled training clips per class; `to_dict()` / `table()`."""

    protocol: str  # protocol name
    shots: list[int | None]  # clips per class asked for at each point (None: the whole training split)
    clips_per_class: list[float]  # mean training clips per class actually used (classes with fewer keep all)
    mean: list[float]  # mean test top-1 (percent) over the subsets of each point
    std: list[float]  # their standard deviation (ddof 0; 0 for a single subset)
    values: list[list[float]]  # test top-1 of every subset, by point
    chosen: list[list[dict[str, float]]]  # chosen hyper-parameters of every subset, by point
    held_out: list[bool]  # hyper-parameters chosen on a held-out part (False: the fixed settings were used)
    num_test: int  # test clips (the same test split at every point)
    chance: float  # 100 / classes in the training split, percent
    seed: int  # base seed of the subsets and fits
    seconds: float = 0.0  # wall time

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> list[dict[str, Any]]:
        """One row per point: shots, clips_per_class, mean, std, values, held_out."""
        return [{"shots": s, "clips_per_class": c, "mean": m, "std": d, "values": v, "held_out": h}
                for s, c, m, d, v, h in zip(self.shots, self.clips_per_class, self.mean, self.std, self.values,
                                            self.held_out)]


def _can_hold_out(y: np.ndarray, fraction: float | None) -> bool:
    if fraction is None:
        return False
    try:
        stratified_holdout(y, fraction, 0)
    except ValueError:
        return False
    return True


def low_shot_rows(y: np.ndarray, shots: int, seed: int, repeat: int = 0) -> np.ndarray:
    """Sorted rows of `y` keeping `shots` rows of every class (all of a class with fewer): the first `shots`
    of one permutation per class drawn from (seed, repeat), so more shots extend fewer (nested subsets)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1 clips per class (or None for all), got {shots}")
    y = np.asarray(y)
    rng = np.random.default_rng([seed, repeat])
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        keep.append(rows[rng.permutation(len(rows))[:shots]])
    return np.sort(np.concatenate(keep))


def low_shot_curve(train: Features, test: Features, shots: Sequence[int | None] = (1, 2, 5, 10, 25, None),
                   repeats: int = 3, protocol: ProtocolName = "linear", seed: int = 0,
                   holdout_fraction: float = 0.2, fixed: Mapping[str, Any] | None = None,
                   **kw: Any) -> LowShotCurve:
    """Test accuracy of `protocol` trained on `s` labelled clips per class, for each s in `shots`.

    Subset r (r < repeats) of every point is `low_shot_rows(train.y, s, seed, r)`, so the subsets of one r are
    nested (1 shot within 2 within 5 ...). The protocol runs on it with seed + r, choosing its
    hyper-parameters on a held-out part of the SUBSET (`holdout_fraction`); a subset too small to hold
    anything out (e.g. 1 or 2 clips per class at 0.2) uses `fixed` settings instead (default
    FIXED_SETTINGS[protocol]). Point None is the whole training split, fitted once with `seed`, so it equals
    run_protocol(protocol, train, test, seed, holdout_fraction=holdout_fraction, **kw). The test split is the
    same at every point. kw: passed to run_protocol (e.g. c_grid, k_grid, config)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for s in shots:
        if s is not None and s < 1:
            raise ValueError(f"shots must be >= 1 clips per class (or None for all), got {s}")
    fixed = dict(FIXED_SETTINGS[protocol] if fixed is None else fixed)
    classes = check_splits(train, test, f"{protocol} low-shot curve", pooled=False)
    start = time.perf_counter()
    out: dict[str, list] = {k: [] for k in ("clips", "mean", "std", "values", "chosen", "held")}
    for s in shots:
        values, chosen, held = [], [], []
        sizes: list[int] = []
        for r in range(1 if s is None else repeats):
            if s is None:
                subset, fit_seed = train, seed
            else:
                subset, fit_seed = train.subset(low_shot_rows(train.y, s, seed, r)), seed + r
            can = _can_hold_out(subset.y, holdout_fraction)
            args = {**kw, "holdout_fraction": holdout_fraction} if can else {**kw, **fixed, "holdout_fraction": None}
            res = run_protocol(protocol, subset, test, fit_seed, **args)
            values.append(res.top1)
            chosen.append(dict(res.chosen))
            held.append(can)
            sizes.append(len(subset.y))
        out["clips"].append(float(np.mean(sizes)) / len(classes))
        out["mean"].append(float(np.mean(values)))
        out["std"].append(float(np.std(values)))
        out["values"].append(values)
        out["chosen"].append(chosen)
        out["held"].append(all(held))
    return LowShotCurve(protocol=protocol, shots=list(shots), clips_per_class=out["clips"], mean=out["mean"],
                        std=out["std"], values=out["values"], chosen=out["chosen"], held_out=out["held"],
                        num_test=len(test.y), chance=100.0 / len(classes), seed=seed,
                        seconds=time.perf_counter() - start)
