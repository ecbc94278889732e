"""Build models from preset names: the student, its two teachers, the pretraining and finetuning models.

One place that knows how the parts fit: a teacher's width sets the student's decoder head width, the image
teacher's patch size is chosen so its grid matches the student's, and decoder sizes follow the reference
(config.py). Teachers built here are randomly initialised; load weights with `checkpoint.load_checkpoint`.
"""
from __future__ import annotations

from typing import Iterable

from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import (DEFAULT_TEACHER, ViTConfig, image_teacher_config, mae_decoder_config, mvd_decoder_config,
                            video_teacher_config, videomae_decoder_config, vit_config)
from mvd_lib.mae import ImageViT, MAEPretrain
from mvd_lib.student import MVDStudent
from mvd_lib.teachers import ImageTeacher, VideoTeacher
from mvd_lib.videomae import VideoMAEPretrain, videomae_encoder


def build_student(
    cfg: ViTConfig,
    teacher_dims: dict[str, int],
    pixel: bool = False,
    seed: int | None = 0,
    **decoder_overrides,
) -> MVDStudent:
    """An MVD student with one feature decoder per entry of `teacher_dims` ({"img": D_img, "vid": D_vid})."""
    return MVDStudent(cfg, mvd_decoder_config(cfg, **decoder_overrides), teacher_dims, pixel=pixel, seed=seed)


def build_image_teacher(preset: str, student: ViTConfig, seed: int | None = 0) -> ImageTeacher:
    """A frozen MAE image teacher of architecture `preset` whose grid matches the student's."""
    return ImageTeacher(ImageViT(image_teacher_config(preset, student), seed=seed), tubelet_size=student.tubelet_size)


def build_video_teacher(preset: str, student: ViTConfig, seed: int | None = 0) -> VideoTeacher:
    """A frozen VideoMAE video teacher of architecture `preset` at the student's clip geometry."""
    return VideoTeacher(videomae_encoder(video_teacher_config(preset, student), seed=seed))


def build_distillation(
    student_preset: str | ViTConfig,
    teacher_preset: str | None = None,
    branches: Iterable[str] = ("img", "vid"),
    pixel: bool = False,
    seed: int = 0,
    **student_overrides,
) -> tuple[MVDStudent, dict[str, ImageTeacher | VideoTeacher]]:
    """Student plus the teachers for `branches` ("img", "vid"); returns (student, {branch: teacher})."""
    cfg = vit_config(student_preset, **student_overrides)
    name = student_preset if isinstance(student_preset, str) else None
    teacher_preset = teacher_preset or DEFAULT_TEACHER.get(name or "", None)
    if teacher_preset is None:
        raise ValueError("give teacher_preset for a student built from a custom config")
    teachers: dict[str, ImageTeacher | VideoTeacher] = {}
    for b in branches:
        if b == "img":
            teachers[b] = build_image_teacher(teacher_preset, cfg, seed=seed + 100)
        elif b == "vid":
            teachers[b] = build_video_teacher(teacher_preset, cfg, seed=seed + 200)
        else:
            raise ValueError(f"unknown teacher branch {b!r}; use 'img' and/or 'vid'")
    student = build_student(cfg, {b: t.out_dim for b, t in teachers.items()}, pixel=pixel, seed=seed)
    return student, teachers


def build_mae(preset: str, student: ViTConfig, seed: int | None = 0, **decoder_overrides) -> MAEPretrain:
    """MAE pixel-pretraining model for an image teacher of architecture `preset`."""
    cfg = image_teacher_config(preset, student)
    return MAEPretrain(cfg, mae_decoder_config(cfg, **decoder_overrides), seed=seed)


def build_videomae(preset: str, student: ViTConfig, seed: int | None = 0, **decoder_overrides) -> VideoMAEPretrain:
    """VideoMAE pixel-pretraining model for a video teacher of architecture `preset`."""
    cfg = video_teacher_config(preset, student)
    return VideoMAEPretrain(cfg, videomae_decoder_config(cfg, **decoder_overrides), seed=seed)


def build_classifier(cfg: ViTConfig, num_classes: int, fc_drop: float = 0.0, seed: int | None = 0) -> VideoClassifier:
    return VideoClassifier(cfg, num_classes, fc_drop=fc_drop, seed=seed)
