"""Model configurations: one typed dataclass per model part and the named presets.

Paper sizes follow mvd_reference.md section 1 (ViT-S/B/L/H with 16x224x224 clips, 2x16x16 tubelets);
decoder sizes follow section 3 (student feature decoders), VideoMAE's and MAE's released recipes
(pixel decoders). The laptop presets (`vit_nano`, `vit_micro`, `vit_tiny`) are ours: same code, small
widths, 16x32x32 clips with 2x4x4 tubelets (an 8x8x8 token grid, like the paper's 8x14x14 but smaller).

Presets are plain named instances; `vit_config(name, **overrides)` returns a modified copy and rejects
unknown fields, so every knob is visible here rather than buried in a call.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ViTConfig:
    """A plain ViT over tubelets (video) or patches (image, `tubelet_size` unused)."""

    width: int = 768  # embedding dimension D
    depth: int = 12  # number of transformer blocks
    heads: int = 12  # attention heads (head_dim = width / heads)
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * width
    num_frames: int = 16  # frames T per clip
    img_size: int = 224  # frame height = width in pixels
    patch_size: int = 16  # spatial patch size p
    tubelet_size: int = 2  # frames per tubelet (temporal patch size)
    in_chans: int = 3  # input channels
    drop_path: float = 0.0  # stochastic depth, rising linearly from 0 to this over the blocks
    qkv_bias: bool = True  # learnable q and v biases (k has none), as in VideoMAE/MVD
    norm_eps: float = 1e-6  # LayerNorm epsilon

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T', H', W') = (T / tubelet, H / p, W / p)."""
        g = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet_size, g, g)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def num_patches_2d(self) -> int:
        """Patches per frame (image models): H' * W'."""
        _, h, w = self.grid
        return h * w

    @property
    def tubelet_dim(self) -> int:
        """Pixels per tubelet: tubelet * p * p * C (the VideoMAE pixel-target width)."""
        return self.tubelet_size * self.patch_size**2 * self.in_chans


@dataclass(frozen=True)
class DecoderConfig:
    """A light transformer decoder (MVD feature decoder, VideoMAE / MAE pixel decoder)."""

    width: int = 768  # decoder embedding dimension
    depth: int = 2  # decoder blocks
    heads: int = 12  # decoder attention heads
    mlp_ratio: float = 4.0
    drop_path: float = 0.0  # the reference passes the encoder's drop_path to the MVD decoders too

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"decoder width {self.width} is not divisible by heads {self.heads}")


_PAPER_CLIP = dict(num_frames=16, img_size=224, patch_size=16, tubelet_size=2)
_LAPTOP_CLIP = dict(num_frames=16, img_size=32, patch_size=4, tubelet_size=2)

PRESETS: dict[str, ViTConfig] = {
    # paper sizes (mvd_reference.md section 1)
    "vit_small": ViTConfig(width=384, depth=12, heads=6, **_PAPER_CLIP),
    "vit_base": ViTConfig(width=768, depth=12, heads=12, **_PAPER_CLIP),
    "vit_large": ViTConfig(width=1024, depth=24, heads=16, **_PAPER_CLIP),
    "vit_huge": ViTConfig(width=1280, depth=32, heads=16, **_PAPER_CLIP),
    # laptop sizes (ours), any geometry through overrides
    "vit_tiny": ViTConfig(width=192, depth=12, heads=3, **_LAPTOP_CLIP),
    "vit_micro": ViTConfig(width=128, depth=6, heads=4, **_LAPTOP_CLIP),
    "vit_nano": ViTConfig(width=64, depth=2, heads=2, **_LAPTOP_CLIP),
}
PAPER_PRESETS = ("vit_small", "vit_base", "vit_large", "vit_huge")

# MVD student feature decoders (mvd_reference.md section 3): depth 2 at encoder width/heads for S and B
# (and for our laptop sizes); L and H use wider, deeper fixed-size decoders.
_MVD_DECODER_OVERRIDES: dict[str, DecoderConfig] = {
    "vit_large": DecoderConfig(width=512, depth=4, heads=8),
    "vit_huge": DecoderConfig(width=640, depth=8, heads=8),
}

# VideoMAE pixel decoders (VideoMAE's pretrain models: depth 4, half width).
_VIDEOMAE_DECODERS: dict[str, DecoderConfig] = {
    "vit_small": DecoderConfig(width=192, depth=4, heads=3),
    "vit_base": DecoderConfig(width=384, depth=4, heads=6),
    "vit_large": DecoderConfig(width=512, depth=4, heads=8),
    "vit_huge": DecoderConfig(width=640, depth=4, heads=8),
}

# MAE pixel decoders (MAE's `dec512d8b` for every paper size).
_MAE_PAPER_DECODER = DecoderConfig(width=512, depth=8, heads=16)


def _replace(obj, kind: str, overrides: dict):
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {unknown}; valid fields: {sorted(names)}")
    return dataclasses.replace(obj, **overrides)


def vit_config(preset: str | ViTConfig, **overrides) -> ViTConfig:
    """The named preset (or a given config) with `overrides` applied, e.g. `vit_config("vit_tiny", num_frames=8)`."""
    if isinstance(preset, ViTConfig):
        return _replace(preset, "ViTConfig", overrides)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return _replace(PRESETS[preset], "ViTConfig", overrides)


def preset_name(cfg: ViTConfig) -> str | None:
    """Name of the preset whose architecture (width, depth, heads) `cfg` has, if any."""
    for name, p in PRESETS.items():
        if (p.width, p.depth, p.heads) == (cfg.width, cfg.depth, cfg.heads):
            return name
    return None


def mvd_decoder_config(student: ViTConfig, **overrides) -> DecoderConfig:
    """The reference feature-decoder size for a student (section 3): the same for both branches."""
    base = _MVD_DECODER_OVERRIDES.get(preset_name(student) or "")
    if base is None:
        base = DecoderConfig(width=student.width, depth=2, heads=student.heads)
    base = dataclasses.replace(base, drop_path=student.drop_path)
    return _replace(base, "DecoderConfig", overrides)


def videomae_decoder_config(encoder: ViTConfig, **overrides) -> DecoderConfig:
    """VideoMAE's pixel-decoder size for an encoder: depth 4 at half width (paper sizes as released)."""
    base = _VIDEOMAE_DECODERS.get(preset_name(encoder) or "")
    if base is None:
        heads = max(1, encoder.heads // 2) if (encoder.width // 2) % max(1, encoder.heads // 2) == 0 else 1
        base = DecoderConfig(width=encoder.width // 2, depth=4, heads=heads)
    return _replace(base, "DecoderConfig", overrides)


def mae_decoder_config(encoder: ViTConfig, **overrides) -> DecoderConfig:
    """MAE's pixel-decoder size: 512 wide, 8 deep for paper sizes; depth 2 at encoder width for laptop sizes."""
    if preset_name(encoder) in ("vit_base", "vit_large", "vit_huge"):
        base = _MAE_PAPER_DECODER
    else:
        base = DecoderConfig(width=encoder.width, depth=2, heads=encoder.heads)
    return _replace(base, "DecoderConfig", overrides)


# Teacher sizes the released runs pair with each student (Table 2 rows "T-B"); laptop students teach-alike.
DEFAULT_TEACHER: dict[str, str] = {
    "vit_small": "vit_base", "vit_base": "vit_base", "vit_large": "vit_large", "vit_huge": "vit_huge",
    "vit_tiny": "vit_tiny", "vit_micro": "vit_micro", "vit_nano": "vit_nano",
}


def image_teacher_config(preset: str, student: ViTConfig, **overrides) -> ViTConfig:
    """The MAE image teacher for `student`: the preset's architecture at a patch size and resolution giving the
    student's spatial grid, so its tokens align with the student's. Paper: B/16 and L/16 at 224 px, H/14 at
    196 px (a 14x14 grid; the reference's `teacher_input_size 196`)."""
    patch = 14 if preset == "vit_huge" and student.patch_size == 16 else student.patch_size
    grid = student.img_size // student.patch_size
    geometry = dict(img_size=grid * patch, patch_size=patch, num_frames=student.num_frames,
                    tubelet_size=student.tubelet_size, drop_path=0.0)
    return vit_config(preset, **{**geometry, **overrides})


def video_teacher_config(preset: str, student: ViTConfig, **overrides) -> ViTConfig:
    """The VideoMAE video teacher for `student`: the preset's architecture at the student's clip geometry."""
    geometry = dict(img_size=student.img_size, patch_size=student.patch_size, num_frames=student.num_frames,
                    tubelet_size=student.tubelet_size, drop_path=0.0)
    return vit_config(preset, **{**geometry, **overrides})
