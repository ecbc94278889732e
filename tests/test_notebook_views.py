"""Library pieces the notebooks show: masked clips, embedded GIF rows (viz.py, last section) and the preset table
as data (flops.model_sizes)."""
import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mvd_lib import flops, viz  # noqa: E402
from mvd_lib import synthetic as S  # noqa: E402
from mvd_lib.config import vit_config  # noqa: E402
from mvd_lib.masking import tube_mask  # noqa: E402
from mvd_lib.rng import generator  # noqa: E402

CLIP = S.make_clip(S.SyntheticConfig(), "train", 0)[0]  # uint8 [16, 32, 32, 3]


def test_masked_frames_paints_exactly_the_masked_tubelets():
    mask = tube_mask(1, (8, 8, 8), 0.75, generator(0))[0]  # 48 of 64 patches per slice
    frames = viz.masked_frames(CLIP, mask, (8, 8, 8), 2, 4, fill=(1, 2, 3))
    assert frames.shape == CLIP.shape and frames.dtype == np.uint8
    painted = (frames == np.array([1, 2, 3], dtype=np.uint8)).all(-1)  # [T, H, W]
    assert painted.sum() == 48 * 8 * 2 * 4 * 4
    assert np.array_equal(frames[~painted], CLIP[~painted])  # the visible pixels are untouched
    assert not np.shares_memory(frames, CLIP)
    with pytest.raises(ValueError, match="pixels"):
        viz.masked_frames(CLIP[:8], mask, (8, 8, 8), 2, 4)


def test_gif_row_html_embeds_each_file(tmp_path):
    paths = [viz.save_gif(CLIP, tmp_path / f"{i}.gif", scale=1) for i in range(2)]
    html = viz.gif_row_html(paths, ["a <b>", "c"])
    assert html.count("<img") == 2 and "a &lt;b&gt;" in html
    assert base64.b64encode(paths[0].read_bytes()).decode() in html
    with pytest.raises(ValueError, match="captions"):
        viz.gif_row_html(paths, ["only one"])


def test_model_sizes_match_the_paper_within_one_percent():
    rows = {r.arch: r for r in flops.model_sizes()}
    assert list(rows) == ["vit_small", "vit_base", "vit_large", "vit_huge", "vit_tiny", "vit_micro", "vit_nano"]
    for name, (params_m, gflops) in flops.PAPER_SIZES.items():
        r = rows[name]
        assert (r.paper_params_m, r.paper_gflops) == (params_m, gflops)
        assert abs(r.params / 1e6 / params_m - 1) < 0.01 and abs(r.gflops / gflops - 1) < 0.01
        assert (r.tokens, r.visible, r.clip) == (1568, 160, (16, 224, 224))
    assert rows["vit_nano"].paper_params_m is None and rows["vit_nano"].visible == 512 - 8 * int(0.9 * 64)
    assert flops.model_sizes(0.75, ("vit_base",))[0].visible == 1568 - 8 * 147
    with pytest.raises(ValueError, match="unknown architecture"):
        flops.model_sizes(archs=("vit_giant",))


def test_encoder_params_agree_with_a_built_model():
    from mvd_lib.vit import VideoViT

    cfg = vit_config("vit_micro")
    model = VideoViT(cfg, seed=0)  # final norm instead of fc_norm: the same count
    assert flops.encoder_params(cfg) == sum(p.numel() for p in model.parameters())
    d = 768  # ViT-B by hand: tubelet embedding; per block qkv (q and v biases only), projection, 2 norms, MLP; fc_norm
    block = (d * 3 * d + 2 * d) + (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert flops.encoder_params(vit_config("vit_base")) == (1536 * d + d) + 12 * block + 2 * d
    assert torch.get_default_device().type == "cpu"  # the meta build leaves the default device alone
