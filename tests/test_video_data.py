"""Real-video loading on decord: annotation lists, the reference's sampling and crops, the datasets on
data_samples/, and bad input (missing, empty, truncated, undecodable, too short) with the exact summary."""
import json
import shutil
from pathlib import Path

import mvd_lib  # noqa: F401  (installs the torchvision guard before anything imports torchvision)
import numpy as np
import pytest
import torch

from mvd_lib import transforms as T
from mvd_lib import video_data as V
from mvd_lib.clip_cache import ClipCache
from mvd_lib.samples import SAMPLES_DIR, write_mp4

NUM_CLASSES = 10  # data_samples labels are the synthetic motion classes


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- registry, lists
def test_registry():
    assert {k: V.num_classes(k) for k in ("K400", "ssv2", "UCF101", "hmdb51")} == {
        "K400": 400, "ssv2": 174, "UCF101": 101, "hmdb51": 51}
    assert V.num_classes("Kinetics-400") == 400
    assert V.SAMPLING["ssv2"] == "segment" and not V.FLIP["ssv2"] and V.TEST_CLIPS["k400"] == 5
    with pytest.raises(ValueError, match="unknown dataset"):
        V.num_classes("imagenet")


def test_read_annotations_resolves_paths(tmp_path):
    lst = tmp_path / "lists" / "train.csv"
    lst.parent.mkdir()
    lst.write_text("a/x.mp4 3\n\n/abs/y.mp4 0\nwith space/z.mp4 9\n")
    recs = V.read_annotations(lst, num_classes=10)
    assert [(r.path, r.label, r.line) for r in recs] == [
        (lst.parent / "a/x.mp4", 3, 1), (Path("/abs/y.mp4"), 0, 3), (lst.parent / "with space/z.mp4", 9, 4)]
    assert V.read_annotations(lst, root=tmp_path / "videos")[0].path == tmp_path / "videos" / "a/x.mp4"


@pytest.mark.parametrize("line, message", [
    ("only_a_path.mp4", "expected '<path> <label>'"),
    ("clip.mp4 three", "label 'three' is not an integer"),
    ("clip.mp4 3 extra", "label 'extra' is not an integer"),
    ("clip.mp4 ", "expected '<path> <label>'"),
    ("clip.mp4 10", r"label 10 outside \[0, 10\)"),
    ("clip.mp4 -1", r"label -1 outside \[0, 10\)"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    lst = tmp_path / "val.csv"
    lst.write_text(f"good.mp4 1\n{line}\n")
    with pytest.raises(V.AnnotationError, match=message) as info:
        V.read_annotations(lst, num_classes=NUM_CLASSES)
    assert f"{lst}, line 2" in str(info.value)


def test_empty_or_missing_list(tmp_path):
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(V.AnnotationError, match="no videos"):
        V.read_annotations(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError):
        V.read_annotations(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------- sampling
def test_dense_indices_follow_the_reference():
    idx = V.dense_indices(300, 16, 4, rng(1))
    start = idx[0]
    # np.linspace over a 64-frame window, clipped to its last frame: spacing 64/15, as kinetics.py does
    expected = np.clip(np.linspace(start, start + 64, 16), start, start + 63).astype(np.int64)
    np.testing.assert_array_equal(idx, expected)
    starts = {int(V.dense_indices(300, 16, 4, rng(s))[0]) for s in range(200)}
    assert min(starts) >= 0 and max(starts) <= 300 - 64 and len(starts) > 100  # random window position
    np.testing.assert_array_equal(V.dense_indices(300, 16, 4, rng(7)), V.dense_indices(300, 16, 4, rng(7)))
    # shorter than the window: n // stride evenly spaced frames, then the last frame repeated
    short = V.dense_indices(20, 16, 4, rng(0))
    np.testing.assert_array_equal(short, [0, 5, 10, 15, 19] + [19] * 11)


def test_dense_test_views_are_evenly_spaced():
    views = [V.dense_test_indices(300, 16, 4, v, 5) for v in range(5)]
    assert all(len(v) == 16 and np.all(np.diff(v) == 4) for v in views)
    starts = [int(v[0]) for v in views]
    assert starts[0] == 0 and views[-1][-1] == 296  # first at the start, last at the end (every 4th frame)
    assert np.all(np.diff(starts) > 0)
    np.testing.assert_array_equal(V.dense_test_indices(300, 16, 4, 0, 1), 4 * np.arange(16) + 4 * 29)
    with pytest.raises(ValueError):
        V.dense_test_indices(300, 16, 4, 5, 5)


def test_segment_sampling():
    n, s = 100, 16
    avg = (n - 1) / s
    for seed in range(20):
        idx = V.segment_indices(n, s, rng(seed))
        for i, f in enumerate(idx):
            assert round(avg * i) <= f <= round(avg * (i + 1))
    a, b = V.segment_test_indices(n, s, 0, 2), V.segment_test_indices(n, s, 1, 2)
    assert len(a) == len(b) == s and np.all(a < b) and np.all(b[:-1] < a[1:])  # interleaved views
    np.testing.assert_array_equal(a, V.segment_test_indices(n, s, 0, 2))  # fixed
    mid = V.segment_test_indices(n, s, 0, 1)
    assert np.all(np.diff(mid) > 0) and mid[0] == 3


def test_pretrain_indices_exact_stride():
    for seed in range(20):
        idx = V.pretrain_indices(200, 16, 4, rng(seed))
        assert np.all(np.diff(idx) == 4) and 0 <= idx[0] <= 200 - 64
    assert {int(V.pretrain_indices(64, 16, 4, rng(s))[0]) for s in range(5)} == {0}
    short = V.pretrain_indices(30, 16, 4, rng(0))
    # 30 frames: advances while the next frame stays below the last one (28 + 4 = 32 > 29), then repeats
    np.testing.assert_array_equal(short, [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8)


# ---------------------------------------------------------------------------------------------- crops
def test_long_side_crops():
    assert [T.long_side_crop_box(48, 64, 48, i, 3) for i in range(3)] == [(0, 0, 48, 48), (0, 8, 48, 48),
                                                                            (0, 16, 48, 48)]
    assert [T.long_side_crop_box(80, 32, 32, i, 3) for i in range(3)] == [(0, 0, 32, 32), (24, 0, 32, 32),
                                                                            (48, 0, 32, 32)]


def test_multi_scale_crop_uses_fixed_offsets_and_scales():
    h, w = 240, 320
    for size, sides in [(224, [240, 210, 180, 158]), (208, [240, 208, 180, 158])]:  # 210 snaps to 208
        seen = set()
        for seed in range(200):
            top, left, ch, cw = T.multi_scale_crop_box(h, w, size, rng(seed))
            assert ch in sides and cw in sides and (left, top) in T.fixed_crop_offsets(w, h, cw, ch)
            assert abs(sides.index(ch) - sides.index(cw)) <= 1  # max_distort = 1
            seen.add((ch, cw))
        assert len(seen) == 10  # 4 square pairs + 6 neighbouring pairs
    assert len(T.fixed_crop_offsets(w, h, 160, 160)) == 13 and len(T.fixed_crop_offsets(w, h, 160, 160, False)) == 5


def test_two_views_show_the_same_crop():
    frames = torch.rand(4, 3, 60, 80)
    student, teacher = T.two_view_multi_scale_crop(frames, 32, 56, rng(3))
    assert student.shape == (4, 3, 32, 32) and teacher.shape == (4, 3, 56, 56)
    box = T.multi_scale_crop_box(60, 80, 32, rng(3))
    np.testing.assert_allclose(student, T.resize(T.crop(frames, box), (32, 32)))
    np.testing.assert_allclose(teacher, T.resize(T.crop(frames, box), (56, 56)))


def test_random_resized_crop_box_bounds():
    for seed in range(200):
        top, left, h, w = T.random_resized_crop_box(48, 64, rng(seed))
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64 and h > 0 and w > 0
        assert h * w >= 0.08 * 48 * 64 * 0.8  # area fraction >= 0.08 up to rounding


# ---------------------------------------------------------------------------------------------- data_samples
def test_datasets_on_data_samples():
    train = V.VideoClsDataset(SAMPLES_DIR / "train.csv", NUM_CLASSES, "train", crop_size=32, strict=True)
    labels = [r.label for r in V.read_annotations(SAMPLES_DIR / "train.csv")]
    for i in range(len(train)):
        item = train[i]
        assert item["video"].shape == (3, 16, 32, 32) and item["label"] == labels[i] and item["index"] == i
    first = train[0]["video"]
    assert torch.equal(first, train[0]["video"])  # same seed, epoch and index: same crop
    train.set_epoch(1)
    assert not torch.equal(first, train[0]["video"])  # a new epoch draws new clips and crops

    seg = V.VideoClsDataset(SAMPLES_DIR / "val.csv", NUM_CLASSES, "test", sampling="segment", crop_size=32,
                            test_clips=2, test_crops=3, strict=True)
    n = seg.num_videos
    assert len(seg) == n * 6
    views = [seg[k * n + 1] for k in range(6)]
    assert [(v["clip"], v["crop"], v["index"]) for v in views] == [(c, p, 1) for c in range(2) for p in range(3)]
    assert all(v["video"].shape == (3, 16, 32, 32) for v in views)
    assert not torch.equal(views[0]["video"], views[2]["video"])  # left vs right crop of a 48x64 video

    pre = V.VideoPretrainDataset(SAMPLES_DIR / "train.csv", input_size=32, teacher_size=40, strict=True)
    item = pre[2]
    assert set(item) == {"video", "teacher_video", "index"}
    assert item["video"].shape == (3, 16, 32, 32) and item["teacher_video"].shape == (3, 16, 40, 40)


def test_validation_item_matches_the_reference_pipeline():
    ds = V.VideoClsDataset(SAMPLES_DIR / "val.csv", NUM_CLASSES, "val", crop_size=40, short_side=44)
    rec = ds.records[2]
    n = V.inspect_video(rec.path)["num_frames"]
    frames = V.read_frames(rec.path, V.dense_test_indices(n, 16, 4, 0, 1))
    x = T.center_crop(T.resize_short_side(T.frames_to_float(frames), 44), 40)
    expected = T.normalize(T.to_cthw(x))
    item = ds[2]
    assert item["video"].shape == (3, 16, 40, 40)
    torch.testing.assert_close(item["video"], expected)


def test_for_dataset_uses_reference_settings():
    ds = V.VideoClsDataset.for_dataset("SSv2", SAMPLES_DIR / "test.csv", "test", crop_size=32)
    assert (ds.num_classes, ds.sampling, ds.test_clips, ds.flip) == (174, "segment", 2, False)
    assert len(ds) == 5 * 2 * 3


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def broken_set(tmp_path):
    """A list of 7 videos: good, missing, zero-byte, truncated mp4, text file named .mp4, 5-frame video, good."""
    good_src = sorted((SAMPLES_DIR / "videos").glob("train_*.mp4"))[:2]
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(good_src[0], d / "good_a.mp4")
    shutil.copy(good_src[1], d / "good_b.mp4")
    (d / "zero.mp4").write_bytes(b"")
    data = good_src[0].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "text.mp4").write_text("this is not a video\n" * 100)
    frames = np.random.default_rng(0).integers(0, 255, size=(5, 32, 32, 3), dtype=np.uint8)
    write_mp4(frames, d / "short.mp4")
    names = ["good_a", "missing", "zero", "truncated", "text", "short", "good_b"]
    lst = tmp_path / "list.csv"
    lst.write_text("".join(f"videos/{name}.mp4 {i}\n" for i, name in enumerate(names)))
    return lst, d


def expected_summary(d: Path, replaced: int) -> dict:
    return {
        "num_bad": 5,
        "counts": {"missing": 1, "empty": 1, "undecodable": 2, "too_short": 1},
        "replaced": replaced,
        "files": sorted([
            {"path": str(d / "missing.mp4"), "reason": "missing", "detail": "file not found"},
            {"path": str(d / "zero.mp4"), "reason": "empty", "detail": "0 bytes"},
            {"path": str(d / "truncated.mp4"), "reason": "undecodable", "detail": "<decord>"},
            {"path": str(d / "text.mp4"), "reason": "undecodable", "detail": "<decord>"},
            {"path": str(d / "short.mp4"), "reason": "too_short", "detail": "5 frames < 16 needed"},
        ], key=lambda f: f["path"]),
    }


def _normalize_decord_details(summary: dict) -> dict:
    for f in summary["files"]:
        if f["reason"] == "undecodable":
            assert f["detail"].startswith(("open failed: ", "reading frames failed: ")), f["detail"]
            f["detail"] = "<decord>"
    return summary


def test_bad_inputs_are_counted_named_and_skipped(broken_set, tmp_path):
    lst, d = broken_set
    log = tmp_path / "bad.jsonl"
    ds = V.VideoClsDataset(lst, NUM_CLASSES, "val", crop_size=32, log_path=log)
    items = [ds[i] for i in range(len(ds))]
    # every bad video is replaced by the next good one, deterministically
    assert [it["index"] for it in items] == [0, 6, 6, 6, 6, 6, 6]
    assert [it["label"] for it in items] == [0, 6, 6, 6, 6, 6, 6]
    assert _normalize_decord_details(ds.bad_inputs.to_dict()) == expected_summary(d, replaced=5)
    text = str(ds.bad_inputs)
    assert text.startswith("bad inputs: 5 file(s) skipped (missing: 1, empty: 1, undecodable: 2, too_short: 1)")
    assert all(str(d / f"{n}.mp4") in text for n in ("missing", "zero", "truncated", "text", "short"))
    # a second pass neither re-records nor re-opens the bad files
    again = [ds[i]["index"] for i in range(len(ds))]
    assert again == [0, 6, 6, 6, 6, 6, 6] and len(ds.bad_inputs) == 5 and ds.bad_inputs.replaced == 10
    # saved JSON and the worker log both round-trip
    saved = ds.bad_inputs.save_json(tmp_path / "summary.json")
    assert V.BadInputSummary.load(saved).to_dict() == ds.bad_inputs.to_dict()
    assert json.loads(saved.read_text())["counts"] == {"missing": 1, "empty": 1, "undecodable": 2, "too_short": 1}
    assert V.BadInputSummary.from_log(log).files == ds.bad_inputs.files


def test_bad_inputs_wrap_around_and_scan(broken_set):
    lst, d = broken_set
    ds = V.VideoPretrainDataset(lst, input_size=32)
    assert ds[5]["index"] == 6 and ds[6]["index"] == 6
    scan = V.VideoClsDataset(lst, NUM_CLASSES, "train", crop_size=32).scan(progress=False)
    assert _normalize_decord_details(scan.to_dict()) == expected_summary(d, replaced=0)


def test_last_video_bad_wraps_to_the_first(tmp_path):
    good = sorted((SAMPLES_DIR / "videos").glob("val_*.mp4"))[0]
    lst = tmp_path / "l.csv"
    lst.write_text(f"{good} 1\n{tmp_path / 'gone.mp4'} 2\n")
    ds = V.VideoClsDataset(lst, NUM_CLASSES, "val", crop_size=32)
    assert ds[1]["index"] == 0 and ds[1]["label"] == 1


def test_strict_mode_raises(broken_set):
    lst, d = broken_set
    ds = V.VideoClsDataset(lst, NUM_CLASSES, "val", crop_size=32, strict=True)
    assert ds[0]["index"] == 0
    with pytest.raises(V.BadVideoError, match="missing") as info:
        ds[1]
    assert info.value.reason == "missing" and info.value.path == str(d / "missing.mp4")
    with pytest.raises(V.BadVideoError) as info:
        ds[5]
    assert info.value.reason == "too_short"
    with pytest.raises(V.BadVideoError):
        V.VideoClsDataset(lst, NUM_CLASSES, strict=True).scan(progress=False)


def test_too_small_files_and_all_bad(tmp_path):
    (tmp_path / "tiny.mp4").write_bytes(b"\x00" * 100)
    lst = tmp_path / "l.csv"
    lst.write_text("tiny.mp4 0\nmissing.mp4 1\n")
    ds = V.VideoClsDataset(lst, NUM_CLASSES, "val", crop_size=32)
    with pytest.raises(RuntimeError, match="no readable video"):
        ds[0]
    assert ds.bad_inputs.counts() == {"missing": 1, "too_small": 1}
    assert ds.bad_inputs.files[str(tmp_path / "tiny.mp4")]["detail"] == "100 bytes < 1024"


# ---------------------------------------------------------------------------------------------- cache
@pytest.mark.parametrize("mode", ["video", "clip"])
def test_dataset_cache_decodes_once(tmp_path, mode):
    cache = ClipCache(tmp_path / "cache")
    kwargs = dict(crop_size=32, test_clips=2, stride=2)  # stride 2: the two clips of a 64-frame video differ
    ds = V.VideoClsDataset(SAMPLES_DIR / "test.csv", NUM_CLASSES, "test", cache=cache, cache_mode=mode, **kwargs)
    plain = V.VideoClsDataset(SAMPLES_DIR / "test.csv", NUM_CLASSES, "test", **kwargs)
    first = [ds[i]["video"] for i in range(len(ds))]
    entries = len(cache)
    assert entries == (5 if mode == "video" else 10)  # whole videos, or one entry per temporal view
    again = V.VideoClsDataset(SAMPLES_DIR / "test.csv", NUM_CLASSES, "test", cache=cache, cache_mode=mode,
                              **kwargs)
    for i in range(len(ds)):
        assert torch.equal(again[i]["video"], first[i])
        torch.testing.assert_close(first[i], plain[i]["video"])
    assert len(cache) == entries and cache.misses == entries and cache.hits >= len(ds)


def test_decode_short_side_stores_smaller_frames(tmp_path):
    cache = ClipCache(tmp_path / "cache")
    ds = V.VideoPretrainDataset(SAMPLES_DIR / "val.csv", input_size=16, cache=cache, decode_short_side=24)
    assert ds[0]["video"].shape == (3, 16, 16, 16)
    (entry,) = list((tmp_path / "cache").glob("*/*.npy"))
    assert np.load(entry, mmap_mode="r").shape == (64, 24, 32, 3)


# ---------------------------------------------------------------------------------------------- bad input: workers
def test_worker_findings_reach_the_main_process(broken_set):
    """DataLoader workers are separate processes: what they find must still land in dataset.bad_inputs."""
    lst, d = broken_set
    ds = V.VideoPretrainDataset(lst, input_size=16)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    for epoch in range(2):
        ds.set_epoch(epoch)
        served = [int(b["index"]) for b in loader]
        assert served == [0, 6, 6, 6, 6, 6, 6]
    assert _normalize_decord_details(ds.bad_inputs.to_dict()) == expected_summary(d, replaced=10)
    saved = ds.bad_inputs.save_json(d.parent / "bad_inputs.json")
    assert json.loads(saved.read_text())["num_bad"] == 5


def test_worker_channel_is_removed_with_the_dataset(broken_set):
    import gc

    lst, _ = broken_set
    ds = V.VideoPretrainDataset(lst, input_size=16)
    list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2))
    channel = ds._channel
    assert channel.exists() and len(ds.bad_inputs) == 5
    del ds
    gc.collect()
    assert not channel.exists()


# ---------------------------------------------------------------------------------------------- bad input: eval views
def test_eval_items_name_the_video_they_stand_for(broken_set):
    lst, d = broken_set
    ds = V.VideoClsDataset(lst, NUM_CLASSES, "test", crop_size=16, test_clips=2, test_crops=1)
    items = [ds[i] for i in range(len(ds))]  # clip-major: views 0..6 are clip 0 of each video, 7..13 clip 1
    assert [it["video_index"] for it in items] == list(range(7)) * 2
    assert [it["replaced"] for it in items] == [0, 1, 1, 1, 1, 1, 0] * 2
    assert [it["index"] for it in items] == [0, 6, 6, 6, 6, 6, 6] * 2  # the substitute actually served
    assert ds.video_name(1) == f"list.csv:2 {d / 'missing.mp4'}"
    assert "video_index" not in V.VideoClsDataset(lst, NUM_CLASSES, "train", crop_size=16)[0]


def test_all_videos_bad_is_one_line(tmp_path):
    lst = tmp_path / "l.csv"
    lst.write_text("a.mp4 0\nb.mp4 1\n")
    with pytest.raises(V.NoReadableVideoError) as info:
        V.VideoClsDataset(lst, NUM_CLASSES, "val", crop_size=16)[0]
    msg = str(info.value)
    assert "\n" not in msg and str(lst) in msg and "all 2 listed videos are bad (missing: 2)" in msg
