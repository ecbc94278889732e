"""Clip views: layout conversion, frame strips, GIFs, and the one figure-saving helper."""
import matplotlib

matplotlib.use("Agg")

import mvd_lib  # noqa: E402,F401  (installs the torchvision guard)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mvd_lib import synthetic as S  # noqa: E402
from mvd_lib import transforms as T  # noqa: E402
from mvd_lib import viz  # noqa: E402

CLIP = S.make_clip(S.SyntheticConfig(frames=8), "train", 0)[0]  # uint8 [8, 32, 32, 3]


def test_to_uint8_frames_round_trips_dataset_tensors():
    video = T.normalize(T.to_cthw(T.frames_to_float(CLIP)))  # what the datasets return: [C, T, H, W]
    np.testing.assert_array_equal(viz.to_uint8_frames(video), CLIP)
    np.testing.assert_array_equal(viz.to_uint8_frames(CLIP), CLIP)
    raw = T.to_cthw(T.frames_to_float(CLIP))  # [0, 1] floats, not normalized
    np.testing.assert_array_equal(viz.to_uint8_frames(raw, normalized=False), CLIP)
    assert viz.to_uint8_frames(video[:, 0]).shape == (1, 32, 32, 3)  # an image [C, H, W]
    with pytest.raises(ValueError):
        viz.to_uint8_frames(torch.zeros(4, 8, 32, 32))


def test_frame_strip_layout():
    import matplotlib.pyplot as plt

    fig = viz.frame_strip([CLIP, CLIP[:4]], ["a / right", "b / left"], title="t")
    assert len(fig.axes) == 2 * 8
    assert fig.axes[0].get_ylabel() == "a / right" and fig.axes[8].get_ylabel() == "b / left"
    assert len(fig.axes[8].images) == 1 and len(fig.axes[12].images) == 0  # the short clip leaves blanks
    plt.close(fig)
    fig = viz.frame_strip(S.make_clip(S.SyntheticConfig(), "train", 0)[0], max_frames=4)
    assert [ax.get_title() for ax in fig.axes] == ["t=0", "t=5", "t=10", "t=15"]
    plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        viz.frame_strip([CLIP, CLIP], ["only one"])


def test_save_figure_redirects_and_is_deterministic(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    fig = viz.frame_strip(CLIP, "clip")
    path = viz.save_figure(fig, "strip", figures_dir=tmp_path / "a")
    assert path == tmp_path / "a" / "strip.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv(viz.FIGURES_ENV, str(tmp_path / "b"))
    again = viz.save_figure(fig, "strip.png")
    assert again == tmp_path / "b" / "strip.png"
    assert again.read_bytes() == path.read_bytes()  # same figure, same file
    monkeypatch.delenv(viz.FIGURES_ENV)
    assert viz.resolve_figures_dir() == viz.REPO_ROOT / "figures"
    for bad in ("../escape", "sub/dir", "", ".hidden", "a b"):
        with pytest.raises(ValueError, match="plain file name"):
            viz.save_figure(fig, bad, figures_dir=tmp_path)
    plt.close(fig)


def test_save_gif(tmp_path):
    from PIL import Image

    path = viz.save_gif(CLIP, tmp_path / "gifs" / "clip.gif", fps=4, scale=3)
    with Image.open(path) as im:
        assert im.n_frames == 8 and im.size == (96, 96) and im.info["duration"] == 250


def test_synthetic_gallery_one_row_per_motion():
    import matplotlib.pyplot as plt

    cfg = S.SyntheticConfig(frames=4)
    fig = viz.synthetic_gallery(cfg, max_frames=4)
    assert len(fig.axes) == cfg.num_motions * 4
    labels = [fig.axes[r * 4].get_ylabel() for r in range(cfg.num_motions)]
    assert [lab.split(" / ")[1] for lab in labels] == list(cfg.motions)
    plt.close(fig)
