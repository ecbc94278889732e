"""Notebook-friendly views of clips: frame strips, GIFs, and the one helper that saves figures.

Clips are shown as frame strips (matplotlib) or GIFs so that they render without a kernel (STYLE.md, "the
notebooks"). Figures go under the repository's `figures/` folder through `save_figure` only, with
deterministic names; `figures_dir=` or the MVD_FIGURES_DIR environment variable redirect them (tests do).

Accepted clip layouts (see `to_uint8_frames`): uint8 `[T, H, W, 3]` (generator / decord output) and float
`[C, T, H, W]` tensors or arrays as the datasets return them (ImageNet-normalized unless `normalized=False`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from mvd_lib import transforms as T

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    import matplotlib.pyplot as plt

    clips = list(video) if isinstance(video, (list, tuple)) else [video]
    clips = [to_uint8_frames(c, normalized) for c in clips]
    if labels is None:
        labels = [""] * len(clips)
    elif isinstance(labels, str):
        labels = [labels]
    if len(labels) != len(clips):
        raise ValueError(f"{len(labels)} labels for {len(clips)} clips")
    cols = min(max_frames, max(len(c) for c in clips))
    fig, axes = plt.subplots(len(clips), cols, figsize=(frame_size * cols + 1.2, frame_size * len(clips) + 0.4),
                             squeeze=False)
    for r, (clip, label) in enumerate(zip(clips, labels)):
        idx = np.unique(np.linspace(0, len(clip) - 1, min(cols, len(clip))).round().astype(int))
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(idx):
                ax.imshow(clip[idx[c]], interpolation="nearest")
                if show_time and r == 0:
                    ax.set_title(f"t={idx[c]}", fontsize=7)
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
