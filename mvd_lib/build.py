"""One builder per model kind: the student, its two teachers, the pretraining and finetuning models, and the
bare encoders that finished runs load their weights into.

One place that knows how the parts fit: a teacher's width sets the student's decoder head width, the image
teacher's patch size is chosen so its grid matches the student's, and decoder sizes follow the reference
(config.py). Models built here are randomly initialised (seeded); load weights with `checkpoint.load_checkpoint`.
Run types (runtypes.py), `bench`, the command line and the notebooks all build models through these functions.
"""
from __future__ import annotations

from typing import Iterable, Literal

from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import (DEFAULT_TEACHER, ViTConfig, image_teacher_config, mae_decoder_config, mvd_decoder_config,
                            video_teacher_config, videomae_decoder_config, vit_config)
from mvd_lib.mae import ImageViT, MAEPretrain
from mvd_lib.student import MVDStudent, TokenDistillStudent
from mvd_lib.teachers import ImageTeacher, VideoTeacher
from mvd_lib.videomae import VideoMAEPretrain, videomae_encoder
from mvd_lib.vit import VideoViT

PosEmbed = Literal["sincos3d", "sinusoid1d"]


# ------------------------------------------------------------------------------------------------ students
def build_student(
    cfg: ViTConfig,
    teacher_dims: dict[str, int],
    pixel: bool = False,
    seed: int | None = 0,
    **decoder_overrides,
) -> MVDStudent:
    """An MVD student with one feature decoder per entry of `teacher_dims` ({"img": D_img, "vid": D_vid})."""
    return MVDStudent(cfg, mvd_decoder_config(cfg, **decoder_overrides), teacher_dims, pixel=pixel, seed=seed)


def build_token_student(cfg: ViTConfig, teacher_dims: dict[str, int], seed: int | None = 0) -> TokenDistillStudent:
    """The per-token distillation baseline (paper Table 9): no mask, one MLP head per teacher."""
    return TokenDistillStudent(cfg, teacher_dims, seed=seed)


def student_encoder(cfg: ViTConfig) -> VideoViT:
    """The encoder part of a student (3-D sin-cos table stored, final norm), to load a distill run into."""
    return VideoViT(cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=None)


# ------------------------------------------------------------------------------------------------ teachers
def build_image_teacher(arch: str, student: ViTConfig, seed: int | None = 0) -> ImageTeacher:
    """A frozen MAE image teacher of architecture `arch` whose grid matches the student's."""
    return ImageTeacher(image_encoder(arch, student, seed), tubelet_size=student.tubelet_size)


def build_video_teacher(arch: str, student: ViTConfig, seed: int | None = 0) -> VideoTeacher:
    """A frozen VideoMAE video teacher of architecture `arch` at the student's clip geometry."""
    return VideoTeacher(video_encoder(arch, student, seed))


def image_encoder(arch: str, student: ViTConfig, seed: int | None = None) -> ImageViT:
    """The MAE image encoder of architecture `arch` for `student`'s grid (what pretrain-image runs train)."""
    return ImageViT(image_teacher_config(arch, student), seed=seed)


def video_encoder(arch: str, student: ViTConfig, seed: int | None = None) -> VideoViT:
    """The VideoMAE encoder of architecture `arch` at `student`'s geometry (what pretrain-video runs train)."""
    return videomae_encoder(video_teacher_config(arch, student), seed=seed)


def build_distillation(
    student_arch: str | ViTConfig,
    teacher_arch: str | None = None,
    branches: Iterable[str] = ("img", "vid"),
    pixel: bool = False,
    seed: int = 0,
    **student_overrides,
) -> tuple[MVDStudent, dict[str, ImageTeacher | VideoTeacher]]:
    """Student plus randomly initialised teachers for `branches` ("img", "vid"): (student, {branch: teacher})."""
    cfg = vit_config(student_arch, **student_overrides)
    name = student_arch if isinstance(student_arch, str) else None
    teacher_arch = teacher_arch or DEFAULT_TEACHER.get(name or "", None)
    if teacher_arch is None:
        raise ValueError("give teacher_arch for a student built from a custom config")
    teachers: dict[str, ImageTeacher | VideoTeacher] = {}
    for b in branches:
        if b == "img":
            teachers[b] = build_image_teacher(teacher_arch, cfg, seed=seed + 100)
        elif b == "vid":
            teachers[b] = build_video_teacher(teacher_arch, cfg, seed=seed + 200)
        else:
            raise ValueError(f"unknown teacher branch {b!r}; use 'img' and/or 'vid'")
    student = build_student(cfg, {b: t.out_dim for b, t in teachers.items()}, pixel=pixel, seed=seed)
    return student, teachers


# ------------------------------------------------------------------------------------------------ pretraining
def build_mae(arch: str, student: ViTConfig, seed: int | None = 0, **decoder_overrides) -> MAEPretrain:
    """MAE pixel-pretraining model for an image teacher of architecture `arch` on `student`'s grid."""
    cfg = image_teacher_config(arch, student)
    return MAEPretrain(cfg, mae_decoder_config(cfg, **decoder_overrides), seed=seed)


def build_videomae(arch: str, student: ViTConfig, seed: int | None = 0, **decoder_overrides) -> VideoMAEPretrain:
    """VideoMAE pixel-pretraining model for a video teacher of architecture `arch` at `student`'s geometry."""
    cfg = video_teacher_config(arch, student)
    return VideoMAEPretrain(cfg, videomae_decoder_config(cfg, **decoder_overrides), seed=seed)


# ------------------------------------------------------------------------------------------------ finetuning
def build_classifier(cfg: ViTConfig, num_classes: int, fc_drop: float = 0.0, seed: int | None = 0,
                     pos_embed: PosEmbed = "sincos3d") -> VideoClassifier:
    """The finetuning model: encoder, mean pool, fc_norm, dropout, head (x0.001). VideoMAE-initialised
    classifiers keep VideoMAE's 1-D sinusoid table (`pos_embed="sinusoid1d"`), MVD students the 3-D one."""
    return VideoClassifier(cfg, num_classes, fc_drop=fc_drop, seed=seed, pos_embed=pos_embed)


def classifier_encoder(cfg: ViTConfig, pos_embed: PosEmbed = "sincos3d") -> VideoViT:
    """The encoder part of a finetuned classifier (no stored table, no final norm: fc_norm comes after pooling)."""
    return VideoViT(cfg, pos_embed=pos_embed, store_pos_embed=False, final_norm=False, seed=None)


def random_encoder(cfg: ViTConfig, seed: int | None = 0) -> VideoViT:
    """A randomly initialised video encoder (the floor every table shows), built like a student's encoder."""
    return VideoViT(cfg, pos_embed="sincos3d", store_pos_embed=True, final_norm=True, seed=seed)
