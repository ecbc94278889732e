"""Notebook-friendly views of clips: frame strips, GIFs, and the one helper that saves figures.

Clips are shown as frame strips (matplotlib) or GIFs so that they render without a kernel (STYLE.md, "the
notebooks"). Figures go under the repository's `figures/` folder through `save_figure` only, with
deterministic names; `figures_dir=` or the MVD_FIGURES_DIR environment variable redirect them (tests do).

Accepted clip layouts (see `to_uint8_frames`): uint8 `[T, H, W, 3]` (generator / decord output) and float
`[C, T, H, W]` tensors or arrays as the datasets return them (ImageNet-normalized unless `normalized=False`).

The figures of the analysis arrays (analysis.py) are drawn by its companions below: cross-frame similarity
(paper Figure 3), reconstructions at several mask ratios, teacher target vs student prediction, attention
rollout and distances, and run curves. Each returns a Figure and saves it through `save_figure` when `save`
is True (under its default name) or a name. Heatmaps are drawn with seaborn.

Still images (the image teacher's data) are drawn as grids (`image_grid`), and MAE reconstructions of
several stills side by side (`image_reconstruction_figure`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from mvd_lib import transforms as T

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mvd_lib.analysis import AttentionDistance, Curves, FrameSimilarity, MaskedReconstruction, TargetMaps
    from mvd_lib.synthetic import SyntheticConfig

FIGURES_ENV = "MVD_FIGURES_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def to_uint8_frames(video: np.ndarray | torch.Tensor, normalized: bool = True) -> np.ndarray:
    """Any clip -> uint8 `[T, H, W, 3]`. uint8 input must be `[T, H, W, 3]` (or `[H, W, 3]`, one frame); float
    input is `[C, T, H, W]` (or `[C, H, W]`), denormalized with ImageNet mean/std when `normalized`."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu()
        if video.dtype == torch.uint8:
            video = video.numpy()
    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        if video.ndim == 3:
            video = video[None]
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"uint8 clips must be [T, H, W, 3], got {video.shape}")
        return video
    x = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video).float()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[0] != 3:
        raise ValueError(f"float clips must be [C, T, H, W] with C = 3, got {tuple(x.shape)}")
    if normalized:
        x = T.denormalize(x)
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 3, 0).numpy()


def frame_strip(video: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
                labels: str | Sequence[str] | None = None, title: str | None = None, max_frames: int = 16,
                normalized: bool = True, frame_size: float = 0.8, show_time: bool = True) -> "Figure":
    """A matplotlib figure with one row of frames per clip.

    video: one clip or a list of clips (same frame count not required); layouts as in `to_uint8_frames`.
    labels: one text per row (shown at the left), e.g. "digit_3 / rotate_cw".
    max_frames: longer clips show `max_frames` evenly spaced frames, labelled with their time index."""
    clips = list(video) if isinstance(video, (list, tuple)) else [video]
    clips = [to_uint8_frames(c, normalized) for c in clips]
    if labels is None:
        labels = [""] * len(clips)
    elif isinstance(labels, str):
        labels = [labels]
    if len(labels) != len(clips):
        raise ValueError(f"{len(labels)} labels for {len(clips)} clips")
    cols = min(max_frames, max(len(c) for c in clips))
    shown = [np.unique(np.linspace(0, len(clip) - 1, min(cols, len(clip))).round().astype(int)) for clip in clips]
    return _image_rows([[clip[i] for i in idx] for clip, idx in zip(clips, shown)], labels,
                       [f"t={i}" for i in shown[0]] if show_time else None, title, frame_size, (1.2, 0.4))


def _image_rows(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], col_titles: Sequence[str] | None,
                title: str | None, size: float, pad: tuple[float, float]) -> "Figure":
    """A figure of uint8 images `[H, W, 3]` in rows (rows may differ in length; the cells after a short row stay
    blank), a label at the left of each row, `col_titles` above the first row, `size` inches per cell plus
    `pad` (width, height) for the labels and the title. The one grid behind `frame_strip` and `image_grid`."""
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(size * cols + pad[0], size * len(rows) + pad[1]),
                             squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for c in range(cols):
            ax = axes[r, c]
            _bare(ax)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=7)
        if label:
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def synthetic_gallery(cfg: "SyntheticConfig | None" = None, split: str = "train", max_frames: int = 8) -> "Figure":
    """Frame strip of one synthetic clip per motion class (rows), appearances cycling through the classes,
    each row labelled "appearance / motion". `cfg`: a SyntheticConfig (default settings when None)."""
    from mvd_lib import synthetic as S

    cfg = cfg or S.SyntheticConfig()
    clips, labels = [], []
    for m in range(cfg.num_motions):
        a = (3 * m + 1) % cfg.num_appearance
        (index,) = S.find_clips(cfg, split, motion=m, appearance=a)
        video, a, m = S.make_clip(cfg, split, index)
        clips.append(video)
        labels.append(f"{cfg.appearance_names[a]} / {cfg.motions[m]}")
    return frame_strip(clips, labels, title=f"synthetic benchmark, {split} split: one clip per motion class",
                       max_frames=max_frames)


def save_gif(video: np.ndarray | torch.Tensor, path: str | Path, fps: float = 8.0, scale: int = 4,
             normalized: bool = True) -> Path:
    """Write a looping GIF of one clip, each frame upscaled `scale` times (nearest neighbour). Returns the path."""
    from PIL import Image

    frames = to_uint8_frames(video, normalized)
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def resolve_figures_dir(figures_dir: str | Path | None = None) -> Path:
    """Where figures go: the argument, else $MVD_FIGURES_DIR, else the repository's figures/ folder."""
    if figures_dir is not None:
        return Path(figures_dir)
    env = os.environ.get(FIGURES_ENV)
    return Path(env) if env else REPO_ROOT / "figures"


def save_figure(fig: "Figure", name: str, figures_dir: str | Path | None = None, dpi: int = 100) -> Path:
    """Save `fig` as `<figures dir>/<name>.png` (the one place figures are written) and return the path.

    `name` is a plain file name ("synthetic_strip" or "synthetic_strip.png"): letters, digits, `_`, `-`, `.`.
    The PNG carries no software/version metadata, so the same figure gives the same file."""
    stem = name[:-4] if name.lower().endswith(".png") else name
    if not _NAME.match(stem):
        raise ValueError(f"figure name {name!r} must be a plain file name of letters, digits, '_', '-', '.'")
    folder = resolve_figures_dir(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None}, bbox_inches="tight")
    return path


# ================================================================================ analysis companions
def _finish(fig: "Figure", save: bool | str, default_name: str, figures_dir: str | Path | None) -> "Figure":
    """Save `fig` through `save_figure` when asked (True: under `default_name`; a string: under that name)."""
    if save:
        save_figure(fig, default_name if save is True else str(save), figures_dir)
    return fig


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _heatmap(data: np.ndarray, ax: "Axes", **kwargs) -> None:
    """`seaborn.heatmap` on `ax`, drawn as if `ax` were alone: seaborn draws the whole figure once per heatmap
    (to check tick-label overlap), so a figure of n heatmaps cost n full draws, each running the constrained
    layout over every axes drawn so far. The other axes are hidden and the layout engine paused for that draw;
    both come back before returning, and the layout runs once, when the figure is drawn or saved."""
    import seaborn as sns

    fig = ax.figure
    engine, others = fig.get_layout_engine(), [a for a in fig.axes if a is not ax and a.get_visible()]
    fig.set_layout_engine("none")
    for a in others:
        a.set_visible(False)
    try:
        sns.heatmap(data, ax=ax, **kwargs)
    finally:
        for a in others:
            a.set_visible(True)
        fig.set_layout_engine(engine)


def similarity_figure(results: "FrameSimilarity | Mapping[str, FrameSimilarity]", annotate: bool | None = None,
                      save: bool | str = False, figures_dir: str | Path | None = None) -> "Figure":
    """Paper Figure 3: one row per model ({label: FrameSimilarity}), columns raw and slot-centred T' x T'
    cosine-similarity heatmaps on a shared [-1, 1] scale, one colour bar. Default name "frame_similarity"."""
    import matplotlib.pyplot as plt

    rows = dict(results) if isinstance(results, Mapping) else {"": results}
    fig, axes = plt.subplots(len(rows), 2, figsize=(6.4, 2.9 * len(rows)), squeeze=False, layout="constrained")
    for r, (label, sim) in enumerate(rows.items()):
        n = sim.raw.shape[0]
        for c, (name, mat) in enumerate((("raw", sim.raw), ("slot-centred", sim.centred))):
            ax = axes[r, c]
            _heatmap(mat, ax=ax, vmin=-1, vmax=1, cmap="RdBu_r", square=True, cbar=False,
                     annot=n <= 8 if annotate is None else annotate, fmt=".2f", annot_kws={"size": 7})
            ax.set_title(f"{label} {name}".strip(), fontsize=9)
            ax.set_xlabel("time slot")
            ax.set_ylabel("time slot" if c == 0 else "")
    fig.colorbar(axes[0, 0].collections[0], ax=axes.ravel().tolist(), shrink=0.8, label="cosine similarity")
    return _finish(fig, save, "frame_similarity", figures_dir)


def reconstruction_figure(original: torch.Tensor, views: "Sequence[MaskedReconstruction]", index: int = 0,
                          max_frames: int = 8, title: str | None = None, save: bool | str = False,
                          figures_dir: str | Path | None = None) -> "Figure":
    """Frame strip: the original, then a masked-input row and a reconstruction row per mask ratio.
    original: [B, C, T, H, W] or images [B, C, H, W] (sample `index` is shown); views: `analysis.reconstructions`.
    Default name "reconstructions"."""
    clips = [original[index]]
    labels = ["original"]
    for v in views:
        clips += [v.masked[index], v.reconstruction[index]]
        labels += [f"masked {v.ratio:.0%}", f"reconstruction {v.ratio:.0%}"]
    fig = frame_strip(clips, labels, title=title, max_frames=max_frames)
    return _finish(fig, save, "reconstructions", figures_dir)


def save_reconstruction_gif(original: torch.Tensor, view: "MaskedReconstruction", path: str | Path, index: int = 0,
                            fps: float = 4.0, scale: int = 4) -> Path:
    """A looping GIF of original | masked input | reconstruction side by side (sample `index`). Returns the path."""
    parts = [to_uint8_frames(x[index]) for x in (original, view.masked, view.reconstruction)]
    gap = np.full((*parts[0].shape[:2], 1, 3), 255, dtype=np.uint8)  # a white column between the clips
    return save_gif(np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=2), path, fps=fps, scale=scale)


def target_maps_figure(maps: "TargetMaps", index: int = 0, title: str | None = None, save: bool | str = False,
                       figures_dir: str | Path | None = None) -> "Figure":
    """Rows: teacher target (PCA colours), student prediction (same projection), cosine error at masked tokens;
    columns: time slots; one colour bar for the error. Default name "target_maps_<branch>"."""
    import matplotlib.pyplot as plt

    target, pred, error = maps.target[index], maps.prediction[index], maps.error[index]
    t = target.shape[0]
    vmax = float(np.nanmax(error)) if np.isfinite(error).any() else 1.0
    fig, axes = plt.subplots(3, t, figsize=(1.6 * t + 1.4, 5.0), squeeze=False, layout="constrained")
    for s in range(t):
        axes[0, s].imshow(target[s], interpolation="nearest")
        axes[1, s].imshow(pred[s], interpolation="nearest")
        _heatmap(error[s], ax=axes[2, s], vmin=0.0, vmax=max(vmax, 1e-6), cmap="magma", cbar=False, square=True)
        axes[0, s].set_title(f"slot {s}", fontsize=8)
        for r in range(3):
            _bare(axes[r, s])
    for r, label in enumerate(("target", "prediction", "1 - cos")):
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.colorbar(axes[2, 0].collections[0], ax=axes[2, :].tolist(), shrink=0.9, label="1 - cos")
    branch = f" ({maps.branch})" if maps.branch else ""
    fig.suptitle(title or f"teacher target vs student prediction{branch}; PCA explains "
                 f"{100 * float(maps.explained.sum()):.0f}% of the targets' variance", fontsize=9)
    return _finish(fig, save, f"target_maps_{maps.branch}" if maps.branch else "target_maps", figures_dir)


def rollout_figure(rollout_map: np.ndarray | torch.Tensor, video: torch.Tensor | None = None, tubelet: int = 2,
                   save: bool | str = False, figures_dir: str | Path | None = None) -> "Figure":
    """Attention-rollout heatmaps, one per time slot (`analysis.rollout_map` of one clip: [T', H', W']), on a
    shared scale; with `video` ([C, T, H, W]) a row of each slot's front frame above them. Default name
    "attention_rollout"."""
    import matplotlib.pyplot as plt

    heat = np.asarray(rollout_map.detach().cpu() if isinstance(rollout_map, torch.Tensor) else rollout_map)
    t = heat.shape[0]
    rows = 1 if video is None else 2
    fig, axes = plt.subplots(rows, t, figsize=(1.6 * t + 1.2, 1.7 * rows + 0.3), squeeze=False, layout="constrained")
    if video is not None:
        frames = to_uint8_frames(video)
        for s in range(t):
            axes[0, s].imshow(frames[s * tubelet], interpolation="nearest")
            _bare(axes[0, s])
    for s in range(t):
        ax = axes[rows - 1, s]
        _heatmap(heat[s], ax=ax, vmin=float(heat.min()), vmax=float(heat.max()), cmap="viridis", cbar=False,
                    square=True)
        _bare(ax)
        axes[0, s].set_title(f"slot {s}", fontsize=8)
    fig.colorbar(axes[-1, 0].collections[0], ax=axes.ravel().tolist(), shrink=0.8, label="rollout")
    return _finish(fig, save, "attention_rollout", figures_dir)


def attention_distance_figure(distance: "AttentionDistance", save: bool | str = False,
                              figures_dir: str | Path | None = None) -> "Figure":
    """Scatter of mean spatial vs temporal attention distance, one point per head, coloured by layer.
    Default name "attention_distance"."""
    import matplotlib.pyplot as plt

    layers = distance.spatial.shape[0]
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(4.6, 3.6), layout="constrained")
    for layer in range(layers):
        ax.scatter(distance.spatial[layer], distance.temporal[layer], s=22, label=f"layer {layer + 1}",
                   color=cmap(layer / max(1, layers - 1)))
    ax.set_xlabel("mean spatial distance (patches)")
    ax.set_ylabel("mean temporal distance (time slots)")
    ax.legend(fontsize=7, ncol=1 + layers // 8, frameon=False)
    return _finish(fig, save, "attention_distance", figures_dir)


def curves_figure(curves: "Curves", smooth: int = 1, title: str | None = None, save: bool | str = False,
                  figures_dir: str | Path | None = None) -> "Figure":
    """Loss and its parts (log axis, smoothed over `smooth` steps) with the learning rate on a twin axis; probe
    accuracies in a second panel when the run has any. x axis: optimizer steps. Default name "curves"."""
    import matplotlib.pyplot as plt

    c = curves.smoothed(smooth) if smooth > 1 else curves
    panels = 2 if c.probes else 1
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 2.8 * panels), sharex=True, squeeze=False,
                             layout="constrained")
    ax = axes[0, 0]
    ax.plot(c.step, c.loss, color="black", label="loss")
    for name, values in c.parts.items():
        ax.plot(c.step, values, lw=1, label=name)
    positive = all(np.all(v > 0) for v in (c.loss, *c.parts.values()))
    ax.set_yscale("log" if positive else "linear")
    ax.set_ylabel("loss" + (f" (mean of {smooth} steps)" if smooth > 1 else ""))
    twin = ax.twinx()
    if c.lr.size:
        twin.plot(c.step, c.lr, color="grey", ls="--", lw=1, label="lr")
    twin.set_ylabel("learning rate")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, frameon=False)
    if c.probes:
        pax = axes[1, 0]
        for name, (steps, values) in c.probes.items():
            pax.plot(steps, values, marker="o", label=name)
        pax.set_ylabel("probe top-1 (%)")
        pax.legend(fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel("optimizer step")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, save, "curves", figures_dir)


# ----------------------------------------------------------------------------------------------------------
# notebook views: masked clips (what the encoder sees) and rows of embedded GIFs
# ----------------------------------------------------------------------------------------------------------
def masked_frames(video: np.ndarray | torch.Tensor, mask: torch.Tensor, grid: tuple[int, int, int],
                  tubelet_size: int, patch_size: int, fill: tuple[int, int, int] = (128, 128, 128),
                  normalized: bool = True) -> np.ndarray:
    """One clip with its masked tubelets painted `fill`: uint8 `[T, H, W, 3]`.

    video: one clip (layouts as in `to_uint8_frames`); mask: `[N]` or `[1, N]` bool, True = masked, on the
    (T', H', W') token `grid` (`masking.mask_to_pixels` expands it to pixels)."""
    from mvd_lib.masking import mask_to_pixels

    frames = to_uint8_frames(video, normalized).copy()
    pixels = mask_to_pixels(mask.reshape(1, -1).cpu(), grid, tubelet_size, patch_size)[0].numpy()  # [T, H, W]
    if pixels.shape != frames.shape[:3]:
        raise ValueError(f"mask covers {pixels.shape} pixels (T, H, W) but the clip is {frames.shape[:3]}")
    frames[pixels] = np.asarray(fill, dtype=np.uint8)
    return frames


def gif_row_html(paths: Sequence[str | Path], captions: Sequence[str] | None = None, width: int = 128) -> str:
    """HTML showing GIF files side by side, each embedded as a data URL (renders without a kernel or the files),
    with a caption under each. Display it with `IPython.display.HTML`."""
    import base64
    import html

    captions = list(captions) if captions is not None else [Path(p).stem for p in paths]
    if len(captions) != len(paths):
        raise ValueError(f"{len(captions)} captions for {len(paths)} GIFs")
    cells = []
    for path, caption in zip(paths, captions):
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        cells.append(f'<figure style="display:inline-block;margin:4px;text-align:center">'
                     f'<img src="data:image/gif;base64,{data}" width="{width}" style="image-rendering:pixelated"/>'
                     f'<figcaption style="font-size:small">{html.escape(caption)}</figcaption></figure>')
    return "<div>" + "".join(cells) + "</div>"


# ----------------------------------------------------------------------------------------------------------
# still images (the image teacher's data): grids and masked reconstructions
# ----------------------------------------------------------------------------------------------------------
def image_grid(rows: Sequence[np.ndarray | torch.Tensor], row_labels: Sequence[str] | None = None,
               col_titles: Sequence[str] | None = None, title: str | None = None, normalized: bool = True,
               image_size: float = 0.9) -> "Figure":
    """A grid of still images: one row per entry of `rows`, each a batch of images, float `[K, C, H, W]`
    (ImageNet-normalized unless `normalized=False`) or uint8 `[K, H, W, 3]`. Rows may differ in length (the
    cells after a short row stay blank). `row_labels` go at the left, `col_titles` above the first row."""

    def images_of(batch: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        if batch.ndim != 4:
            raise ValueError(f"a row of images must be [K, C, H, W] or uint8 [K, H, W, 3], got {tuple(batch.shape)}")
        return [to_uint8_frames(image, normalized)[0] for image in batch]

    grid = [images_of(r) for r in rows]
    if not grid or not any(grid):
        raise ValueError("no images to show")
    labels = list(row_labels) if row_labels is not None else [""] * len(grid)
    if len(labels) != len(grid):
        raise ValueError(f"{len(labels)} row labels for {len(grid)} rows")
    cols = max(len(r) for r in grid)
    if col_titles is not None and len(col_titles) > cols:
        raise ValueError(f"{len(col_titles)} column titles for {cols} columns")
    return _image_rows(grid, labels, col_titles, title, image_size, (1.4, 0.5))


def image_reconstruction_figure(images: torch.Tensor, views: "Sequence[MaskedReconstruction]", max_images: int = 8,
                                col_titles: Sequence[str] | None = None, title: str | None = None,
                                save: bool | str = False, figures_dir: str | Path | None = None) -> "Figure":
    """MAE reconstructions of several stills side by side (`reconstruction_figure` shows one sample per row):
    rows original, then masked input and reconstruction per mask ratio; columns the first `max_images` stills.
    images: `[B, C, H, W]`; views: `analysis.reconstructions` of them. Default name "image_reconstructions"."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}; clips go to reconstruction_figure")
    rows, labels = [images[:max_images]], ["original"]
    for v in views:
        if v.reconstruction.shape != images.shape:
            raise ValueError(f"a view of shape {tuple(v.reconstruction.shape)} does not belong to images of shape "
                             f"{tuple(images.shape)}")
        rows += [v.masked[:max_images], v.reconstruction[:max_images]]
        labels += [f"masked {v.ratio:.0%}", f"reconstruction {v.ratio:.0%}"]
    titles = None if col_titles is None else list(col_titles)[:max_images]
    fig = image_grid(rows, labels, titles, title=title)
    return _finish(fig, save, "image_reconstructions", figures_dir)
