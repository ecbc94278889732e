"""Model structure tests that would catch a wrong model: sizes, token order, teacher alignment, decoders."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvd_lib.blocks import Attention, attention_impl
from mvd_lib.build import build_distillation, build_mae, build_videomae
from mvd_lib.classifier import VideoClassifier
from mvd_lib.flops import encoder_params
from mvd_lib.config import ViTConfig, mvd_decoder_config, vit_config
from mvd_lib.mae import ImageViT
from mvd_lib.masking import gather_masked, gather_visible, random_mask, tube_mask
from mvd_lib.rng import generator
from mvd_lib.student import MVDStudent, TokenDistillStudent
from mvd_lib.teachers import ImageTeacher, VideoTeacher
from mvd_lib.videomae import videomae_encoder

SMALL = ViTConfig(width=32, depth=2, heads=2, num_frames=4, img_size=16, patch_size=4, tubelet_size=2)


@pytest.mark.parametrize("preset,paper_m", [("vit_small", 22), ("vit_base", 87), ("vit_large", 305), ("vit_huge", 633)])
def test_paper_encoder_sizes_within_one_percent(preset, paper_m):
    n = encoder_params(vit_config(preset))
    assert abs(n / 1e6 - paper_m) / paper_m < 0.01, n


def test_paper_clip_tokens():
    cfg = vit_config("vit_base")
    assert cfg.grid == (8, 14, 14) and cfg.num_tokens == 1568
    mask = tube_mask(1, cfg.grid, 0.9, generator(0))
    assert int((~mask).sum()) == 160


def test_qv_bias_attention_is_fused_bias_with_zero_k_part():
    torch.manual_seed(0)
    attn = Attention(16, 2, bias="qv").eval()
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(3, 5, 16)
    # explicit reference computation: bias = concat(q_bias, 0, v_bias), softmax(q k^T / sqrt(hd)) v
    qkv = x @ attn.qkv.weight.T + torch.cat([attn.q_bias, torch.zeros(16), attn.v_bias])
    q, k, v = qkv.reshape(3, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    ref = ((q @ k.transpose(-1, -2)) / 8**0.5).softmax(-1) @ v
    ref = attn.proj(ref.transpose(1, 2).reshape(3, 5, 16))
    with attention_impl("sdpa"):
        out_sdpa = attn(x)
    with attention_impl("math"):
        out_math = attn(x)
    assert torch.allclose(out_sdpa, ref, atol=1e-5) and torch.allclose(out_math, ref, atol=1e-5)
    assert "qkv.bias" not in attn.state_dict() and "q_bias" in attn.state_dict()


def test_stochastic_depth_rises_linearly():
    model = MVDStudent(vit_config("vit_nano", depth=5, drop_path=0.1), mvd_decoder_config(vit_config("vit_nano")), {"vid": 8})
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])


def test_student_token_order_is_t_h_w_row_major():
    """Changing pixels of tubelet (t, r, c) changes exactly token t*H'W' + r*W' + c of the embedding."""
    model = MVDStudent(SMALL, mvd_decoder_config(SMALL), {"vid": 8}).eval()
    video = torch.randn(1, 3, 4, 16, 16)
    base = model.embed(video)
    t, r, c = 1, 2, 3
    changed = video.clone()
    changed[:, :, 2 * t: 2 * t + 2, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4] += 1.0
    diff = (model.embed(changed) - base).abs().sum(-1)[0]
    assert diff.nonzero().flatten().tolist() == [t * 16 + r * 4 + c]


def test_image_teacher_tokens_align_with_student_tokens():
    """Teacher token t*L + i is patch i of frame t*tubelet (the tubelet's front frame), before the final norm."""
    vit = ImageViT(SMALL, seed=1)
    teacher = ImageTeacher(vit, tubelet_size=2)
    video = torch.randn(2, 3, 4, 16, 16)
    out = teacher(video)
    assert out.shape == (2, 2 * 16, 32)
    for t in range(2):
        frame = video[:, :, 2 * t]
        ref = vit.encode(frame, pre_norm=True)[:, 1:]
        assert torch.allclose(out[:, t * 16:(t + 1) * 16], ref, atol=1e-5)
        assert not torch.allclose(ref, vit.encode(frame)[:, 1:], atol=1e-3)  # pre-norm really differs from normed
    # frames 1 and 3 (the second frame of each tubelet) are not seen
    other = video.clone()
    other[:, :, 1::2] = torch.randn_like(other[:, :, 1::2])
    assert torch.equal(teacher(other), out)
    # frame 2 (tubelet 1) only moves tokens of time slice 1
    moved = video.clone()
    moved[:, :, 2] += 1
    delta = (teacher(moved) - out).abs().sum(-1)
    assert delta[:, :16].max() == 0 and delta[:, 16:].min() > 0


def test_video_teacher_targets_are_pre_norm_last_block_of_full_clip():
    enc = videomae_encoder(SMALL, seed=2)
    teacher = VideoTeacher(enc)
    video = torch.randn(2, 3, 4, 16, 16)
    x = enc.embed(video)
    for blk in enc.blocks:
        x = blk(x)
    assert torch.allclose(teacher(video), x, atol=1e-5)
    assert "pos_embed" not in enc.state_dict()


def test_teachers_are_frozen_and_stay_in_eval():
    student, teachers = build_distillation("vit_nano", drop_path=0.1)
    for t in teachers.values():
        t.train()
        assert not t.training and not any(m.training for m in t.modules())
        assert not any(p.requires_grad for p in t.parameters())
        assert not t(torch.randn(1, 3, 16, 32, 32)).requires_grad


def _full_order_decode(student: MVDStudent, name: str, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Decode with every token at its own position (visible projected, masked = mask token), then read the
    masked positions in ascending order. Attention is permutation-equivariant, so this must equal the
    reference's [visible..., masked...] layout if and only if the outputs come in ascending token order."""
    down = getattr(student, f"down_{name}")(latent)
    pos = getattr(student, f"pos_embed_{name}").expand(latent.shape[0], -1, -1)
    full = getattr(student, f"mask_token_{name}").expand_as(pos).clone()
    full[~mask] = down.reshape(-1, down.shape[-1])
    full = full + pos
    dec = getattr(student, f"decoder_{name}")
    for blk in dec.blocks:
        full = blk(full)
    return dec.head(dec.norm(gather_masked(full, mask)))


def test_decoders_return_exactly_the_masked_tokens_in_ascending_order():
    cfg = vit_config("vit_nano", num_frames=4, img_size=16)
    student = MVDStudent(cfg, mvd_decoder_config(cfg), {"img": 24, "vid": 40}, pixel=True, seed=3).eval()
    video = torch.randn(2, 3, 4, 16, 16)
    mask = random_mask(2, cfg.num_tokens, 0.75, generator(4))
    out = student(video, mask)
    assert set(out) == {"img", "vid", "pix"}
    assert out["img"].shape == (2, 24, 24) and out["vid"].shape == (2, 24, 40) and out["pix"].shape == (2, 24, 96)
    latent = gather_visible(student.embed(video), mask)
    for blk in student.blocks:
        latent = blk(latent)
    latent = student.norm(latent)
    for name in ("img", "vid", "pix"):
        assert torch.allclose(out[name], _full_order_decode(student, name, latent, mask), atol=1e-5), name
    # and a different order (e.g. reversed) would not match
    assert not torch.allclose(out["vid"].flip(1), _full_order_decode(student, "vid", latent, mask), atol=1e-3)


def test_student_branch_choices_and_keys():
    cfg = vit_config("vit_nano")
    only_vid = MVDStudent(cfg, mvd_decoder_config(cfg), {"vid": 64})
    assert only_vid.branches == ("vid",) and not any("_img" in k for k in only_vid.state_dict())
    none = MVDStudent(cfg, mvd_decoder_config(cfg), {})
    assert none.branches == () and none(torch.randn(1, 3, 16, 32, 32), tube_mask(1, cfg.grid, 0.9)) == {}
    with pytest.raises(ValueError, match="unknown teacher branch"):
        MVDStudent(cfg, mvd_decoder_config(cfg), {"audio": 8})


@pytest.mark.parametrize("preset,expected", [("vit_small", (384, 2, 6)), ("vit_base", (768, 2, 12)),
                                             ("vit_large", (512, 4, 8)), ("vit_huge", (640, 8, 8))])
def test_reference_decoder_sizes(preset, expected):
    d = mvd_decoder_config(vit_config(preset))
    assert (d.width, d.depth, d.heads) == expected


def test_classifier_pools_normalises_and_starts_with_a_tiny_head():
    cfg = vit_config("vit_nano")
    model = VideoClassifier(cfg, num_classes=7, fc_drop=0.5, seed=0).eval()
    # weights ~ N(0, 0.02) (timm's trunc_normal_ cuts at +-2 absolute) scaled by 0.001; bias 0
    assert 0.01e-3 < model.head.weight.std().item() < 0.03e-3
    assert torch.all(model.head.bias == 0)
    assert 0.01 < model.blocks[0].mlp.fc1.weight.std().item() < 0.03  # finetune init: N(0, 0.02), not xavier
    video = torch.randn(2, 3, 16, 32, 32)
    tokens = model.embed(video)
    for blk in model.blocks:
        tokens = blk(tokens)
    feats = F.layer_norm(tokens.mean(1), (64,), model.fc_norm.weight, model.fc_norm.bias, eps=1e-6)
    assert torch.allclose(model.features(video), feats, atol=1e-5)
    assert model(video).shape == (2, 7)
    assert set(k.split(".")[0] for k in model.state_dict()) == {"patch_embed", "blocks", "fc_norm", "head"}


def test_mae_predicts_masked_patches_consistently():
    mae = build_mae("vit_nano", vit_config("vit_nano"), seed=0).eval()
    imgs = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 64, 0.75, generator(0))
    masked = mae(imgs, mask)
    full = mae(imgs, mask, all_patches=True)
    assert masked.shape == (2, 48, 48) and full.shape == (2, 64, 48)
    assert torch.allclose(gather_masked(full, mask), masked, atol=1e-6)
    assert torch.isfinite(mae.loss(imgs, mask))


def test_videomae_pretrain_shapes_and_loss():
    vmae = build_videomae("vit_nano", vit_config("vit_nano"), seed=0)
    video = torch.randn(2, 3, 16, 32, 32)
    mask = tube_mask(2, (8, 8, 8), 0.9, generator(0))
    assert vmae(video, mask).shape == (2, 8 * 57, 2 * 4 * 4 * 3)
    loss = vmae.loss(video, mask)
    loss.backward()
    assert torch.isfinite(loss) and vmae.encoder.blocks[0].attn.q_bias.grad is not None
    keys = set(vmae.state_dict())
    assert {"encoder_to_decoder.weight", "mask_token", "decoder.head.weight", "encoder.norm.weight"} <= keys
    assert "encoder_to_decoder.bias" not in keys and not any("pos_embed" in k for k in keys)


def test_token_distillation_student_sees_every_token():
    model = TokenDistillStudent(vit_config("vit_nano"), {"vid": 24})
    out = model(torch.randn(1, 3, 16, 32, 32))
    assert out["vid"].shape == (1, 512, 24)
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 16, 32, 32), tube_mask(1, (8, 8, 8), 0.9))


def test_wrong_clip_size_is_a_clear_error():
    model = MVDStudent(SMALL, mvd_decoder_config(SMALL), {"vid": 8})
    with pytest.raises(ValueError, match="built for 4x16x16"):
        model.embed(torch.randn(1, 3, 4, 32, 32))


def test_construction_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = MVDStudent(SMALL, mvd_decoder_config(SMALL), {"vid": 8}, seed=11)
    after = torch.rand(3)
    b = MVDStudent(SMALL, mvd_decoder_config(SMALL), {"vid": 8}, seed=11)
    c = MVDStudent(SMALL, mvd_decoder_config(SMALL), {"vid": 8}, seed=12)
    assert torch.equal(after, expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.attn.qkv.weight"], sc["blocks.0.attn.qkv.weight"])
