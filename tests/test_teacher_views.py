"""Library pieces the teacher notebooks (03, 04) show: shorter budgets of one recipe (analysis.shorter_budgets), probe
runs as table rows (analysis.probe_rows), still-image grids and MAE reconstructions of several stills side by side
(viz.image_grid, viz.image_reconstruction_figure)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mvd_lib import viz  # noqa: E402
from mvd_lib import synthetic as S  # noqa: E402
from mvd_lib import transforms as T  # noqa: E402
from mvd_lib.analysis import probe_rows, reconstructions, shorter_budgets  # noqa: E402
from mvd_lib.build import build_mae  # noqa: E402
from mvd_lib.config import vit_config  # noqa: E402

CFG = S.SyntheticConfig(frames=8, height=16, width=16)
STILLS = S.SyntheticImages(6, CFG)
IMAGES = torch.stack([STILLS[i]["image"] for i in range(6)])  # [6, 3, 16, 16], ImageNet-normalized


# ---------------------------------------------------------------------------------------------- budgets
@pytest.mark.parametrize("epochs, warmup, fractions, expected", [
    (5, 1, (0.25,), [(1, 0)]),  # quick image teacher: floor(1.25) = 1 epoch, floor(1 * 1 / 5) = 0 warmup
    (40, 4, (0.25,), [(10, 1)]),  # laptop video teacher
    (100, 10, (0.1, 0.25, 0.5), [(10, 1), (25, 2), (50, 5)]),
    (2, 1, (0.25, 0.5), [(1, 0)]),  # both fractions give 1 epoch: one budget
    (10, 1, (0.5, 0.1, 0.1), [(1, 0), (5, 0)]),  # ascending, duplicates dropped
    (3, 1, (1.0, 0.9), [(2, 0)]),  # the full budget is the profile's run itself: dropped
    (1, 0, (0.25,), []),  # nothing shorter than one epoch
])
def test_shorter_budgets_known_answers(epochs, warmup, fractions, expected):
    got = shorter_budgets(epochs, warmup, fractions)
    assert [(o["optim.epochs"], o["optim.warmup_epochs"]) for o in got] == expected


def test_shorter_budgets_are_valid_run_overrides():
    """Applied in order to the laptop profile's teachers (warmup 2 of 20 epochs, 4 of 40), each override gives a
    shorter run of the same recipe; the warmup goes first, since a warmup longer than the epochs is refused."""
    from mvd_lib.profiles import run_config

    for verb in ("pretrain-image", "pretrain-video"):
        full = run_config(verb, "laptop")
        for overrides in shorter_budgets(full.optim.epochs, full.optim.warmup_epochs, (0.05, 0.25, 0.5)):
            assert list(overrides) == ["optim.warmup_epochs", "optim.epochs"]
            short = run_config(verb, "laptop", overrides=overrides)
            assert short.optim.epochs == overrides["optim.epochs"] < full.optim.epochs
            assert short.optim.warmup_epochs / short.optim.epochs <= full.optim.warmup_epochs / full.optim.epochs
            assert short.optim.lr == full.optim.lr and short.optim.min_lr == full.optim.min_lr  # the same recipe
            assert short.model == full.model and short.data == full.data and short.mask_ratio == full.mask_ratio


def test_shorter_budgets_refuse_bad_settings():
    with pytest.raises(ValueError, match="fractions"):
        shorter_budgets(10, 1, (0.0,))
    with pytest.raises(ValueError, match="fractions"):
        shorter_budgets(10, 1, (1.5,))
    with pytest.raises(ValueError, match="warmup_epochs"):
        shorter_budgets(10, 11)
    with pytest.raises(ValueError, match="epochs"):
        shorter_budgets(0, 0)


# ---------------------------------------------------------------------------------------------- still images
def test_image_grid_layout_and_pixels():
    import matplotlib.pyplot as plt

    uint8 = np.stack([STILLS.raw(i)[0] for i in range(3)])  # [3, 16, 16, 3]
    fig = viz.image_grid([IMAGES, uint8], ["float", "uint8"], ["a", "b", "c"], title="stills")
    axes = np.array(fig.axes).reshape(2, 6)
    assert axes[0, 0].get_ylabel() == "float" and axes[1, 0].get_ylabel() == "uint8"
    assert [ax.get_title() for ax in axes[0, :4]] == ["a", "b", "c", ""]
    assert all(len(ax.images) == 1 for ax in axes[0]) and [len(ax.images) for ax in axes[1]] == [1, 1, 1, 0, 0, 0]
    # the float row is drawn denormalized: the same pixels as the generator's uint8 stills
    np.testing.assert_array_equal(np.asarray(axes[0, 1].images[0].get_array()), STILLS.raw(1)[0])
    np.testing.assert_array_equal(np.asarray(axes[1, 2].images[0].get_array()), uint8[2])
    plt.close(fig)
    raw = T.denormalize(IMAGES[0])[None]  # [1, 3, 16, 16] in [0, 1]
    fig = viz.image_grid([raw], normalized=False)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), STILLS.raw(0)[0])
    plt.close(fig)


def test_image_grid_refuses_bad_rows():
    with pytest.raises(ValueError, match=r"\[K, C, H, W\]"):
        viz.image_grid([IMAGES[0]])  # one image, not a row of them
    with pytest.raises(ValueError, match="row labels"):
        viz.image_grid([IMAGES], ["a", "b"])
    with pytest.raises(ValueError, match="column titles"):
        viz.image_grid([IMAGES[:2]], col_titles=["a", "b", "c"])


def test_image_reconstruction_figure_shows_several_stills(tmp_path):
    import matplotlib.pyplot as plt

    mae = build_mae("vit_nano", vit_config("vit_nano", num_frames=8, img_size=16, patch_size=4, tubelet_size=2))
    views = reconstructions(mae, IMAGES, (0.5, 0.75), seed=0)
    fig = viz.image_reconstruction_figure(IMAGES, views, max_images=4, col_titles=list("abcdef"), save=True,
                                          figures_dir=tmp_path)
    axes = np.array(fig.axes).reshape(5, 4)  # original + (masked, reconstruction) per ratio; 4 stills each
    assert [axes[r, 0].get_ylabel() for r in range(5)] == [
        "original", "masked 50%", "reconstruction 50%", "masked 75%", "reconstruction 75%"]
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c", "d"]
    # the reconstruction row draws the reconstruction of each still, in order
    np.testing.assert_array_equal(np.asarray(axes[4, 3].images[0].get_array()),
                                  viz.to_uint8_frames(views[1].reconstruction[3])[0])
    assert (tmp_path / "image_reconstructions.png").exists()
    plt.close(fig)
    video = IMAGES.transpose(0, 1)[None]  # [1, C, 6, H, W]: a clip belongs to reconstruction_figure
    with pytest.raises(ValueError, match="reconstruction_figure"):
        viz.image_reconstruction_figure(video, views)
    with pytest.raises(ValueError, match="does not belong"):
        viz.image_reconstruction_figure(IMAGES[:3], views)


# ---------------------------------------------------------------------------------------------- probe rows
def _result(top1: float, classes: int, n: int = 40) -> dict:
    return {"top1": top1, "chance": 100 / classes, "num_test": n, "protocol": "linear"}


def test_probe_rows_flatten_probe_metrics_in_order():
    teacher = {"probe": {"linear": {"appearance": {"mean": _result(50.0, 16), "time": _result(62.5, 16)},
                                    "motion": {"mean": _result(10.0, 10), "time": _result(30.0, 10)}},
                         "attentive": {"motion": {"tokens": _result(45.0, 10)}}}}
    floor = {"probe": {"linear": {"motion": {"time": _result(12.5, 10, 16)}}}}
    rows = probe_rows({"teacher": teacher, "random init": floor})
    assert [(r["encoder"], r["protocol"], r["task"], r["pooling"]) for r in rows] == [
        ("teacher", "linear", "appearance", "mean"), ("teacher", "linear", "appearance", "time"),
        ("teacher", "linear", "motion", "mean"), ("teacher", "linear", "motion", "time"),
        ("teacher", "attentive", "motion", "tokens"), ("random init", "linear", "motion", "time")]
    assert [r["top1"] for r in rows] == [50.0, 62.5, 10.0, 30.0, 45.0, 12.5]
    assert rows[0]["chance"] == 6.25 and rows[-1]["chance"] == 10.0 and rows[-1]["num_test"] == 16
    assert all(r["run"] == "" for r in rows)
    with pytest.raises(KeyError, match="random init: no probe results"):
        probe_rows({"random init": {"loss_curve": [1.0]}})


def test_probe_rows_read_a_probe_run(tmp_path):
    from mvd_lib import runner

    p = runner.profile("smoke")
    probe = runner.run("probe", p, encoder="random", root=tmp_path, progress=False)
    rows = probe_rows({"random init": probe})
    metrics = probe.metrics["probe"]["linear"]
    assert len(rows) == 4 and {r["run"] for r in rows} == {probe.hash}
    assert [r["top1"] for r in rows] == [metrics[t][q]["top1"] for t in ("appearance", "motion") for q in ("mean", "time")]
