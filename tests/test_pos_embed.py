"""Fixed positional tables (mvd_reference.md section 1) checked entry by entry against the written formulas.

Expected values are computed here with math.sin / math.cos from the formulas, never by calling mvd_lib:
- MAE 1-D sin-cos: channel j < d/2 is sin(p * w_j), channel j >= d/2 is cos(p * w_{j - d/2}),
  w_i = 1 / 10000^(i / (d/2));
- MAE 2-D: channels [0, d/2) encode the COLUMN index, [d/2, d) the ROW index; tokens in row-major order;
  an optional zero row for the cls token;
- MVD 3-D: channels [0, D/4) encode t, channels [D/4, D) are the 2-D table at width 3D/4; (t, h, w) order;
- VideoMAE: angle p / 10000^(2 * floor(j / 2) / d), sin on even channels, cos on odd ones.
Also checks which models keep which table in their state dict (MVD student, finetune model, VideoMAE, MAE).
"""
from __future__ import annotations

import math

import pytest
import torch

import mvd_lib  # noqa: F401  (installs the torchvision guard before timm is imported)
from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import DecoderConfig, ViTConfig, vit_config
from mvd_lib.mae import ImageViT, MAEPretrain
from mvd_lib.pos_embed import sincos_1d, sincos_2d, sincos_3d, videomae_sinusoid
from mvd_lib.student import MVDStudent
from mvd_lib.videomae import VideoMAEPretrain, videomae_encoder

ATOL = 2e-6  # tables are float32; the formulas below are evaluated in float64


# ----------------------------------------------------------------------------------------------- hand formulas
def mae_1d(d: int, p: float, j: int) -> float:
    """Channel j of the MAE 1-D table of width d at position p: [sin(p w_i) | cos(p w_i)]."""
    half = d // 2
    i = j if j < half else j - half
    w = 1.0 / 10000 ** (i / (d / 2))
    return math.sin(p * w) if j < half else math.cos(p * w)


def mae_2d(d: int, row: int, col: int, j: int) -> float:
    """Channel j of the MAE 2-D table of width d: first half the column index, second half the row index."""
    half = d // 2
    return mae_1d(half, col, j) if j < half else mae_1d(half, row, j - half)


def mvd_3d(d: int, t: int, row: int, col: int, j: int) -> float:
    """Channel j of the MVD 3-D table of width d: first d/4 channels temporal, rest the 2-D table at 3d/4."""
    d_t = d // 4
    return mae_1d(d_t, t, j) if j < d_t else mae_2d(d - d_t, row, col, j - d_t)


def videomae_entry(d: int, p: int, j: int) -> float:
    """Channel j of VideoMAE's sinusoid table at flattened token index p."""
    angle = p / 10000 ** (2 * (j // 2) / d)
    return math.sin(angle) if j % 2 == 0 else math.cos(angle)


def close(a: float, b: float, atol: float = ATOL) -> bool:
    return abs(a - b) <= atol


# ----------------------------------------------------------------------------------------------- 1-D
def test_sincos_1d_every_entry():
    """Every entry of a small 1-D table equals [sin(p w_i) | cos(p w_i)] at arbitrary positions."""
    d, positions = 8, [0, 1, 5, 13, 100]
    table = sincos_1d(d, torch.tensor(positions))
    assert table.shape == (len(positions), d) and table.dtype == torch.float32
    for r, p in enumerate(positions):
        for j in range(d):
            assert close(table[r, j].item(), mae_1d(d, p, j)), (p, j, table[r, j].item(), mae_1d(d, p, j))


def test_sincos_1d_layout_is_concatenated_not_interleaved():
    """Position 0 gives [0,...,0 | 1,...,1] (sin half then cos half), not an interleaved 0,1,0,1 pattern."""
    row = sincos_1d(6, torch.tensor([0]))[0]
    assert row.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # channel 1 at position 1 is sin(1 * 10000^(-1/3)), not cos(1)
    one = sincos_1d(6, torch.tensor([1]))[0]
    assert close(one[1].item(), math.sin(10000 ** (-1 / 3)))
    assert not close(one[1].item(), math.cos(1.0), 1e-3)


# ----------------------------------------------------------------------------------------------- 2-D
@pytest.mark.parametrize("grid_h,grid_w", [(3, 5), (4, 2), (2, 2)])
def test_sincos_2d_non_square_every_entry(grid_h: int, grid_w: int):
    """Row-major tokens n = r * W' + c; channels [0, d/2) encode the column c, [d/2, d) the row r."""
    d = 16
    table = sincos_2d(d, grid_h, grid_w)
    assert table.shape == (grid_h * grid_w, d)
    for r in range(grid_h):
        for c in range(grid_w):
            n = r * grid_w + c
            for j in range(d):
                assert close(table[n, j].item(), mae_2d(d, r, c, j)), (r, c, j)


def test_sincos_2d_column_comes_first():
    """Token (row 0, col 1) carries position 1 in the FIRST half and 0 in the second half (MAE meshgrid order)."""
    d = 8
    table = sincos_2d(d, 2, 3)
    tok_r0_c1 = table[1]  # row-major: n = 0 * 3 + 1
    tok_r1_c0 = table[3]  # n = 1 * 3 + 0
    assert close(tok_r0_c1[0].item(), math.sin(1.0)) and close(tok_r0_c1[d // 2].item(), 0.0)
    assert close(tok_r1_c0[0].item(), 0.0) and close(tok_r1_c0[d // 2].item(), math.sin(1.0))


def test_sincos_2d_cls_row_is_zero():
    """With a cls token the table gains a leading all-zero row; row 1 + n is patch n."""
    d, gh, gw = 12, 2, 3
    table = sincos_2d(d, gh, gw, cls_token=True)
    assert table.shape == (1 + gh * gw, d)
    assert torch.count_nonzero(table[0]) == 0
    for n in range(gh * gw):
        r, c = divmod(n, gw)
        for j in range(d):
            assert close(table[1 + n, j].item(), mae_2d(d, r, c, j))


def test_sincos_2d_paper_size_spot_entries():
    """MAE ViT-B/16 at 224 px: [197, 768] with a zero cls row; spot entries across both halves."""
    d = 768
    table = sincos_2d(d, 14, 14, cls_token=True)
    assert table.shape == (197, 768)
    assert torch.count_nonzero(table[0]) == 0
    for n in (0, 15, 27, 100, 195):
        r, c = divmod(n, 14)
        for j in (0, 1, 95, 191, 192, 383, 384, 500, 575, 576, 767):
            assert close(table[1 + n, j].item(), mae_2d(d, r, c, j)), (n, j)


# ----------------------------------------------------------------------------------------------- 3-D
@pytest.mark.parametrize("dim,grid", [(32, (3, 2, 4)), (16, (2, 3, 1)), (64, (2, 2, 3))])
def test_sincos_3d_every_entry(dim: int, grid: tuple[int, int, int]):
    """(t, h, w) row-major tokens; first dim/4 channels encode t, the rest the 2-D table (column first)."""
    gt, gh, gw = grid
    table = sincos_3d(dim, gt, gh, gw)
    assert table.shape == (gt * gh * gw, dim)
    for t in range(gt):
        for r in range(gh):
            for c in range(gw):
                n = (t * gh + r) * gw + c
                for j in range(dim):
                    assert close(table[n, j].item(), mvd_3d(dim, t, r, c, j)), (t, r, c, j)


def test_sincos_3d_paper_size_spot_entries():
    """ViT-B student: 8x14x14 grid -> [1568, 768]; spot entries in the temporal, column and row parts."""
    d = 768
    table = sincos_3d(d, 8, 14, 14)
    assert table.shape == (1568, 768)
    for n in (0, 1, 14, 195, 196, 197, 1000, 1567):
        t, rest = divmod(n, 196)
        r, c = divmod(rest, 14)
        for j in (0, 1, 95, 96, 191, 192, 193, 479, 480, 767):
            assert close(table[n, j].item(), mvd_3d(d, t, r, c, j)), (n, j)
    # token 196 is (t=1, h=0, w=0): temporal sin part = sin(1), spatial sin parts all 0
    assert close(table[196, 0].item(), math.sin(1.0))
    assert close(table[196, 192].item(), 0.0) and close(table[196, 192 + 288].item(), 0.0)


# ----------------------------------------------------------------------------------------------- VideoMAE
def test_videomae_sinusoid_every_entry():
    """angle p / 10000^(2 floor(j/2) / d); sin on even channels, cos on odd channels."""
    n, d = 7, 10
    table = videomae_sinusoid(n, d)
    assert table.shape == (n, d) and table.dtype == torch.float32
    for p in range(n):
        for j in range(d):
            assert close(table[p, j].item(), videomae_entry(d, p, j)), (p, j)


def test_videomae_sinusoid_is_interleaved():
    """Position 0 alternates 0, 1, 0, 1, ...; channel 1 at position 1 is cos(1) (same frequency as channel 0)."""
    table = videomae_sinusoid(2, 6)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert close(table[1, 0].item(), math.sin(1.0)) and close(table[1, 1].item(), math.cos(1.0))


def test_videomae_sinusoid_paper_size_spot_entries():
    """VideoMAE ViT-B teacher: [1568, 768]; spot entries over the flattened token index."""
    d = 768
    table = videomae_sinusoid(1568, d)
    assert table.shape == (1568, 768)
    for p in (0, 1, 196, 777, 1567):
        for j in (0, 1, 2, 3, 100, 101, 766, 767):
            assert close(table[p, j].item(), videomae_entry(d, p, j), 1e-5), (p, j)


# ----------------------------------------------------------------------------------------------- models: storage
TINY = ViTConfig(width=32, depth=1, heads=2, num_frames=4, img_size=12, patch_size=4, tubelet_size=2)  # grid 2x3x3
TINY_DEC = DecoderConfig(width=16, depth=1, heads=2)


def _check_3d(table: torch.Tensor, dim: int, grid: tuple[int, int, int]) -> None:
    gt, gh, gw = grid
    assert table.shape == (1, gt * gh * gw, dim)
    for n in range(gt * gh * gw):
        t, rest = divmod(n, gh * gw)
        r, c = divmod(rest, gw)
        for j in range(dim):
            assert close(table[0, n, j].item(), mvd_3d(dim, t, r, c, j)), (n, j)


def test_mvd_student_stores_three_fixed_tables():
    """MVD student state dict: `pos_embed` [1, N, D] and `pos_embed_img/vid` [1, N, D_dec], 3-D sin-cos,
    not trainable."""
    s = MVDStudent(TINY, TINY_DEC, {"img": 24, "vid": 40}, seed=0)
    sd = s.state_dict()
    assert {"pos_embed", "pos_embed_img", "pos_embed_vid"} <= set(sd)
    _check_3d(sd["pos_embed"], 32, TINY.grid)
    _check_3d(sd["pos_embed_img"], 16, TINY.grid)
    _check_3d(sd["pos_embed_vid"], 16, TINY.grid)
    trainable = {n for n, p in s.named_parameters() if p.requires_grad}
    assert not {"pos_embed", "pos_embed_img", "pos_embed_vid"} & trainable


def test_paper_student_table_shapes_on_meta():
    """ViT-B student at paper size (meta device, shapes only): all three tables [1, 1568, 768]."""
    cfg = vit_config("vit_base")
    with torch.device("meta"):
        s = MVDStudent(cfg, DecoderConfig(width=768, depth=2, heads=12), {"img": 768, "vid": 768})
    sd = s.state_dict()
    for k in ("pos_embed", "pos_embed_img", "pos_embed_vid"):
        assert tuple(sd[k].shape) == (1, 1568, 768), k


def test_classifier_uses_3d_table_but_does_not_store_it():
    """Finetune model: same 3-D table added to the tokens, but no `pos_embed` key in its state dict."""
    m = VideoClassifier(TINY, num_classes=5, seed=0)
    assert not [k for k in m.state_dict() if "pos_embed" in k]
    _check_3d(m.pos_embed, 32, TINY.grid)


def test_videomae_encoder_uses_sinusoid_and_does_not_store_it():
    """VideoMAE encoder: 1-D sinusoid over the flattened token index, not in the state dict."""
    enc = videomae_encoder(TINY, seed=0)
    assert not [k for k in enc.state_dict() if "pos_embed" in k]
    n = TINY.num_tokens
    assert enc.pos_embed.shape == (1, n, 32)
    for p in range(n):
        for j in range(32):
            assert close(enc.pos_embed[0, p, j].item(), videomae_entry(32, p, j)), (p, j)
    full = VideoMAEPretrain(TINY, TINY_DEC, seed=0)
    assert not [k for k in full.state_dict() if "pos_embed" in k]


def test_mae_image_vit_stores_2d_table_with_cls_row():
    """MAE ImageViT stores `pos_embed` [1, 1 + L, D]: a zero cls row, then the 2-D table (column first)."""
    cfg = ViTConfig(width=32, depth=1, heads=2, num_frames=2, img_size=12, patch_size=4, tubelet_size=2)
    m = ImageViT(cfg, seed=0)
    pe = m.state_dict()["pos_embed"]
    assert pe.shape == (1, 1 + 9, 32)
    assert torch.count_nonzero(pe[0, 0]) == 0
    for n in range(9):
        r, c = divmod(n, 3)
        for j in range(32):
            assert close(pe[0, 1 + n, j].item(), mae_2d(32, r, c, j)), (n, j)
    mp = MAEPretrain(cfg, TINY_DEC, seed=0)
    dpe = mp.state_dict()["decoder_pos_embed"]
    assert dpe.shape == (1, 10, 16) and torch.count_nonzero(dpe[0, 0]) == 0
    assert close(dpe[0, 1 + 5, 0].item(), mae_2d(16, 1, 2, 0)) and close(dpe[0, 1 + 5, 8].item(), mae_2d(16, 1, 2, 8))


def test_mae_paper_table_shape_on_meta():
    """MAE ViT-B/16 at 224 px (meta device): `pos_embed` [1, 197, 768]."""
    with torch.device("meta"):
        m = ImageViT(vit_config("vit_base"))
    assert tuple(m.state_dict()["pos_embed"].shape) == (1, 197, 768)


def test_encoder_adds_table_to_tubelet_tokens():
    """The student's embedding equals Conv3d tubelet tokens plus the 3-D table (checked at one token by hand)."""
    s = MVDStudent(TINY, TINY_DEC, {"img": 24}, seed=0)
    video = torch.randn(1, 3, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    x = s.embed(video)  # [1, N, D]
    w, b = s.patch_embed.proj.weight, s.patch_embed.proj.bias
    t, r, c = 1, 2, 0  # token (t=1, h=2, w=0) -> n = (1 * 3 + 2) * 3 + 0
    n = (t * 3 + r) * 3 + c
    cube = video[0, :, 2 * t:2 * t + 2, 4 * r:4 * r + 4, 4 * c:4 * c + 4]  # [C, 2, 4, 4]
    token = (w * cube[None]).sum(dim=(1, 2, 3, 4)) + b
    expected = token + torch.tensor([mvd_3d(32, t, r, c, j) for j in range(32)])
    torch.testing.assert_close(x[0, n], expected, atol=1e-5, rtol=1e-5)
