"""Optimizer groups and schedules against the reference recipe (mvd_reference.md sections 5-6, `optim_factory.py`,
`utils.cosine_scheduler`), with every expected number written out or computed here from the definitions:

- weight decay: NOT decayed iff the parameter is 1-D, its name ends in ".bias", or its name is EXACTLY in
  `no_weight_decay()`; parameters that do not require grad are left out. Quirk: the MVD student's set says
  "mask_token", its parameters are `mask_token_img`/`mask_token_vid` ([1, 1, D]), so they ARE decayed;
- layer-wise lr decay (LayerDecayValueAssigner with values d^(L+1-i), i = 0..L+1): patch embedding / cls_token
  -> layer 0 -> d^(L+1); block k -> layer k+1 -> d^(L-k); everything else (fc_norm, head) -> d^0 = 1;
- cosine schedule: np.linspace(0, base, W) warmup (step i < W gives base * i / (W - 1)), then
  final + 0.5 (base - final)(1 + cos(pi j / M)) for j = 0..M-1, M = total - W;
- linear scaling: lr = base * total_batch / 256.
"""
from __future__ import annotations

import math

import pytest
import torch

import mvd_lib  # noqa: F401
from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import DecoderConfig, ViTConfig, vit_config
from mvd_lib.mae import ImageViT
from mvd_lib.optim import adamw, apply_schedule, cosine_schedule, param_groups, scaled_lr
from mvd_lib.student import MVDStudent

WD = 0.05


def tiny(depth: int) -> ViTConfig:
    return ViTConfig(width=32, depth=depth, heads=2, num_frames=4, img_size=8, patch_size=4, tubelet_size=2)


def by_name(groups: list[dict]) -> dict[str, dict]:
    """name -> its group; also checks that every param object is listed under its own name exactly once."""
    out: dict[str, dict] = {}
    for g in groups:
        assert len(g["names"]) == len(g["params"])
        for name in g["names"]:
            assert name not in out, f"{name} in two groups"
            out[name] = g
    return out


def block_names(prefix: str) -> tuple[set[str], set[str]]:
    """(decayed, not decayed) parameter names of one q_bias/v_bias block, written out by hand."""
    decay = {f"{prefix}attn.qkv.weight", f"{prefix}attn.proj.weight", f"{prefix}mlp.fc1.weight", f"{prefix}mlp.fc2.weight"}
    no_decay = {f"{prefix}{n}" for n in (
        "norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias")}
    return decay, no_decay


# ----------------------------------------------------------------------------------------------- weight decay
def test_classifier_weight_decay_groups():
    """Finetune model: weights of Linear/Conv layers decayed; biases, q_bias/v_bias, LayerNorms not."""
    model = VideoClassifier(tiny(2), num_classes=7, seed=0)
    decay = {"patch_embed.proj.weight", "head.weight"}
    no_decay = {"patch_embed.proj.bias", "fc_norm.weight", "fc_norm.bias", "head.bias"}
    for i in range(2):
        d, nd = block_names(f"blocks.{i}.")
        decay |= d
        no_decay |= nd
    groups = param_groups(model, WD)
    names = by_name(groups)
    assert set(names) == decay | no_decay  # no pos_embed (fixed), nothing else
    for n in decay:
        assert names[n]["weight_decay"] == WD, n
    for n in no_decay:
        assert names[n]["weight_decay"] == 0.0, n
    params = dict(model.named_parameters())
    for g in groups:
        for n, p in zip(g["names"], g["params"]):
            assert p is params[n]


def test_student_mask_tokens_are_decayed_by_default():
    """Reference quirk: `mask_token` in no_weight_decay() does not match `mask_token_img`/`mask_token_vid`."""
    model = MVDStudent(tiny(1), DecoderConfig(width=16, depth=1, heads=2), {"img": 8, "vid": 8}, seed=0)
    names = by_name(param_groups(model, WD))
    assert names["mask_token_img"]["weight_decay"] == WD
    assert names["mask_token_vid"]["weight_decay"] == WD
    assert names["down_img.weight"]["weight_decay"] == WD and names["down_img.bias"]["weight_decay"] == 0.0
    assert names["decoder_vid.head.weight"]["weight_decay"] == WD
    assert names["decoder_vid.blocks.0.attn.q_bias"]["weight_decay"] == 0.0
    # fixed tables are not trainable, so they are in no group
    assert not {"pos_embed", "pos_embed_img", "pos_embed_vid"} & set(names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(names) == trainable


def test_student_mask_tokens_exempt_on_request():
    model = MVDStudent(tiny(1), DecoderConfig(width=16, depth=1, heads=2), {"img": 8, "vid": 8}, seed=0)
    names = by_name(param_groups(model, WD, decay_mask_tokens=False))
    assert names["mask_token_img"]["weight_decay"] == 0.0
    assert names["mask_token_vid"]["weight_decay"] == 0.0
    assert names["down_img.weight"]["weight_decay"] == WD  # nothing else changes
    assert names["blocks.0.attn.qkv.weight"]["weight_decay"] == WD


def test_videomae_pretrain_mask_token_exempt_by_exact_name():
    """VideoMAE's set {pos_embed, cls_token, mask_token} matches its parameter `mask_token` ([1, 1, D_dec]) exactly,
    so unlike the MVD student's mask tokens it is NOT decayed; `encoder_to_decoder.weight` is."""
    from mvd_lib.videomae import VideoMAEPretrain

    model = VideoMAEPretrain(tiny(1), DecoderConfig(width=16, depth=1, heads=2), seed=0)
    names = by_name(param_groups(model, WD))
    assert names["mask_token"]["weight_decay"] == 0.0
    assert names["encoder_to_decoder.weight"]["weight_decay"] == WD
    assert names["encoder.blocks.0.attn.qkv.weight"]["weight_decay"] == WD
    assert names["encoder.blocks.0.attn.q_bias"]["weight_decay"] == 0.0


def test_cls_token_exempt_by_exact_name():
    """MAE ImageViT: `cls_token` is [1, 1, D] (not 1-D) and exempt only because its name is in the skip set."""
    cfg = tiny(1)
    names = by_name(param_groups(ImageViT(cfg, seed=0), WD))
    assert names["cls_token"]["weight_decay"] == 0.0
    assert names["blocks.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert names["blocks.0.attn.qkv.weight"]["weight_decay"] == WD


def test_skip_list_matches_names_exactly():
    """An explicit skip list exempts exactly the names it holds; a prefix of a name does not count."""
    model = VideoClassifier(tiny(2), num_classes=3, seed=0)
    names = by_name(param_groups(model, WD, skip_list={"head.weight", "blocks.0.attn", "qkv.weight"}))
    assert names["head.weight"]["weight_decay"] == 0.0
    assert names["blocks.0.attn.qkv.weight"]["weight_decay"] == WD
    assert names["blocks.1.attn.qkv.weight"]["weight_decay"] == WD
    assert names["patch_embed.proj.weight"]["weight_decay"] == WD


def test_frozen_parameters_are_left_out():
    model = VideoClassifier(tiny(2), num_classes=3, seed=0)
    model.patch_embed.requires_grad_(False)
    model.blocks[0].attn.requires_grad_(False)
    names = by_name(param_groups(model, WD))
    assert not [n for n in names if n.startswith("patch_embed.") or n.startswith("blocks.0.attn.")]
    assert "blocks.0.mlp.fc1.weight" in names and "blocks.1.attn.q_bias" in names


# ----------------------------------------------------------------------------------------------- layer decay
def expected_scale(name: str, depth: int, d: float) -> float:
    """Hand rule: patch embedding / cls_token d^(depth+1); block k d^(depth-k); anything else 1."""
    if name.startswith("patch_embed") or name in ("cls_token", "pos_embed", "mask_token"):
        return d ** (depth + 1)
    if name.startswith("blocks."):
        return d ** (depth - int(name.split(".")[1]))
    return 1.0


def test_layer_decay_depth_2_numbers():
    """depth 2, decay 0.75: patch_embed 0.421875, blocks.0 0.5625, blocks.1 0.75, fc_norm/head 1.0."""
    model = VideoClassifier(tiny(2), num_classes=3, seed=0)
    names = by_name(param_groups(model, WD, layer_decay=0.75))
    literal = {"patch_embed.proj.weight": 0.421875, "patch_embed.proj.bias": 0.421875,
               "blocks.0.attn.qkv.weight": 0.5625, "blocks.0.norm1.bias": 0.5625,
               "blocks.1.mlp.fc2.weight": 0.75, "blocks.1.attn.v_bias": 0.75,
               "fc_norm.weight": 1.0, "fc_norm.bias": 1.0, "head.weight": 1.0, "head.bias": 1.0}
    for n, s in literal.items():
        assert math.isclose(names[n]["lr_scale"], s, rel_tol=1e-12), (n, names[n]["lr_scale"], s)
    # decay and no-decay stay separate within a layer
    assert names["blocks.0.attn.qkv.weight"]["weight_decay"] == WD
    assert names["blocks.0.norm1.bias"]["weight_decay"] == 0.0
    assert names["blocks.0.attn.qkv.weight"] is not names["blocks.0.norm1.bias"]


@pytest.mark.parametrize("depth,decay", [(4, 0.75), (5, 0.7)])
def test_layer_decay_every_parameter(depth: int, decay: float):
    """Every parameter's lr_scale follows the rule; e.g. depth 4 / 0.75: 0.2373..., 0.3164..., ..., 0.75, 1."""
    model = VideoClassifier(tiny(depth), num_classes=3, seed=0)
    names = by_name(param_groups(model, WD, layer_decay=decay))
    assert set(names) == {n for n, _ in model.named_parameters()}
    for n, g in names.items():
        assert math.isclose(g["lr_scale"], expected_scale(n, depth, decay), rel_tol=1e-12), n
    if (depth, decay) == (4, 0.75):
        assert math.isclose(names["patch_embed.proj.weight"]["lr_scale"], 0.2373046875, rel_tol=1e-12)
        assert math.isclose(names["blocks.0.mlp.fc1.weight"]["lr_scale"], 0.31640625, rel_tol=1e-12)
        assert math.isclose(names["blocks.3.mlp.fc1.weight"]["lr_scale"], 0.75, rel_tol=1e-12)


def test_layer_decay_image_vit_cls_token_is_layer_0():
    names = by_name(param_groups(ImageViT(tiny(3), seed=0), WD, layer_decay=0.5))
    assert math.isclose(names["cls_token"]["lr_scale"], 0.5 ** 4)
    assert math.isclose(names["blocks.2.attn.qkv.bias"]["lr_scale"], 0.5)
    assert math.isclose(names["norm.weight"]["lr_scale"], 1.0)


def test_paper_vit_b_layer_decay_on_meta():
    """ViT-B finetuning (depth 12, decay 0.75): patch embedding 0.75^13, block 0 0.75^12, block 11 0.75."""
    with torch.device("meta"):
        model = VideoClassifier(vit_config("vit_base"), num_classes=400)
    names = by_name(param_groups(model, WD, layer_decay=0.75))
    assert math.isclose(names["patch_embed.proj.weight"]["lr_scale"], 0.75 ** 13)
    assert math.isclose(names["blocks.0.attn.qkv.weight"]["lr_scale"], 0.75 ** 12)
    assert math.isclose(names["blocks.11.attn.qkv.weight"]["lr_scale"], 0.75)
    assert names["head.weight"]["lr_scale"] == 1.0


def test_apply_schedule_multiplies_lr_scale():
    """lr of each group = scheduled lr x its lr_scale; only decayed groups take the scheduled weight decay."""
    model = VideoClassifier(tiny(2), num_classes=3, seed=0)
    groups = param_groups(model, WD, layer_decay=0.75)
    opt = adamw(groups, lr=1.0)
    apply_schedule(opt, 2e-3, weight_decay=0.07)
    for g in opt.param_groups:
        n = g["names"][0]
        assert math.isclose(g["lr"], 2e-3 * expected_scale(n, 2, 0.75), rel_tol=1e-12), n
        assert g["weight_decay"] == (0.0 if n.endswith(".bias") or "norm" in n or n.endswith("_bias") else 0.07), n


# ----------------------------------------------------------------------------------------------- schedules
def cosine_value(i: int, base: float, final: float, total: int, warm: int) -> float:
    """Reference cosine_scheduler at step i (np.linspace warmup from 0, then cosine over total - warm steps)."""
    if i < warm:
        return base * i / (warm - 1)
    m = total - warm
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (i - warm) / m))


def test_cosine_schedule_with_warmup_key_steps():
    """10 epochs x 7 steps, 2 warmup epochs: W = 14, M = 56."""
    base, final = 1e-3, 1e-6
    s = cosine_schedule(base, final, epochs=10, steps_per_epoch=7, warmup_epochs=2)
    assert len(s) == 70
    assert s[0] == 0.0
    assert math.isclose(s[1], base / 13, rel_tol=1e-12)  # linspace(0, base, 14): step base/13
    assert math.isclose(s[13], base, rel_tol=1e-12)  # last warmup step reaches base
    assert math.isclose(s[14], base, rel_tol=1e-12)  # first cosine step: cos(0) = 1
    assert math.isclose(s[42], (base + final) / 2, rel_tol=1e-12)  # j = 28 = M/2
    assert math.isclose(s[69], final + 0.5 * (base - final) * (1 + math.cos(math.pi * 55 / 56)), rel_tol=1e-12)
    assert s[69] > final  # the last value is one step short of final, as in the reference
    for i in range(70):
        assert math.isclose(s[i], cosine_value(i, base, final, 70, 14), rel_tol=1e-12, abs_tol=1e-18), i


def test_cosine_schedule_without_warmup():
    s = cosine_schedule(0.05, 0.05, epochs=3, steps_per_epoch=4)  # constant weight decay schedule
    assert len(s) == 12 and all(math.isclose(v, 0.05) for v in s)
    s = cosine_schedule(2.0, 0.0, epochs=2, steps_per_epoch=5)
    assert s[0] == 2.0 and math.isclose(s[5], 1.0) and math.isclose(s[9], 1 + math.cos(math.pi * 9 / 10))


def test_cosine_schedule_warmup_steps_override():
    """warmup_steps > 0 replaces warmup_epochs * steps_per_epoch."""
    s = cosine_schedule(1.0, 0.0, epochs=4, steps_per_epoch=5, warmup_epochs=1, warmup_steps=3)
    assert len(s) == 20
    assert s[0] == 0.0 and math.isclose(s[1], 0.5) and math.isclose(s[2], 1.0) and math.isclose(s[3], 1.0)
    assert math.isclose(s[19], 0.5 * (1 + math.cos(math.pi * 16 / 17)))


def test_pretraining_recipe_schedule():
    """MVD pretraining: base 1.5e-4 x 1024 / 256 = 6e-4, 400 epochs with 40 warmup (here 3 steps per epoch)."""
    lr = scaled_lr(1.5e-4, 1024)
    assert math.isclose(lr, 6e-4, rel_tol=1e-12)
    s = cosine_schedule(lr, 1e-5, epochs=400, steps_per_epoch=3, warmup_epochs=40)
    assert len(s) == 1200
    assert s[0] == 0.0 and math.isclose(s[119], 6e-4) and math.isclose(s[120], 6e-4)
    assert math.isclose(s[60], 6e-4 * 60 / 119, rel_tol=1e-12)
    assert math.isclose(s[120 + 540], (6e-4 + 1e-5) / 2, rel_tol=1e-12)
    assert math.isclose(s[1199], 1e-5 + 0.5 * (6e-4 - 1e-5) * (1 + math.cos(math.pi * 1079 / 1080)), rel_tol=1e-12)


@pytest.mark.parametrize("base,batch,expected", [(1.5e-4, 1024, 6e-4), (1.5e-4, 512, 3e-4), (5e-4, 64, 1.25e-4),
                                                 (1e-3, 256, 1e-3)])
def test_scaled_lr(base: float, batch: int, expected: float):
    assert math.isclose(scaled_lr(base, batch), expected, rel_tol=1e-12)
