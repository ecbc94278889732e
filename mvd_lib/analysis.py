"""Analysis arrays for teaching MVD: what the teachers' and students' features, reconstructions and attention
look like, and the training curves of a run. Plain functions over models and tensors that return arrays;
their figures are drawn by the companions in viz.py.

1. Cross-frame feature similarity (paper Figure 3, paper_results.md): a T' x T' cosine-similarity matrix of
   the time slots' features, averaged over clips, raw and slot-centred.
2. Masked reconstructions of MAE, VideoMAE and the student's pixel branch (paper Table 7), pixels back in
   ImageNet-normalized space, with the masked-input view beside them.
3. Teacher target vs student prediction at masked tubes (paper Sec. 3.2): PCA-to-RGB maps and a
   cosine-error map.
4. Attention rollout (Abnar & Zuidema 2020) and mean attention distance per layer and head, split into a
   spatial and a temporal part.
5. Curves of a run record (metrics.json): loss, loss parts, learning rate and probe accuracies per step.
6. Shorter budgets of one recipe (run overrides), to show a model at several points of learning.
7. Probe runs' results as table rows (encoder, protocol, task, pooling).
8. Views the notebooks need: a similarity matrix by time lag, and the frozen teachers a distill run regressed.

Conventions: masks are `[B, N]` with True = masked; tokens are in (t, h, w) row-major order; nothing here
draws from the global RNG (mask sampling takes a seed or a `torch.Generator`). Models run in eval mode without
autograd (their mode is restored afterwards) and no model output is changed by any function here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvd_lib import transforms as T
from mvd_lib.blocks import Attention
from mvd_lib.evaluate import clip_batches, model_device
from mvd_lib.losses import (image_pixel_targets_inverse, patchify_images, patchify_videos, unpatchify_images,
                            unpatchify_videos, video_pixel_targets_inverse)
from mvd_lib.mae import MAEPretrain
from mvd_lib.masking import mask_to_pixels, random_mask, tube_mask
from mvd_lib.probe import encoder_tokens, token_grid
from mvd_lib.rng import generator as make_generator
from mvd_lib.student import PIXEL_BRANCH, MVDStudent
from mvd_lib.teachers import FrozenTeacher
from mvd_lib.videomae import VideoMAEPretrain
from mvd_lib.vit import VideoViT

FeatureSource = Literal["encoder", "target"]
SlotForm = Literal["tokens", "mean"]
FEATURE_SOURCES: tuple[FeatureSource, ...] = ("encoder", "target")
SLOT_FORMS: tuple[SlotForm, ...] = ("tokens", "mean")


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the body; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# ================================================================================ 1. cross-frame similarity
def _target_tokens(model: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """The last block output before the final norm, as distillation consumes it. video: [B, C, T, H, W] -> [B, N, D]."""
    if isinstance(model, FrozenTeacher):
        return model(video)  # ImageTeacher reads frames 0, tubelet, 2*tubelet, ...; VideoTeacher the whole clip
    if isinstance(model, VideoViT):
        return VideoViT.forward(model, video, pre_norm=True)
    raise TypeError(f"source='target' needs a teacher (ImageTeacher, VideoTeacher) or a VideoViT, "
                    f"got {type(model).__name__}")


def slot_features(model: nn.Module, video: torch.Tensor, source: FeatureSource = "encoder") -> torch.Tensor:
    """Per-time-slot token features of a batch of clips. video: [B, C, T, H, W] -> [B, T', H'W', D] float32.

    source "encoder": the encoder output after its final norm (`probe.encoder_tokens`: a VideoViT or subclass,
    a teacher's encoder, an ImageViT read frame by frame); "target": the last block output BEFORE the final
    norm, exactly the targets distillation consumes (`ImageTeacher.forward` on frames 0, tubelet, 2*tubelet,
    ..., `VideoTeacher.forward`, or a VideoViT's `forward(pre_norm=True)`). An image teacher therefore gives
    the same T' slots as the video models (a bare ImageViT reads every frame: wrap it in an ImageTeacher to
    read the frames distillation uses)."""
    if source not in FEATURE_SOURCES:
        raise ValueError(f"unknown feature source {source!r}; use one of {FEATURE_SOURCES}")
    video = video.to(model_device(model))
    with _evaluating(model):
        tokens = encoder_tokens(model, video) if source == "encoder" else _target_tokens(model, video)
    t, h, w = token_grid(model, video.shape[2])
    B, N, D = tokens.shape
    if N != t * h * w:
        raise ValueError(f"{N} tokens do not fill the grid {(t, h, w)}")
    return tokens.float().reshape(B, t, h * w, D)


def iterate_clips(clips: Any, batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Batches `[B, C, T, H, W]` from a tensor or array ([B, C, T, H, W] or one clip [C, T, H, W]), a dataset
    whose items carry "video" [C, T, H, W] (read in order), or an iterable of tensors / dicts with "video"."""
    if isinstance(clips, np.ndarray):
        clips = torch.as_tensor(clips)
    if isinstance(clips, torch.Tensor):
        yield from (clips[None] if clips.dim() == 4 else clips).split(batch_size)
        return
    if hasattr(clips, "__getitem__") and hasattr(clips, "__len__") and not isinstance(clips, (list, tuple)):
        for batch in clip_batches(clips, batch_size, (), progress=False):
            yield batch["video"]
        return
    for item in clips:
        video = torch.as_tensor(item["video"] if isinstance(item, Mapping) else item)
        video = video[None] if video.dim() == 4 else video
        if video.dim() != 5:
            raise ValueError(f"clips must be [B, C, T, H, W] or [C, T, H, W], got shape {tuple(video.shape)}")
        yield video


def collect_slot_features(model: nn.Module, clips: Any, source: FeatureSource = "encoder",
                          max_clips: int | None = None, batch_size: int = 8) -> torch.Tensor:
    """`slot_features` of every clip (see `iterate_clips` for the inputs), on the CPU: [N_clips, T', H'W', D].

    Memory: N_clips * T' * H'W' * D * 4 bytes (2 kB per token of a ViT-B); cap it with `max_clips`."""
    out: list[torch.Tensor] = []
    count = 0
    for video in iterate_clips(clips, batch_size):
        if max_clips is not None:
            video = video[: max_clips - count]
        if len(video) == 0:
            break
        out.append(slot_features(model, video, source).cpu())
        count += len(video)
        if max_clips is not None and count >= max_clips:
            break
    if not out:
        raise ValueError("no clips to analyse")
    return torch.cat(out)


def slot_means(features: torch.Tensor, form: SlotForm = "tokens") -> torch.Tensor:
    """Each time slot's dataset-mean feature. features: [N, T', P, D] -> [T', P, D] ("tokens": per slot and
    patch position) or [T', 1, D] ("mean": of the slot's mean-pooled feature)."""
    _check_form(form)
    mean = features.mean(dim=0)  # [T', P, D]
    return mean if form == "tokens" else mean.mean(dim=1, keepdim=True)


def _check_form(form: str) -> None:
    if form not in SLOT_FORMS:
        raise ValueError(f"unknown slot form {form!r}; use one of {SLOT_FORMS}")


def slot_similarity(features: torch.Tensor, form: SlotForm = "tokens",
                    centre: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every pair of time slots, per clip. features: [B, T', P, D] -> [B, T', T'].

    form "tokens" (the default): cos between the tokens of the same patch position in slots t and s, averaged
    over the P = H'W' positions (the slots' feature maps compared place by place); "mean": cos between the
    slots' mean-pooled features. `centre` ([T', P, D] or [T', 1, D], see `slot_means`) is subtracted first.
    A zero vector has similarity 0 with everything (so a fully centred-away slot reads 0, not 1)."""
    _check_form(form)
    x = features.double()
    if form == "mean":
        x = x.mean(dim=2, keepdim=True)  # [B, T', 1, D]
    if centre is not None:
        x = x - centre.double().reshape(x.shape[1], -1, x.shape[-1])
    x = F.normalize(x, dim=-1, eps=1e-12)
    return torch.einsum("btpd,bspd->bts", x, x) / x.shape[2]  # mean over positions of the token-wise cosine


@dataclass
class FrameSimilarity:
    """Cross-frame feature similarity of one model over a set of clips (paper Figure 3)."""

    raw: np.ndarray  # [T', T'] cosine similarity of time slots, mean over clips
    centred: np.ndarray  # [T', T'] the same after subtracting each slot's dataset-mean feature
    num_clips: int  # clips averaged over
    form: str  # "tokens" or "mean" (see slot_similarity)
    source: str = ""  # "encoder" or "target" when computed from a model


def frame_similarity(features: torch.Tensor, form: SlotForm = "tokens", source: str = "") -> FrameSimilarity:
    """Raw and slot-centred similarity matrices from features [N_clips, T', P, D] (`collect_slot_features`).

    Slot-centring subtracts each time slot's dataset-mean feature (`slot_means`, in the same form) before the
    cosine, so an offset that depends only on the slot (a position embedding, a fixed per-frame bias) does not
    read as temporal structure. It needs several clips: with one, every centred feature is zero."""
    raw = slot_similarity(features, form).mean(dim=0)
    centred = slot_similarity(features, form, centre=slot_means(features, form)).mean(dim=0)
    return FrameSimilarity(raw=raw.numpy(), centred=centred.numpy(), num_clips=features.shape[0], form=form,
                           source=source)


def cross_frame_similarity(model: nn.Module, clips: Any, source: FeatureSource = "encoder",
                           form: SlotForm = "tokens", max_clips: int | None = None,
                           batch_size: int = 8) -> FrameSimilarity:
    """Paper Figure 3 for one model: `collect_slot_features` then `frame_similarity`. clips: see `iterate_clips`."""
    _check_form(form)
    features = collect_slot_features(model, clips, source, max_clips, batch_size)
    return frame_similarity(features, form, source)


# ================================================================================ 2. masked reconstructions
def masked_input(x: torch.Tensor, mask: torch.Tensor, patch: int, tubelet: int | None = None,
                 grey: float = 0.5) -> torch.Tensor:
    """What the encoder is shown: masked patches painted grey. x: [B, C, T, H, W] (give `tubelet`) or images
    [B, C, H, W], ImageNet-normalized; mask: [B, N] -> same shape as x. `grey` is the pixel value in [0, 1]."""
    grid = tuple(s // patch for s in x.shape[-2:])
    if x.dim() == 5:
        if tubelet is None:
            raise ValueError("a video needs its tubelet size")
        grid = (x.shape[2] // tubelet, *grid)
    pix = mask_to_pixels(mask.to(x.device), grid, tubelet or 1, patch).unsqueeze(1)  # [B, 1, (T,) H, W]
    fill = T.normalize(torch.full((x.shape[1],), grey, dtype=x.dtype, device=x.device))
    fill = fill.reshape(1, -1, *([1] * (x.dim() - 2)))
    return torch.where(pix, fill, x)


def _pixel_predictions(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalized-pixel predictions of the masked tokens: [B, N_mask, P]."""
    if isinstance(model, (MAEPretrain, VideoMAEPretrain)):
        return model(x, mask)
    if isinstance(model, MVDStudent):
        latent = VideoViT.forward(model, x, mask)  # [B, N_vis, D]
        return model.decode(PIXEL_BRANCH, latent, mask)
    raise TypeError(f"cannot reconstruct pixels with {type(model).__name__}")  # reconstruct checks first


def reconstruct(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The model's reconstruction: predictions at masked tokens, the original at visible ones.

    model: MAEPretrain (x: images [B, C, H, W]), VideoMAEPretrain or an MVDStudent built with pixel=True
    (branch "pix"; x: video [B, C, T, H, W]); mask: [B, N] (True = masked, e.g. `reconstruction_mask`).
    The models predict per-patch normalized pixels (losses.image_pixel_targets / video_pixel_targets); the
    normalization is undone with the ORIGINAL patch's mean and std (`losses.*_pixel_targets_inverse`), as the
    MAE demo does, so a reconstruction borrows each masked patch's mean colour and contrast from the input.
    Returns the same shape as x, in ImageNet-normalized space (`transforms.denormalize` gives pixels); with
    nothing masked it is x exactly."""
    if not isinstance(model, (MAEPretrain, VideoMAEPretrain, MVDStudent)):
        raise TypeError(f"cannot reconstruct pixels with {type(model).__name__}; use MAEPretrain, VideoMAEPretrain "
                        "or an MVDStudent with pixel=True")
    if isinstance(model, MVDStudent) and PIXEL_BRANCH not in model.branches:
        raise ValueError(f"the student has no pixel branch {PIXEL_BRANCH!r}; build it with pixel=True")
    cfg = model.cfg
    x = x.to(model_device(model))
    mask = mask.to(x.device)
    if x.dim() == 4:
        if not isinstance(model, MAEPretrain):
            raise ValueError(f"{type(model).__name__} reconstructs videos [B, C, T, H, W], got {tuple(x.shape)}")
        grid2 = (x.shape[2] // cfg.patch_size, x.shape[3] // cfg.patch_size)
        original = patchify_images(x, cfg.patch_size)  # [B, L, p*p*C]
        if not bool(mask.any()):
            return unpatchify_images(original, cfg.patch_size, grid2)
        with _evaluating(model):
            pred = _pixel_predictions(model, x, mask)  # [B, L_mask, p*p*C]
        full = torch.zeros(original.shape, dtype=torch.float32, device=x.device)
        full[mask] = pred.float().reshape(-1, full.shape[-1])
        values = image_pixel_targets_inverse(full, x, cfg.patch_size).to(x.dtype)
        out = torch.where(mask[:, :, None], values, original)
        return unpatchify_images(out, cfg.patch_size, grid2)
    if isinstance(model, MAEPretrain):
        raise ValueError(f"MAEPretrain reconstructs images [B, C, H, W], got {tuple(x.shape)}")
    p, t = cfg.patch_size, cfg.tubelet_size
    grid = (x.shape[2] // t, x.shape[3] // p, x.shape[4] // p)
    original = patchify_videos(x, p, t)  # [B, N, t*p*p, C]
    if not bool(mask.any()):
        return unpatchify_videos(original, p, t, grid)
    with _evaluating(model):
        pred = _pixel_predictions(model, x, mask)  # [B, N_mask, t*p*p*C]
    full = torch.zeros(*original.shape[:2], original[0, 0].numel(), dtype=torch.float32, device=x.device)
    full[mask] = pred.float().reshape(-1, full.shape[-1])
    values = video_pixel_targets_inverse(full, x, p, t).to(x.dtype)  # [B, N, t*p*p, C]
    out = torch.where(mask[:, :, None, None], values, original)
    return unpatchify_videos(out, p, t, grid)


def reconstruction_mask(model: nn.Module, batch: int, ratio: float,
                        generator: torch.Generator | int = 0) -> torch.Tensor:
    """The mask a pixel model is trained with: random patches for MAEPretrain, tubes for video models.
    generator: a torch.Generator or a seed. -> [B, N] bool (True = masked)."""
    g = make_generator(generator) if isinstance(generator, int) else generator
    cfg = model.cfg
    if isinstance(model, MAEPretrain):
        return random_mask(batch, model.num_patches, ratio, g)
    return tube_mask(batch, cfg.grid, ratio, g)


@dataclass
class MaskedReconstruction:
    """One masking of a batch and what the model makes of it (all in the layout of the input)."""

    ratio: float  # mask ratio
    mask: torch.Tensor  # [B, N] bool, True = masked
    masked: torch.Tensor  # input with masked patches greyed, [B, C, (T,) H, W]
    reconstruction: torch.Tensor  # predictions at masked, original at visible patches, [B, C, (T,) H, W]


def reconstructions(model: nn.Module, x: torch.Tensor, ratios: Sequence[float] = (0.9, 0.95, 0.98),
                    seed: int = 0) -> list[MaskedReconstruction]:
    """`reconstruct` at each mask ratio, each mask drawn from a generator seeded with `seed`.
    x: images [B, C, H, W] (MAEPretrain) or video [B, C, T, H, W]."""
    cfg = model.cfg
    x = x.to(model_device(model))
    tubelet = None if x.dim() == 4 else cfg.tubelet_size
    out = []
    for ratio in ratios:
        mask = reconstruction_mask(model, x.shape[0], ratio, seed).to(x.device)
        out.append(MaskedReconstruction(ratio, mask, masked_input(x, mask, cfg.patch_size, tubelet),
                                        reconstruct(model, x, mask)))
    return out


# ================================================================================ 3. target vs prediction
def pca_basis(features: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of features [M, D]: (mean [D], components [k, D], explained variance fraction [k]), float64.
    Each component's sign is fixed so that its largest-magnitude coordinate is positive (deterministic)."""
    x = features.reshape(-1, features.shape[-1]).double()
    mean = x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    comps = vh[:k]
    sign = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    var = s**2
    return mean, comps, (var[:k] / var.sum().clamp_min(1e-300))


def pca_rgb(features: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, lo: torch.Tensor,
            hi: torch.Tensor) -> torch.Tensor:
    """Project features [..., D] on 3 components and map each to [0, 1] by its range [lo, hi] ([3] each),
    clipped. -> [..., 3]."""
    proj = (features.double() - mean) @ components.T  # [..., 3]
    return ((proj - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def cosine_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 grid: tuple[int, int, int]) -> torch.Tensor:
    """1 - cos(pred, target) at masked tokens as a map. pred: [B, N_mask, D] (ascending token order, as the
    student returns it), target: [B, N, D], mask: [B, N] -> [B, T', H', W'] float64, NaN at visible tokens."""
    err = torch.full(mask.shape, float("nan"), dtype=torch.float64, device=target.device)
    masked_target = target[mask].double()  # [(B N_mask), D]
    err[mask] = 1.0 - F.cosine_similarity(pred.reshape(-1, pred.shape[-1]).double(), masked_target, dim=-1)
    return err.reshape(mask.shape[0], *grid)


@dataclass
class TargetMaps:
    """Teacher targets vs student predictions of one branch, token by token (see `target_maps`)."""

    target: np.ndarray  # [B, T', H', W', 3] RGB in [0, 1]: 3 PCA components of the teacher targets
    prediction: np.ndarray  # [B, T', H', W', 3] the same projection of the predictions at masked tokens
    error: np.ndarray  # [B, T', H', W'] 1 - cos(prediction, target) at masked tokens, NaN at visible ones
    mask: np.ndarray  # [B, T', H', W'] bool, True = masked
    explained: np.ndarray  # [3] fraction of the targets' variance the 3 components explain
    branch: str = ""  # "img", "vid", ...


def target_maps(student: MVDStudent, video: torch.Tensor, mask: torch.Tensor,
                targets: Mapping[str, torch.Tensor], branch: str = "img",
                unmasked: Literal["target", "blank"] = "target", quantile: float = 0.01) -> TargetMaps:
    """What the student predicts at masked tubes next to what its teacher gives there.

    video: [B, C, T, H, W]; mask: [B, N] (True = masked); targets: {branch: [B, N, D]} for every token, e.g.
    `distill.teacher_targets(teachers, video)`. One PCA is fitted on the B*N target tokens; targets and
    predictions are projected with it and each component is mapped to a colour channel by the targets'
    `quantile` .. 1-`quantile` range (clipped). Visible tokens of the prediction map show the target
    (`unmasked="target"`) or white ("blank")."""
    if branch not in targets:
        raise KeyError(f"no targets for branch {branch!r}; have {sorted(targets)}")
    if branch not in student.branches:
        raise KeyError(f"the student has no branch {branch!r}; it has {student.branches}")
    if unmasked not in ("target", "blank"):
        raise ValueError(f"unmasked must be 'target' or 'blank', got {unmasked!r}")
    target = targets[branch]
    B, N = mask.shape
    if target.shape[:2] != (B, N):
        raise ValueError(f"targets[{branch!r}] is {tuple(target.shape)}; give every token's target [B, N, D] "
                         f"with B, N = {B}, {N}")
    device = model_device(student)
    video, mask, target = video.to(device), mask.to(device), target.to(device)
    with _evaluating(student):
        pred = student.decode(branch, VideoViT.forward(student, video, mask), mask)  # [B, N_mask, D]
    grid = student.grid
    mean, comps, explained = pca_basis(target.reshape(B * N, -1))
    proj = (target.reshape(B * N, -1).double() - mean) @ comps.T  # [B N, 3]
    lo, hi = torch.quantile(proj, quantile, dim=0), torch.quantile(proj, 1 - quantile, dim=0)
    target_rgb = pca_rgb(target, mean, comps, lo, hi)  # [B, N, 3]
    pred_rgb = target_rgb.clone() if unmasked == "target" else torch.ones_like(target_rgb)
    pred_rgb[mask] = pca_rgb(pred.reshape(-1, pred.shape[-1]), mean, comps, lo, hi)
    error = cosine_error(pred, target, mask, grid)
    shape = (B, *grid)
    return TargetMaps(target=target_rgb.reshape(*shape, 3).float().cpu().numpy(),
                      prediction=pred_rgb.reshape(*shape, 3).float().cpu().numpy(),
                      error=error.cpu().numpy(), mask=mask.reshape(shape).cpu().numpy(),
                      explained=explained.float().cpu().numpy(), branch=branch)


# ================================================================================ 4. attention
def attention_probs(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of one attention layer for its input x: [B, N, D] -> [B, heads, N, N],
    softmax(q k^T * scale), the same formula as the layer's "math" path."""
    B, N, _ = x.shape
    qkv = F.linear(x, attn.qkv.weight, attn.qkv_bias())  # [B, N, 3D]
    q, k, _ = qkv.reshape(B, N, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, h, N, hd]
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def _video_encoder(model: nn.Module) -> VideoViT:
    if isinstance(model, FrozenTeacher):
        model = model.model
    if isinstance(model, VideoMAEPretrain):
        model = model.encoder
    if not isinstance(model, VideoViT):
        raise TypeError(f"attention maps need a VideoViT (or a teacher / VideoMAEPretrain around one), "
                        f"got {type(model).__name__}")
    return model


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the attention probabilities of every encoder block while the body runs the model.

    Yields a list that fills, block by block and call by call, with [B, heads, N, N] float32 CPU tensors.
    Forward pre-hooks read each attention layer's input and recompute its probabilities beside the model
    (`attention_probs`); they return nothing, so the model's computation and outputs are untouched. The hooks
    are removed on exit."""
    enc = _video_encoder(model)
    maps: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        with torch.no_grad():
            maps.append(attention_probs(module, args[0]).float().cpu())

    handles = [blk.attn.register_forward_pre_hook(hook) for blk in enc.blocks]
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def attention_maps(model: nn.Module, video: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Attention probabilities of every encoder block for a batch of clips: a list (one per block) of
    [B, heads, N, N] float32 CPU tensors (N = visible tokens when `mask` is given). See `capture_attention`.
    Memory: depth * heads * N^2 floats per clip (1.4 GB for a ViT-B on 1568 tokens)."""
    enc = _video_encoder(model)
    device = model_device(enc)
    with capture_attention(enc) as maps, _evaluating(enc):
        VideoViT.forward(enc, video.to(device), None if mask is None else mask.to(device))
    return maps


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): per layer, average the heads, add the identity (the residual
    path) and renormalize the rows; multiply through the layers, last layer on the left.
    attentions: per layer [B, heads, N, N] -> [B, N, N], row i = how output token i draws on each input token."""
    if not attentions:
        raise ValueError("no attention maps to roll out")
    B, _, N, _ = attentions[0].shape
    eye = torch.eye(N, dtype=torch.float64)
    result = eye.expand(B, N, N)
    for a in attentions:
        a = a.double().mean(dim=1) + eye  # [B, N, N]
        result = (a / a.sum(dim=-1, keepdim=True)) @ result
    return result


def rollout_map(rollout: torch.Tensor, grid: tuple[int, int, int], query: int | None = None) -> torch.Tensor:
    """Rollout as a map over the input tokens. rollout: [B, N, N] -> [B, T', H', W']: the row of token `query`,
    or (None) the mean over all output tokens, i.e. how much each input token feeds the whole output."""
    rows = rollout.mean(dim=1) if query is None else rollout[:, query]
    return rows.reshape(rollout.shape[0], *grid)


def token_coordinates(grid: tuple[int, int, int]) -> torch.Tensor:
    """(t, h, w) of every token in (t, h, w) row-major order: [N, 3] float64."""
    t, h, w = grid
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3).double()


@dataclass
class AttentionDistance:
    """Mean attention distance per layer and head (attention-weighted, averaged over queries and clips)."""

    spatial: np.ndarray  # [L, heads] Euclidean distance in patches within the frame grid
    temporal: np.ndarray  # [L, heads] distance in time slots


def attention_distance(attentions: Sequence[torch.Tensor], grid: tuple[int, int, int]) -> AttentionDistance:
    """For each layer and head: sum_j a_ij d(i, j), averaged over queries i and clips, with d the spatial
    distance sqrt(dh^2 + dw^2) (patches) or the temporal distance |dt| (time slots) between tokens.
    attentions: per layer [B, heads, N, N] over all N = T'H'W' tokens of `grid`."""
    xyz = token_coordinates(grid)
    n = xyz.shape[0]
    spatial_d = torch.cdist(xyz[:, 1:], xyz[:, 1:])  # [N, N]
    temporal_d = (xyz[:, None, 0] - xyz[None, :, 0]).abs()  # [N, N]
    spatial, temporal = [], []
    for a in attentions:
        if a.shape[-1] != n:
            raise ValueError(f"attention over {a.shape[-1]} tokens does not match the grid {grid} ({n} tokens)")
        a = a.double()
        spatial.append((a * spatial_d).sum(dim=-1).mean(dim=(0, 2)))  # [heads]
        temporal.append((a * temporal_d).sum(dim=-1).mean(dim=(0, 2)))
    return AttentionDistance(spatial=torch.stack(spatial).numpy(), temporal=torch.stack(temporal).numpy())


# ================================================================================ 5. curves of a run
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: out[i] = mean(values[max(0, i - window + 1) : i + 1]). Same length; window 1
    returns the values unchanged."""
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    x = np.asarray(values, dtype=np.float64)
    if window == 1 or x.size == 0:
        return x.copy()
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, x.size + 1)
    start = np.maximum(0, i - window)
    return (c[i] - c[start]) / (i - start)


PROBE_PREFIX = "probe_"


@dataclass
class Curves:
    """The per-step curves of one run (metrics.json). Value i of every curve was recorded by optimizer step
    `step[i]` = i + 1, so an epoch record's "step" (steps done when it ran) lines up on the same axis."""

    step: np.ndarray  # [S] int64 optimizer steps 1..S
    loss: np.ndarray  # [S] total loss per step
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # loss part name -> [S]
    lr: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [S] base learning rate ([0] when not recorded)
    probes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (steps [E], top-1 % [E])
    steps_per_epoch: int | None = None  # optimizer steps per epoch

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> "Curves":
        """From a run's metrics dict: "loss_curve", "parts_curve", "lr_curve", "steps_per_epoch" and the
        "probe_<name>" entries of "epoch_metrics" records (records without one are skipped for that name)."""
        if "loss_curve" not in metrics:
            raise KeyError(f"metrics have no 'loss_curve' (keys: {sorted(metrics)})")
        loss = np.asarray(metrics["loss_curve"], dtype=np.float64)
        s = loss.size
        parts = {k: np.asarray(v, dtype=np.float64) for k, v in (metrics.get("parts_curve") or {}).items()}
        lr = np.asarray(metrics.get("lr_curve") or [], dtype=np.float64)
        for name, arr in parts.items():
            if arr.size != s:
                raise ValueError(f"parts_curve[{name!r}] has {arr.size} values but loss_curve has {s}")
        if lr.size not in (0, s):
            raise ValueError(f"lr_curve has {lr.size} values but loss_curve has {s}")
        probes: dict[str, tuple[list[int], list[float]]] = {}
        for rec in metrics.get("epoch_metrics") or []:
            for key, value in rec.items():
                if key.startswith(PROBE_PREFIX) and isinstance(value, (int, float)):
                    steps, values = probes.setdefault(key[len(PROBE_PREFIX):], ([], []))
                    steps.append(int(rec["step"]))
                    values.append(float(value))
        spe = metrics.get("steps_per_epoch")
        return cls(step=np.arange(1, s + 1, dtype=np.int64), loss=loss, parts=parts, lr=lr,
                   probes={k: (np.asarray(a, dtype=np.int64), np.asarray(b)) for k, (a, b) in probes.items()},
                   steps_per_epoch=None if spe is None else int(spe))

    def smoothed(self, window: int) -> "Curves":
        """The same curves with loss and parts smoothed by `smooth(., window)` (lr and probes unchanged)."""
        return Curves(step=self.step.copy(), loss=smooth(self.loss, window),
                      parts={k: smooth(v, window) for k, v in self.parts.items()}, lr=self.lr.copy(),
                      probes=dict(self.probes), steps_per_epoch=self.steps_per_epoch)

    @property
    def epoch(self) -> np.ndarray:
        """[S] float epochs done at each step (needs steps_per_epoch)."""
        if not self.steps_per_epoch:
            raise ValueError("these curves have no steps_per_epoch")
        return self.step / self.steps_per_epoch


# ================================================================================ 6. budgets of one recipe
def shorter_budgets(epochs: int, warmup_epochs: int, fractions: Sequence[float] = (0.25,)) -> list[dict[str, int]]:
    """Run overrides for shorter budgets of one training recipe, to show a model at several points of learning
    with finished (train-or-load) runs: one {"optim.warmup_epochs": w, "optim.epochs": e} per fraction f in
    (0, 1], with e = max(1, floor(f * epochs)) and w = floor(warmup_epochs * e / epochs), so the warmup keeps its
    share of the budget and the cosine still ends at the recipe's min lr. Each is a complete run of its own
    budget, not a snapshot of the full run. Budgets equal to the full one or to another are dropped; the list
    is in ascending order of epochs."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"budget fractions must lie in (0, 1], got {bad}")
    budgets = sorted({max(1, int(f * epochs)) for f in fractions} - {epochs})
    return [{"optim.warmup_epochs": warmup_epochs * e // epochs, "optim.epochs": e} for e in budgets]


# ================================================================================ 7. probe results as rows
def probe_rows(probes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The results of probe runs as table rows, one per (encoder, protocol, task, pooling), in the order given.

    probes: {encoder name: a finished probe `Run` or its metrics dict}. Row: {"encoder", "protocol", "task",
    "pooling" ("mean", "time"; "tokens" for the attentive probe), "top1" and "chance" (percent), "num_test",
    "run" (the probe run's hash; "" for a metrics dict)}."""
    rows = []
    for name, probe in probes.items():
        metrics = probe if isinstance(probe, Mapping) else probe.metrics
        if "probe" not in metrics:
            raise KeyError(f"{name}: no probe results (keys {sorted(metrics)}); give a finished probe run")
        digest = "" if isinstance(probe, Mapping) else probe.hash
        for protocol, by_task in metrics["probe"].items():
            for task, by_pooling in by_task.items():
                for pooling, result in by_pooling.items():
                    rows.append({"encoder": name, "protocol": protocol, "task": task, "pooling": pooling,
                                 "top1": float(result["top1"]), "chance": float(result["chance"]),
                                 "num_test": int(result["num_test"]), "run": digest})
    return rows
# ================================================================================ 8. views for the notebooks
def similarity_by_lag(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean similarity at each time lag of a T' x T' matrix (a `FrameSimilarity.raw` or `.centred`):
    out[k - 1] = mean of the k-th upper and lower off-diagonals, k = 1 .. T'-1 -> [T'-1] float64.
    A matrix that depends only on |t - s| (Toeplitz) gives back its values at lags 1, 2, ...; features that
    do not change across frames give ones; features that follow the motion fall with the lag."""
    m = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"need a square T' x T' matrix with T' >= 2, got shape {m.shape}")
    t = m.shape[0]
    return np.array([np.concatenate([np.diagonal(m, k), np.diagonal(m, -k)]).mean() for k in range(1, t)])


def distill_teachers(run: Any, trust_checkpoints: bool = False) -> dict[str, FrozenTeacher]:
    """The frozen teachers a distill run regressed, rebuilt as the run built them (runtypes.load_teacher):
    {"img": ImageTeacher, "vid": VideoTeacher} for the branches it has, so that
    `distill.teacher_targets(distill_teachers(run), video)` gives the targets its objective saw.

    Teacher runs are found by their fingerprint in the runs folder holding `run` (or artifacts/); the random
    teachers of the random-teacher control are rebuilt from their seeds; "file:" teachers are loaded from their
    checkpoint (`trust_checkpoints` as on the command line). An EMA student has no fixed teacher: {}.
    Raises ValueError for a run that is not a distill run, FileNotFoundError naming a teacher run not found."""
    from pathlib import Path

    from mvd_lib.profiles import parse_ref
    from mvd_lib.runs import ARTIFACTS, Run, find_run
    from mvd_lib.runtypes import Dependency, load_teacher

    if getattr(run, "verb", None) != "distill":
        raise ValueError(f"distill_teachers needs a distill run, got a {getattr(run, 'verb', type(run).__name__)} run")
    cfg = run.config
    out: dict[str, FrozenTeacher] = {}
    for branch, name in (("img", "image_teacher"), ("vid", "video_teacher")):
        ref = parse_ref(getattr(cfg, name))
        if ref.kind == "none":
            continue
        fingerprint = run.dependencies.get(name, ref.kind)
        if ref.kind in ("run", "hash"):
            _, verb, digest = fingerprint.split(":")
            roots = [Path(run.folder).parent.parent, Path(ARTIFACTS)]
            folder = find_run(verb, digest, roots)
            if folder is None:
                raise FileNotFoundError(f"{name} of {run.folder}: no {verb} run with hash {digest} under "
                                        f"{' or '.join(str(r) for r in roots)}")
            dep = Dependency("run", fingerprint, run=Run.load(folder))
        elif ref.kind == "file":
            dep = Dependency("file", fingerprint, path=Path(ref.path).expanduser())
        else:
            dep = Dependency(ref.kind, ref.kind)
        teacher = load_teacher(branch, dep, cfg, trust=trust_checkpoints)
        if teacher is not None:
            out[branch] = teacher
    return out
