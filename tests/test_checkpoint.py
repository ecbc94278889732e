"""Checkpoint loading and saving in the reference key layouts (mvd_reference.md sections 3-4).

The files loaded here are BUILT IN THIS TEST from the documented key names and shapes (helpers `ref_*` below),
never from an mvd_lib model's own state_dict(), so a model whose names or shapes drift from the reference
cannot pass. Checked: every file key is loaded or dropped for a reason, every model key is loaded, rebuilt or
allowed missing, the loaded tensors equal the file's, mismatches raise naming the keys and shapes, pickled
`args` need `trust_pickle`, our own saved files round-trip and carry exactly the reference layout.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

import mvd_lib  # noqa: F401
from mvd_lib.checkpoint import (CheckpointMismatchError, LoadReport, UntrustedCheckpointError, load_checkpoint,
                                read_checkpoint, save_checkpoint)
from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import DecoderConfig, ViTConfig
from mvd_lib.mae import ImageViT
from mvd_lib.masking import tube_mask
from mvd_lib.student import MVDStudent
from mvd_lib.videomae import VideoMAEPretrain, videomae_encoder

# A tiny geometry: 4 frames of 8x8, 2x4x4 tubelets -> a 2x2x2 grid, N = 8 tokens; width 32, 2 blocks.
D, DEPTH, HEADS, P, TUB, FRAMES, IMG = 32, 2, 2, 4, 2, 4, 8
GRID = (FRAMES // TUB, IMG // P, IMG // P)
N = GRID[0] * GRID[1] * GRID[2]
CFG = ViTConfig(width=D, depth=DEPTH, heads=HEADS, num_frames=FRAMES, img_size=IMG, patch_size=P, tubelet_size=TUB)
DD, DEC_DEPTH, DEC_HEADS = 16, 1, 2  # decoder width (different from D so that shapes tell the parts apart)
DEC = DecoderConfig(width=DD, depth=DEC_DEPTH, heads=DEC_HEADS)
OUT = {"img": 24, "vid": 40}  # teacher widths (different, so decoder heads are told apart)
NUM_CLASSES = 5


# ----------------------------------------------------------------------------------------------- reference layouts
def sincos_1d(d: int, p: float) -> list[float]:
    w = [1.0 / 10000 ** (i / (d / 2)) for i in range(d // 2)]
    return [math.sin(p * x) for x in w] + [math.cos(p * x) for x in w]


def table_3d(d: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """MVD 3-D sin-cos table [1, N, d] from the formula (first d/4 channels t; then column half, row half)."""
    gt, gh, gw = grid
    d_t, d_s = d // 4, d - d // 4
    rows = []
    for t in range(gt):
        for r in range(gh):
            for c in range(gw):
                rows.append(sincos_1d(d_t, t) + sincos_1d(d_s // 2, c) + sincos_1d(d_s // 2, r))
    return torch.tensor(rows, dtype=torch.float32)[None]


def table_2d_cls(d: int, g: int) -> torch.Tensor:
    """MAE 2-D table with the zero cls row, [1, 1 + g*g, d]."""
    rows = [[0.0] * d] + [sincos_1d(d // 2, c) + sincos_1d(d // 2, r) for r in range(g) for c in range(g)]
    return torch.tensor(rows, dtype=torch.float32)[None]


def block_shapes(prefix: str, dim: int, bias: str = "qv") -> dict[str, tuple[int, ...]]:
    """One transformer block in the reference naming: q_bias/v_bias (VideoMAE/MVD) or fused qkv.bias (MAE)."""
    s = {
        f"{prefix}norm1.weight": (dim,), f"{prefix}norm1.bias": (dim,),
        f"{prefix}attn.qkv.weight": (3 * dim, dim),
    }
    if bias == "qv":
        s[f"{prefix}attn.q_bias"] = (dim,)
        s[f"{prefix}attn.v_bias"] = (dim,)
    else:
        s[f"{prefix}attn.qkv.bias"] = (3 * dim,)
    s.update({
        f"{prefix}attn.proj.weight": (dim, dim), f"{prefix}attn.proj.bias": (dim,),
        f"{prefix}norm2.weight": (dim,), f"{prefix}norm2.bias": (dim,),
        f"{prefix}mlp.fc1.weight": (4 * dim, dim), f"{prefix}mlp.fc1.bias": (4 * dim,),
        f"{prefix}mlp.fc2.weight": (dim, 4 * dim), f"{prefix}mlp.fc2.bias": (dim,),
    })
    return s


def video_encoder_shapes(prefix: str = "", final_norm: bool = True, dim: int = D, depth: int = DEPTH,
                         patch: int = P) -> dict[str, tuple[int, ...]]:
    """Tubelet embedding (Conv3d [D, 3, 2, p, p]), blocks (q_bias/v_bias), final `norm`."""
    s = {f"{prefix}patch_embed.proj.weight": (dim, 3, TUB, patch, patch), f"{prefix}patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        s.update(block_shapes(f"{prefix}blocks.{i}.", dim))
    if final_norm:
        s.update({f"{prefix}norm.weight": (dim,), f"{prefix}norm.bias": (dim,)})
    return s


def decoder_shapes(prefix: str, dim: int, depth: int, out: int) -> dict[str, tuple[int, ...]]:
    s = {}
    for j in range(depth):
        s.update(block_shapes(f"{prefix}blocks.{j}.", dim))
    s.update({f"{prefix}norm.weight": (dim,), f"{prefix}norm.bias": (dim,),
              f"{prefix}head.weight": (out, dim), f"{prefix}head.bias": (out,)})
    return s


def mvd_pretrain_shapes(dim: int = D, depth: int = DEPTH, patch: int = P, n: int = N, dec_dim: int = DD,
                        dec_depth: int = DEC_DEPTH, out: dict[str, int] = OUT) -> dict[str, tuple[int, ...]]:
    """MVD student (section 3): encoder + pos_embed + per branch mask_token/down/pos_embed/decoder."""
    s = {"pos_embed": (1, n, dim), **video_encoder_shapes(dim=dim, depth=depth, patch=patch)}
    for x in ("img", "vid"):
        s[f"mask_token_{x}"] = (1, 1, dec_dim)
        s[f"down_{x}.weight"] = (dec_dim, dim)
        s[f"down_{x}.bias"] = (dec_dim,)
        s[f"pos_embed_{x}"] = (1, n, dec_dim)
        s.update(decoder_shapes(f"decoder_{x}.", dec_dim, dec_depth, out[x]))
    return s


def videomae_pretrain_shapes() -> dict[str, tuple[int, ...]]:
    """VideoMAE pretrain (section 4): `encoder.*`, `encoder_to_decoder.weight` (no bias), `mask_token`, `decoder.*`."""
    s = video_encoder_shapes("encoder.")
    s["encoder_to_decoder.weight"] = (DD, D)
    s["mask_token"] = (1, 1, DD)
    s.update(decoder_shapes("decoder.", DD, DEC_DEPTH, TUB * P * P * 3))
    return s


def finetuned_shapes(dim: int = D, depth: int = DEPTH, patch: int = P,
                     classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """Finetuned VideoMAE/MVD model: encoder without `norm`, plus `fc_norm` and `head`; no pos_embed."""
    s = video_encoder_shapes(final_norm=False, dim=dim, depth=depth, patch=patch)
    s.update({"fc_norm.weight": (dim,), "fc_norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)})
    return s


MAE_G = IMG // P  # 2x2 patches


def mae_shapes(with_decoder: bool = False) -> dict[str, tuple[int, ...]]:
    """MAE ViT (section 4): cls_token, pos_embed [1, 1+L, D], Conv2d patch_embed, fused qkv bias, norm."""
    s = {"cls_token": (1, 1, D), "pos_embed": (1, 1 + MAE_G ** 2, D),
         "patch_embed.proj.weight": (D, 3, P, P), "patch_embed.proj.bias": (D,)}
    for i in range(DEPTH):
        s.update(block_shapes(f"blocks.{i}.", D, bias="fused"))
    s.update({"norm.weight": (D,), "norm.bias": (D,)})
    if with_decoder:
        s.update({"mask_token": (1, 1, DD), "decoder_embed.weight": (DD, D), "decoder_embed.bias": (DD,),
                  "decoder_pos_embed": (1, 1 + MAE_G ** 2, DD)})
        for j in range(DEC_DEPTH):
            s.update(block_shapes(f"decoder_blocks.{j}.", DD, bias="fused"))
        s.update({"decoder_norm.weight": (DD,), "decoder_norm.bias": (DD,),
                  "decoder_pred.weight": (P * P * 3, DD), "decoder_pred.bias": (P * P * 3,)})
    return s


def fill(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors for every key; fixed tables get their correct values (as the reference stores them)."""
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in shapes.items()}
    for k in out:
        if k in ("pos_embed", "pos_embed_img", "pos_embed_vid") and len(shapes[k]) == 3 and shapes[k][1] == N:
            out[k] = table_3d(shapes[k][2], GRID)
        elif k == "pos_embed" and shapes[k][1] == 1 + MAE_G ** 2:
            out[k] = table_2d_cls(D, MAE_G)
        elif k == "decoder_pos_embed":
            out[k] = table_2d_cls(DD, MAE_G)
    return out


def mvd_pretrain_file(seed: int = 0) -> dict:
    return {"model": fill(mvd_pretrain_shapes(), seed), "optimizer": {}, "epoch": 399, "scaler": {},
            "args": {"model": "pretrain_masked_video_student_base_patch16_224"}}


def clip(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, FRAMES, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def assert_loaded_equal(model: torch.nn.Module, file_state: dict[str, torch.Tensor], keys) -> None:
    """Weights must equal the file's bit for bit; fixed tables (recomputed, not loaded) to float32 rounding."""
    ours = model.state_dict()
    for k in keys:
        if "pos_embed" in k:
            torch.testing.assert_close(ours[k], file_state[k], atol=1e-6, rtol=0, msg=k)
        else:
            assert torch.equal(ours[k], file_state[k]), k


# ----------------------------------------------------------------------------------------------- (a) MVD pretrain
def test_mvd_pretrain_file_loads_into_student():
    """Every key of an MVD pretrain file loads into MVDStudent: no drops, no missing, tables rebuilt and equal."""
    ckpt = mvd_pretrain_file()
    state = ckpt["model"]
    model = MVDStudent(CFG, DEC, OUT, seed=7)
    report = load_checkpoint(model, ckpt)
    assert isinstance(report, LoadReport)
    tables = {"pos_embed", "pos_embed_img", "pos_embed_vid"}
    assert set(report.loaded) == set(state) - tables
    assert report.dropped == {} and report.missing_allowed == {}
    assert set(report.rebuilt) == tables
    for k in tables:
        assert "differ" not in report.rebuilt[k].lower(), report.rebuilt[k]
    assert_loaded_equal(model, state, set(state))  # tables: ours equal the reference's values
    assert set(model.state_dict()) == set(state)


def test_mvd_pretrain_file_loads_into_classifier():
    """MVD pretrain -> finetune model: decoders, down_X, mask tokens and the final `norm` are dropped with a
    reason; `fc_norm`/`head` stay at initialisation; the encoder weights equal the file's."""
    state = mvd_pretrain_file()["model"]
    model = VideoClassifier(CFG, NUM_CLASSES, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_checkpoint(model, {"model": state})
    encoder_keys = set(video_encoder_shapes(final_norm=False))
    assert set(report.loaded) == encoder_keys
    assert_loaded_equal(model, state, encoder_keys)
    dropped_expected = {k for k in state if k.startswith(("decoder_", "down_", "mask_token_"))} | {"norm.weight", "norm.bias"}
    assert set(report.dropped) == dropped_expected
    assert all(reason.strip() for reason in report.dropped.values())
    assert report.dropped["norm.weight"] != report.dropped["decoder_img.head.weight"]  # each has its own reason
    assert set(report.missing_allowed) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    for k in report.missing_allowed:
        assert torch.equal(model.state_dict()[k], before[k]), k
    # ... and that initialisation is the documented one (section 6): a fresh LayerNorm, head scaled by 0.001
    sd = model.state_dict()
    assert torch.equal(sd["fc_norm.weight"], torch.ones(D)) and torch.equal(sd["fc_norm.bias"], torch.zeros(D))
    assert torch.equal(sd["head.bias"], torch.zeros(NUM_CLASSES))
    assert 0.5 * 0.02e-3 < sd["head.weight"].std().item() < 1.5 * 0.02e-3  # trunc-normal std 0.02, times 0.001
    assert "pos_embed" in report.rebuilt
    # the loaded encoder really changed the model (different from its seed-3 init) and still runs
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], model.state_dict()["blocks.0.attn.qkv.weight"])
    assert model(clip()).shape == (2, NUM_CLASSES)


# ----------------------------------------------------------------------------------------------- (b) VideoMAE pretrain
def test_videomae_pretrain_file_loads_into_teacher_encoder():
    """VideoMAE pretrain -> video teacher encoder: `encoder.` stripped, decoder/encoder_to_decoder/mask_token dropped."""
    state = fill(videomae_pretrain_shapes(), seed=1)
    enc = videomae_encoder(CFG, seed=5)
    report = load_checkpoint(enc, {"model": state, "epoch": 1600})
    enc_keys = {k for k in state if k.startswith("encoder.")}
    assert set(report.loaded) == {k[len("encoder."):] for k in enc_keys}
    assert "encoder." in report.stripped_prefixes
    assert set(report.dropped) == set(state) - enc_keys
    assert report.missing_allowed == {}
    ours = enc.state_dict()
    for k in enc_keys:
        assert torch.equal(ours[k[len("encoder."):]], state[k]), k
    assert set(ours) == {k[len("encoder."):] for k in enc_keys}


def test_videomae_pretrain_file_loads_into_videomae_pretrain():
    """VideoMAE pretrain -> VideoMAEPretrain: every key loaded under its own name, nothing dropped."""
    state = fill(videomae_pretrain_shapes(), seed=2)
    model = VideoMAEPretrain(CFG, DEC, seed=4)
    report = load_checkpoint(model, {"model": state})
    assert set(report.loaded) == set(state)
    assert report.dropped == {} and report.missing_allowed == {}
    assert_loaded_equal(model, state, set(state))
    assert set(model.state_dict()) == set(state)


def test_videomae_pretrain_file_loads_into_classifier():
    """VideoMAE pretrain -> finetune model (the VideoMAE finetuning path): `encoder.` stripped, its final `norm`
    and the pixel decoder dropped, fc_norm/head left at initialisation."""
    state = fill(videomae_pretrain_shapes(), seed=13)
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    report = load_checkpoint(model, {"model": state})
    enc = set(video_encoder_shapes(final_norm=False))
    assert set(report.loaded) == enc
    assert {"norm.weight", "norm.bias", "encoder_to_decoder.weight", "mask_token"} <= set(report.dropped)
    assert set(report.missing_allowed) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    ours = model.state_dict()
    for k in enc:
        assert torch.equal(ours[k], state["encoder." + k]), k


# ----------------------------------------------------------------------------------------------- (c) finetuned
def test_finetuned_file_under_module_loads_into_classifier():
    """DeepSpeed finetuned file: weights under `module`, no prefix, `fc_norm` + `head`, no `norm`: all loaded."""
    state = fill(finetuned_shapes(), seed=3)
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    report = load_checkpoint(model, {"module": state, "epoch": 74})
    assert set(report.loaded) == set(state)
    assert report.dropped == {} and report.missing_allowed == {}
    assert_loaded_equal(model, state, set(state))
    assert set(model.state_dict()) == set(state)


def test_finetuned_file_with_module_and_backbone_prefixes():
    """`module.` and `backbone.` prefixes are stripped (and reported)."""
    state = fill(finetuned_shapes(), seed=4)
    prefixed = {("module." if i % 2 else "backbone.") + k: v for i, (k, v) in enumerate(state.items())}
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    report = load_checkpoint(model, {"model": prefixed})
    assert set(report.loaded) == set(state)
    assert {"module.", "backbone."} <= set(report.stripped_prefixes)
    assert_loaded_equal(model, state, set(state))


# ----------------------------------------------------------------------------------------------- (d) MAE
MAE_CFG = ViTConfig(width=D, depth=DEPTH, heads=HEADS, num_frames=FRAMES, img_size=IMG, patch_size=P, tubelet_size=TUB)


@pytest.mark.parametrize("prefix", ["", "module.", "backbone."])
def test_mae_file_loads_into_image_vit(prefix: str):
    """MAE file (cls_token, pos_embed [1, 1+L, D], Conv2d patch_embed, fused qkv.bias, norm) -> ImageViT."""
    state = fill(mae_shapes(), seed=5)
    model = ImageViT(MAE_CFG, seed=1)
    report = load_checkpoint(model, {"model": {prefix + k: v for k, v in state.items()}})
    assert set(report.loaded) == set(state) - {"pos_embed"}
    assert set(report.rebuilt) == {"pos_embed"} and "differ" not in report.rebuilt["pos_embed"].lower()
    if prefix:
        assert report.stripped_prefixes == [prefix]
    assert_loaded_equal(model, state, set(state))
    assert set(model.state_dict()) == set(state)


def test_mae_pretrain_file_with_decoder_loads_into_image_vit():
    """An MAE pretrain file's decoder (mask_token, decoder_embed, decoder_blocks, ...) is dropped for the teacher."""
    state = fill(mae_shapes(with_decoder=True), seed=6)
    model = ImageViT(MAE_CFG, seed=1)
    report = load_checkpoint(model, {"model": state})
    encoder = set(mae_shapes())
    assert set(report.loaded) == encoder - {"pos_embed"}
    decoder = set(state) - encoder
    assert set(report.dropped) | set(report.rebuilt) == decoder | {"pos_embed"}
    assert "decoder_pos_embed" not in report.loaded
    assert_loaded_equal(model, state, encoder)


def test_mae_pretrain_file_loads_into_mae_pretrain():
    """Full MAE pretrain file -> MAEPretrain: every weight loaded under its own name, both tables rebuilt."""
    from mvd_lib.mae import MAEPretrain

    state = fill(mae_shapes(with_decoder=True), seed=14)
    model = MAEPretrain(MAE_CFG, DecoderConfig(width=DD, depth=DEC_DEPTH, heads=DEC_HEADS), seed=0)
    report = load_checkpoint(model, {"model": state})
    tables = {"pos_embed", "decoder_pos_embed"}
    assert set(report.loaded) == set(state) - tables
    assert set(report.rebuilt) == tables and not any("differ" in v.lower() for v in report.rebuilt.values())
    assert report.dropped == {} and report.missing_allowed == {}
    assert_loaded_equal(model, state, set(state))
    assert set(model.state_dict()) == set(state)


# ----------------------------------------------------------------------------------------------- (e) mismatches
def test_misspelled_key_names_both_sides():
    """A misspelled `q_bias` is refused; the message names the unexpected file key AND the missing model key."""
    state = fill(finetuned_shapes(), seed=7)
    state["blocks.1.attn.q_bais"] = state.pop("blocks.1.attn.q_bias")
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, {"module": state})
    msg = str(err.value)
    assert "blocks.1.attn.q_bais" in msg and "blocks.1.attn.q_bias" in msg
    # nothing was loaded by the failed call
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_wrong_shape_names_key_and_both_shapes():
    state = fill(finetuned_shapes(), seed=8)
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(3 * D, D)  # mlp ratio 3 instead of 4
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, {"module": state})
    msg = str(err.value)
    assert "blocks.0.mlp.fc1.weight" in msg
    assert any(s in msg for s in ("(96, 32)", "[96, 32]")) and any(s in msg for s in ("(128, 32)", "[128, 32]"))


def test_wrong_number_of_classes_is_refused():
    """A finetuned head for another dataset does not silently load (the reference would drop it quietly)."""
    state = fill(finetuned_shapes(), seed=9)
    model = VideoClassifier(CFG, NUM_CLASSES + 3, seed=0)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, {"module": state})
    assert "head.weight" in str(err.value)


def test_mae_weights_refused_by_video_encoder():
    """MAE fused-qkv weights into a q_bias/v_bias video encoder: refused, naming qkv.bias and q_bias/v_bias."""
    state = fill(mae_shapes(), seed=10)
    for model in (videomae_encoder(CFG, seed=0), VideoClassifier(CFG, NUM_CLASSES, seed=0)):
        with pytest.raises(CheckpointMismatchError) as err:
            load_checkpoint(model, {"model": state})
        msg = str(err.value)
        assert "blocks.0.attn.qkv.bias" in msg
        assert "blocks.0.attn.q_bias" in msg and "blocks.0.attn.v_bias" in msg
        assert "patch_embed.proj.weight" in msg  # Conv2d kernel vs Conv3d tubelet kernel


def test_pretrain_file_refused_by_student_of_another_size():
    """MVD pretrain file into a student with a deeper decoder: the missing decoder block keys are named."""
    model = MVDStudent(CFG, DecoderConfig(width=DD, depth=DEC_DEPTH + 1, heads=DEC_HEADS), OUT, seed=0)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, mvd_pretrain_file())
    assert f"decoder_img.blocks.{DEC_DEPTH}.attn.q_bias" in str(err.value)


def test_finetuned_file_into_teacher_encoder_needs_explicit_allow_missing():
    """A finetuned file has no final `norm`: building a teacher encoder from it fails naming `norm.weight`,
    and succeeds only when the user allows it knowingly (then the report says so)."""
    state = fill(finetuned_shapes(), seed=15)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(videomae_encoder(CFG, seed=0), {"module": state})
    assert "norm.weight" in str(err.value)
    enc = videomae_encoder(CFG, seed=0)
    report = load_checkpoint(enc, {"module": state}, allow_missing=[r"^norm\."])
    assert set(report.missing_allowed) == {"norm.weight", "norm.bias"}
    assert {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"} == set(report.dropped)
    assert_loaded_equal(enc, state, set(video_encoder_shapes(final_norm=False)))


def test_extra_key_dropped_only_on_request():
    state = fill(finetuned_shapes(), seed=16)
    state["head_dist.weight"] = torch.zeros(NUM_CLASSES, D)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(VideoClassifier(CFG, NUM_CLASSES, seed=0), {"module": state})
    assert "head_dist.weight" in str(err.value)
    report = load_checkpoint(VideoClassifier(CFG, NUM_CLASSES, seed=0), {"module": state}, drop=[r"^head_dist\."])
    assert set(report.dropped) == {"head_dist.weight"}


# ----------------------------------------------------------------------------------------------- (f) pickled args
def test_pickled_namespace_needs_trust(tmp_path: Path):
    """The reference stores `args` as a pickled argparse.Namespace: refused unless trust_pickle=True."""
    ckpt = mvd_pretrain_file()
    ckpt["args"] = argparse.Namespace(lr=1.5e-4, batch_size=64, model="pretrain_masked_video_student_base")
    path = tmp_path / "checkpoint-399.pth"
    torch.save(ckpt, path)
    model = MVDStudent(CFG, DEC, OUT, seed=0)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_checkpoint(model, path)
    assert "trust_pickle" in str(err.value)
    with pytest.raises(UntrustedCheckpointError):
        read_checkpoint(path)
    report = load_checkpoint(model, path, trust_pickle=True)
    assert set(report.loaded) == set(ckpt["model"]) - {"pos_embed", "pos_embed_img", "pos_embed_vid"}
    assert_loaded_equal(model, ckpt["model"], report.loaded)
    assert read_checkpoint(path, trust_pickle=True)["args"].lr == 1.5e-4


def test_plain_tensor_file_needs_no_trust(tmp_path: Path):
    path = tmp_path / "plain.pth"
    torch.save({"model": fill(finetuned_shapes(), seed=11), "epoch": 3}, path)
    report = load_checkpoint(VideoClassifier(CFG, NUM_CLASSES, seed=0), path)
    assert len(report.loaded) == len(finetuned_shapes())


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_corrupt_file_raises_checkpoint_error_not_untrusted(tmp_path: Path, keep: float):
    """A truncated download is a broken file, not a file of pickled objects. The documented contract
    (CheckpointError: "a checkpoint could not be read") asks for a CheckpointError that does not tell the user
    to pass trust_pickle, with or without trust_pickle."""
    from mvd_lib.checkpoint import CheckpointError

    good = tmp_path / "good.pth"
    torch.save({"model": fill(finetuned_shapes(), seed=17)}, good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: int(len(data) * keep)])
    for trust in (False, True):
        try:
            read_checkpoint(bad, trust_pickle=trust)
        except UntrustedCheckpointError as e:
            pytest.fail(f"truncated file (trust_pickle={trust}) blamed on pickled objects: {str(e)[:90]}...")
        except CheckpointError:
            pass
        except Exception as e:  # noqa: BLE001  (the point of the test: raw torch errors leak through)
            pytest.fail(f"truncated file (trust_pickle={trust}) raised a raw {type(e).__name__}: {str(e)[:80]}")
        else:
            pytest.fail("a truncated file was read without error")


@pytest.mark.parametrize("name, content, phrase", [
    ("empty.pth", b"", "is empty (0 bytes)"),
    ("notes.pth", b"learning rate 1.5e-4, 400 epochs\nsee the paper\n", "is a text file"),
    ("page.pth", b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "is an HTML page"),
    ("lfs.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 348000000\n", "Git LFS pointer"),
    ("random.pth", bytes(range(7, 256)) * 40, "is not a PyTorch checkpoint (neither a zip archive nor a pickle"),
    ("plain.pkl", b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", "plain Python pickle"),
])
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path: Path, name: str, content: bytes, phrase: str):
    """Not "pickled Python objects" and no advice to trust the file: one line saying what the file is."""
    from mvd_lib.checkpoint import CheckpointError

    path = tmp_path / name
    path.write_bytes(content)
    for trust in (False, True):
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path, trust_pickle=trust)
        msg = str(err.value)
        assert type(err.value) is CheckpointError and phrase in msg and str(path) in msg, msg
        assert "\n" not in msg and "trust" not in msg, msg


def test_truncated_and_damaged_checkpoints_are_named_as_such(tmp_path: Path):
    import zipfile

    from mvd_lib.checkpoint import CheckpointError

    good = tmp_path / "good.pth"
    torch.save({"model": fill(finetuned_shapes(), seed=18)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:3000])
    # a sound zip archive whose pickle is garbage: damaged, not "pickled objects"
    garbled = tmp_path / "garbled.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(garbled, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, bytes(range(200, 256)) * 4 if info.filename.endswith("data.pkl") else data)
    for path, phrase in ((cut, "damaged or truncated PyTorch checkpoint"), (garbled, "contents are damaged")):
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        msg = str(err.value)
        assert not isinstance(err.value, UntrustedCheckpointError) and phrase in msg and str(path) in msg, msg
        assert "\n" not in msg and "trust" not in msg


def test_only_a_sound_pickled_checkpoint_is_offered_trust(tmp_path: Path):
    ckpt = {"model": fill(finetuned_shapes(), seed=19), "args": argparse.Namespace(lr=1e-3)}
    for name, legacy in (("zip.pth", False), ("legacy.pth", True)):
        path = tmp_path / name
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(UntrustedCheckpointError) as err:
            read_checkpoint(path)
        msg = str(err.value)
        assert "\n" not in msg and "argparse.Namespace" in msg and "--trust-checkpoint" in msg and str(path) in msg
        assert read_checkpoint(path, trust_pickle=True)["args"].lr == 1e-3


def test_non_finite_weights_are_refused_naming_the_tensors(tmp_path: Path):
    from mvd_lib.checkpoint import CheckpointError, NonFiniteCheckpointError

    state = fill(finetuned_shapes(), seed=20)
    state["blocks.0.attn.proj.weight"][0, 0] = float("nan")
    state["head.bias"][1] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save({"model": state}, path)
    model = VideoClassifier(CFG, NUM_CLASSES, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteCheckpointError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert isinstance(err.value, CheckpointError) and "\n" not in msg and str(path) in msg
    assert "blocks.0.attn.proj.weight" in msg and "head.bias" in msg and f"2 of {len(state)} tensors" in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_mismatch_message_is_one_line():
    state = fill(finetuned_shapes(), seed=21)
    state["blocks.1.attn.q_bais"] = state.pop("blocks.1.attn.q_bias")
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(VideoClassifier(CFG, NUM_CLASSES + 1, seed=0), {"module": state})
    msg = str(err.value)
    assert "\n" not in msg and "blocks.1.attn.q_bais" in msg and "head.weight" in msg


# ----------------------------------------------------------------------------------------------- (g) saving
def _shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def test_save_round_trip_student(tmp_path: Path):
    """Save a student, load into a fresh one (another seed): identical outputs; the file is weights_only-safe
    and its model keys/shapes are exactly the MVD pretrain layout."""
    src = MVDStudent(CFG, DEC, OUT, seed=0).eval()
    opt = torch.optim.AdamW(src.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = save_checkpoint(tmp_path / "ckpt" / "checkpoint-1.pth", src, optimizer=opt, epoch=1, scaler=scaler,
                           args={"model": "mvd_tiny", "lr": 1e-3})
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "epoch", "scaler", "args"} <= set(raw)
    assert raw["epoch"] == 1 and raw["args"]["lr"] == 1e-3
    assert _shapes_of(raw["model"]) == mvd_pretrain_shapes()

    dst = MVDStudent(CFG, DEC, OUT, seed=1).eval()
    mask = tube_mask(2, GRID, 0.5, torch.Generator().manual_seed(0))
    video = clip(1)
    with torch.no_grad():
        a, b_before = src(video, mask), dst(video, mask)
        assert not torch.allclose(a["img"], b_before["img"])  # the seeds really differ
        load_checkpoint(dst, path)
        b = dst(video, mask)
    for k in OUT:
        assert torch.equal(a[k], b[k]), k


def test_save_round_trip_classifier(tmp_path: Path):
    src = VideoClassifier(CFG, NUM_CLASSES, seed=0).eval()
    with torch.no_grad():  # a non-trivial head (init is scaled by 1e-3)
        src.head.weight.normal_(generator=torch.Generator().manual_seed(0))
    path = save_checkpoint(tmp_path / "ft.pth", src, epoch=0)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert _shapes_of(raw["model"]) == finetuned_shapes()
    dst = VideoClassifier(CFG, NUM_CLASSES, seed=1).eval()
    load_checkpoint(dst, path)
    with torch.no_grad():
        assert torch.equal(src(clip(2)), dst(clip(2)))


def test_saved_layouts_of_teacher_models(tmp_path: Path):
    """VideoMAEPretrain saves the VideoMAE pretrain layout; ImageViT the MAE encoder layout."""
    p1 = save_checkpoint(tmp_path / "vmae.pth", VideoMAEPretrain(CFG, DEC, seed=0))
    assert _shapes_of(torch.load(p1, weights_only=True)["model"]) == videomae_pretrain_shapes()
    p2 = save_checkpoint(tmp_path / "mae.pth", ImageViT(MAE_CFG, seed=0))
    assert _shapes_of(torch.load(p2, weights_only=True)["model"]) == mae_shapes()
    p3 = save_checkpoint(tmp_path / "enc.pth", videomae_encoder(CFG, seed=0))
    assert _shapes_of(torch.load(p3, weights_only=True)["model"]) == video_encoder_shapes()


def test_save_unwraps_module_attribute(tmp_path: Path):
    """A DDP-style wrapper (`.module`) is saved without a `module.` prefix."""
    class Wrapper(torch.nn.Module):
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.module = m

    path = save_checkpoint(tmp_path / "w.pth", Wrapper(VideoClassifier(CFG, NUM_CLASSES, seed=0)))
    assert set(torch.load(path, weights_only=True)["model"]) == set(finetuned_shapes())


@pytest.mark.parametrize("preset,dim,depth,dec_dim,dec_depth,teacher", [
    ("vit_small", 384, 12, 384, 2, 768),  # S student, B teachers: decoder depth 2 at the encoder width
    ("vit_base", 768, 12, 768, 2, 768),
    ("vit_large", 1024, 24, 512, 4, 1024),  # L: decoder width 512, depth 4
    ("vit_huge", 1280, 32, 640, 8, 1280),  # H: decoder width 640, depth 8
])
def test_paper_student_layouts_on_meta(preset: str, dim: int, depth: int, dec_dim: int, dec_depth: int, teacher: int):
    """Paper-size students built by mvd_lib.build (meta device, shapes only) have exactly the reference
    checkpoint layout of section 3, including the decoder sizes of the released runs."""
    from mvd_lib.build import build_student
    from mvd_lib.config import vit_config

    with torch.device("meta"):
        student = build_student(vit_config(preset), {"img": teacher, "vid": teacher})
    expected = mvd_pretrain_shapes(dim=dim, depth=depth, patch=16, n=1568, dec_dim=dec_dim, dec_depth=dec_depth,
                                   out={"img": teacher, "vid": teacher})
    assert _shapes_of(student.state_dict()) == expected


def test_paper_classifier_layout_on_meta():
    """ViT-B finetuned on K400 (meta device): the reference finetuned layout, 400-way head, no pos_embed/norm."""
    from mvd_lib.config import vit_config

    with torch.device("meta"):
        model = VideoClassifier(vit_config("vit_base"), num_classes=400)
    assert _shapes_of(model.state_dict()) == finetuned_shapes(dim=768, depth=12, patch=16, classes=400)


# ----------------------------------------------------------------------------------------------- (h) fixed tables
def test_differing_fixed_table_is_reported_not_used():
    """A file whose `pos_embed` differs from our 3-D table: reported in `rebuilt` (and in the report text);
    the model keeps the formula's table."""
    ckpt = mvd_pretrain_file()
    wrong = torch.randn(1, N, D, generator=torch.Generator().manual_seed(0))
    ckpt["model"]["pos_embed"] = wrong
    model = MVDStudent(CFG, DEC, OUT, seed=0)
    report = load_checkpoint(model, ckpt)
    assert "pos_embed" in report.rebuilt and "differ" in report.rebuilt["pos_embed"].lower()
    assert "differ" not in report.rebuilt["pos_embed_img"].lower()
    text = str(report)
    assert "pos_embed" in text and "differ" in text.lower()
    torch.testing.assert_close(model.state_dict()["pos_embed"], table_3d(D, GRID), atol=1e-6, rtol=0)


def test_fixed_table_of_another_grid_is_reported():
    """A table for another token count is not loaded; the report says the shapes differ."""
    ckpt = mvd_pretrain_file()
    ckpt["model"]["pos_embed_vid"] = torch.zeros(1, 2 * N, DD)
    model = MVDStudent(CFG, DEC, OUT, seed=0)
    report = load_checkpoint(model, ckpt)
    assert "differ" in report.rebuilt["pos_embed_vid"].lower()
    torch.testing.assert_close(model.state_dict()["pos_embed_vid"], table_3d(DD, GRID), atol=1e-6, rtol=0)


def test_mae_table_differing_is_reported():
    """MAE file whose pos_embed is a VideoMAE-style interleaved table instead of MAE's: reported as differing."""
    state = fill(mae_shapes(), seed=12)
    L = 1 + MAE_G ** 2
    interleaved = torch.tensor([[math.sin(p / 10000 ** (2 * (j // 2) / D)) if j % 2 == 0 else
                                 math.cos(p / 10000 ** (2 * (j // 2) / D)) for j in range(D)] for p in range(L)])
    state["pos_embed"] = interleaved[None].float()
    report = load_checkpoint(ImageViT(MAE_CFG, seed=0), {"model": state})
    assert "differ" in report.rebuilt["pos_embed"].lower()
    assert "differ" in str(report).lower()
