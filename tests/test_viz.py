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


# ================================================================================ analysis companions
def _nano():
    from mvd_lib.config import vit_config

    return vit_config("vit_nano", num_frames=4, img_size=16)  # grid (2, 4, 4)


def _video(n: int = 1) -> torch.Tensor:
    from mvd_lib.rng import generator

    return torch.randn(n, 3, 4, 16, 16, generator=generator(0))


def test_similarity_figure_rows_and_saving(tmp_path):
    import matplotlib.pyplot as plt

    from mvd_lib.analysis import cross_frame_similarity
    from mvd_lib.vit import VideoViT

    sim = cross_frame_similarity(VideoViT(_nano()), _video(3))
    fig = viz.similarity_figure({"student": sim, "teacher": sim}, save=True, figures_dir=tmp_path)
    assert len(fig.axes) == 2 * 2 + 1  # raw and centred per model, one colour bar
    assert fig.axes[1].get_title() == "student slot-centred"
    assert (tmp_path / "frame_similarity.png").exists()
    # each heatmap is drawn with the other axes hidden and the layout paused (viz._heatmap): both come back
    assert all(ax.get_visible() for ax in fig.axes)
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    plt.close(fig)
    fig = viz.similarity_figure(sim, save="fig3_one", figures_dir=tmp_path)
    assert len(fig.axes) == 3 and (tmp_path / "fig3_one.png").exists()
    plt.close(fig)


def test_reconstruction_figure_and_gif(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from mvd_lib.analysis import reconstructions
    from mvd_lib.build import build_mae, build_videomae

    video = _video()
    views = reconstructions(build_videomae("vit_nano", _nano()), video, (0.5, 0.75))
    fig = viz.reconstruction_figure(video, views, save=True, figures_dir=tmp_path)
    assert len(fig.axes) == (1 + 2 * 2) * 4  # original + (masked, reconstruction) per ratio, 4 frames each
    assert fig.axes[4].get_ylabel() == "masked 50%" and fig.axes[8].get_ylabel() == "reconstruction 50%"
    assert (tmp_path / "reconstructions.png").exists()
    plt.close(fig)
    path = viz.save_reconstruction_gif(video, views[1], tmp_path / "recon.gif", scale=2)
    with Image.open(path) as im:
        assert im.n_frames == 4 and im.size == (2 * (3 * 16 + 2), 2 * 16)
    images = video[:, :, 0]
    views = reconstructions(build_mae("vit_nano", _nano()), images, (0.75,))
    fig = viz.reconstruction_figure(images, views)
    assert len(fig.axes) == 3  # one frame per row
    plt.close(fig)


def test_target_maps_figure(tmp_path):
    import matplotlib.pyplot as plt

    from mvd_lib.analysis import target_maps
    from mvd_lib.build import build_distillation
    from mvd_lib.distill import teacher_targets
    from mvd_lib.masking import tube_mask
    from mvd_lib.rng import generator

    student, teachers = build_distillation("vit_nano", num_frames=4, img_size=16)
    video = _video(2)
    mask = tube_mask(2, _nano().grid, 0.5, generator(0))
    maps = target_maps(student, video, mask, teacher_targets(teachers, video), "vid")
    fig = viz.target_maps_figure(maps, index=1, save=True, figures_dir=tmp_path)
    assert len(fig.axes) == 3 * 2 + 1  # target / prediction / error rows x 2 slots, one colour bar
    assert [fig.axes[i].get_ylabel() for i in (0, 2, 4)] == ["target", "prediction", "1 - cos"]
    assert (tmp_path / "target_maps_vid.png").exists()
    plt.close(fig)


def test_attention_figures(tmp_path):
    import matplotlib.pyplot as plt

    from mvd_lib.analysis import attention_distance, attention_maps, attention_rollout, rollout_map
    from mvd_lib.vit import VideoViT

    cfg = _nano()
    video = _video()
    maps = attention_maps(VideoViT(cfg), video)
    heat = rollout_map(attention_rollout(maps), cfg.grid)[0]  # [2, 4, 4]
    fig = viz.rollout_figure(heat, video[0], tubelet=2, save=True, figures_dir=tmp_path)
    assert len(fig.axes) == 2 * 2 + 1 and len(fig.axes[0].images) == 1  # frames row, heatmap row, colour bar
    plt.close(fig)
    fig = viz.rollout_figure(heat.numpy())
    assert len(fig.axes) == 2 + 1
    plt.close(fig)
    fig = viz.attention_distance_figure(attention_distance(maps, cfg.grid), save=True, figures_dir=tmp_path)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].collections) == cfg.depth  # one scatter per layer
    assert {p.name for p in tmp_path.iterdir()} == {"attention_rollout.png", "attention_distance.png"}
    plt.close(fig)


def test_curves_figure(tmp_path):
    import matplotlib.pyplot as plt

    from mvd_lib.analysis import Curves

    metrics = {"loss_curve": [3.0, 2.0, 1.0, 0.5], "parts_curve": {"img": [2.0, 1.0, 0.5, 0.25]},
               "lr_curve": [1e-4, 2e-4, 2e-4, 1e-4], "steps_per_epoch": 2,
               "epoch_metrics": [{"epoch": 1, "step": 2, "probe_motion": 30.0},
                                 {"epoch": 2, "step": 4, "probe_motion": 40.0}]}
    fig = viz.curves_figure(Curves.from_metrics(metrics), smooth=2, save=True, figures_dir=tmp_path)
    assert len(fig.axes) == 3  # loss panel, its lr twin, probe panel
    assert fig.axes[0].get_yscale() == "log" and [ln.get_label() for ln in fig.axes[0].lines] == ["loss", "img"]
    assert (tmp_path / "curves.png").exists()
    plt.close(fig)
    fig = viz.curves_figure(Curves.from_metrics({"loss_curve": [1.0, 0.0]}))
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "linear"  # no probes; a zero loss is not log-able
    plt.close(fig)
