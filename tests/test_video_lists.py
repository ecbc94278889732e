"""Annotation lists from a folder of videos (video_data.write_lists, split_videos, class_of, read_classes).

Known answers: the sample videos' lists made from their file names carry exactly the labels of the shipped
lists (data_samples/*.csv); stratified splits give exact split sizes and each class its share up to one video;
the same seed writes the same bytes; every mistake names the file or setting."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvd_lib import video_data as V

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data_samples"


def _folder(root: Path, per_class: dict[str, int], ext: str = ".mp4") -> Path:
    """folder/<class>/<class>_<i>.mp4 files (contents do not matter to the lists)."""
    for name, n in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{name}_{i:02d}{ext}").write_bytes(b"x")
    return root


def _read(list_path: Path) -> list[tuple[Path, int]]:
    return [(r.path.resolve(), r.label) for r in V.read_annotations(list_path)]


def test_parent_layout_lists_every_video_once_with_sorted_class_names(tmp_path):
    folder = _folder(tmp_path / "videos", {"walk": 5, "jump": 5, "run": 5})
    (folder / "walk" / "notes.txt").write_text("not a video")
    (folder / "jump" / "upper.MP4").write_bytes(b"x")  # extensions in any case
    lists = V.write_lists(folder, tmp_path / "lists", label_from="parent", seed=3)
    assert lists.classes == ("jump", "run", "walk") == V.read_classes(tmp_path / "lists")
    seen = []
    for split in ("train", "val", "test"):
        rows = _read(lists.list_path(split))
        assert rows == [(p.resolve(), y) for p, y in lists.splits[split]]
        for path, label in rows:
            assert path.parent.name == lists.classes[label]  # the label names the video's folder
        seen += [p for p, _ in rows]
    assert sorted(seen) == sorted(p.resolve() for p in V.find_videos(folder)) and len(seen) == 16 == len(lists)
    assert not any(p.suffix == ".txt" for p in seen)
    assert [len(lists.splits[s]) for s in ("train", "val", "test")] == [10, 3, 3]  # round(0.6 * 16), then 0.8
    info = json.loads((tmp_path / "lists" / "classes.json").read_text())
    assert info["videos"] == {"train": 10, "val": 3, "test": 3} and info["seed"] == 3


def test_the_same_seed_writes_the_same_bytes_and_another_seed_another_split(tmp_path):
    folder = _folder(tmp_path / "videos", {f"c{i}": 6 for i in range(4)})
    a = V.write_lists(folder, tmp_path / "a", seed=0)
    b = V.write_lists(folder, tmp_path / "b", seed=0)
    c = V.write_lists(folder, tmp_path / "c", seed=1)
    for split in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{split}.csv").read_bytes() == (tmp_path / "b" / f"{split}.csv").read_bytes()
    assert a.splits == b.splits and a.splits != c.splits


def test_sample_videos_named_by_pattern_get_the_shipped_labels(tmp_path):
    """data_samples/: the motion class is in each file name; with the class order of info.json the labels equal
    those of the shipped lists, file for file."""
    motions = json.loads((SAMPLES / "info.json").read_text())["motion_classes"]
    pattern = "_(?P<label>" + "|".join(sorted(motions, key=len, reverse=True)) + ")_"
    lists = V.write_lists(SAMPLES / "videos", tmp_path / "lists", label_from="name", pattern=pattern,
                          classes=motions, seed=0)
    shipped = {}
    for split in ("train", "val", "test"):
        shipped.update(dict(_read(SAMPLES / f"{split}.csv")))
    ours = {}
    for split in ("train", "val", "test"):
        ours.update(dict(_read(lists.list_path(split))))
    assert ours == shipped and len(ours) == 20
    assert all(n >= 1 for n in lists.counts()["train"].values())  # 12 train videos, 10 classes: all trained on


def test_default_name_pattern_drops_a_trailing_number(tmp_path):
    for stem, expected in (("jump_03", "jump"), ("push-up-12", "push-up"), ("wave", "wave"), ("sit 7", "sit")):
        assert V.class_of(tmp_path / f"{stem}.mp4", tmp_path, "name") == expected


def test_split_videos_is_stratified_with_exact_sizes():
    labels = np.repeat(np.arange(10), 10)  # 10 classes x 10 videos
    for seed in range(5):
        split = np.array(V.split_videos(labels, (0.6, 0.2, 0.2), seed))
        assert np.bincount(split, minlength=3).tolist() == [60, 20, 20]
        for c in range(10):
            per = np.bincount(split[labels == c], minlength=3)
            assert np.all(np.abs(per - np.array([6, 2, 2])) <= 1), (seed, c, per)
    # unbalanced classes: each gets its share, up to one video
    labels = np.array([0] * 50 + [1] * 10 + [2] * 5)
    split = np.array(V.split_videos(labels, (0.6, 0.2, 0.2), 0))
    for c, n in ((0, 50), (1, 10), (2, 5)):
        per = np.bincount(split[labels == c], minlength=3)
        assert np.all(np.abs(per - n * np.array([0.6, 0.2, 0.2])) <= 1.0 + 1e-9), (c, per)


def test_train_holds_every_class_when_it_has_room():
    labels = np.repeat(np.arange(10), 2)  # two videos per class, 12 train places
    for seed in range(10):
        split = np.array(V.split_videos(labels, (0.6, 0.2, 0.2), seed))
        assert set(labels[split == 0]) == set(range(10)), seed


def test_a_zero_fraction_writes_no_list(tmp_path):
    folder = _folder(tmp_path / "videos", {"a": 4, "b": 4})
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "test.csv").write_text("stale.mp4 0\n")
    lists = V.write_lists(folder, tmp_path / "lists", splits=(0.75, 0.25, 0.0))
    assert sorted(lists.splits) == ["train", "val"] and not (tmp_path / "lists" / "test.csv").exists()
    with pytest.raises(KeyError, match="test"):
        lists.list_path("test")


def test_absolute_paths(tmp_path):
    folder = _folder(tmp_path / "videos", {"a": 3, "b": 3})
    V.write_lists(folder, tmp_path / "lists", absolute_paths=True, splits=(0.5, 0.5, 0.0))
    first = (tmp_path / "lists" / "train.csv").read_text().splitlines()[0]
    assert Path(first.rsplit(" ", 1)[0]).is_absolute()


@pytest.mark.parametrize("case, message", [
    ("flat", "lies directly in"),
    ("no match", "does not match pattern"),
    ("unknown class", "classes not in `classes`"),
    ("bad fractions", "sum to 1"),
    ("too few", "leave the val split"),
    ("no videos", "no videos"),
    ("missing folder", "does not exist"),
])
def test_mistakes_name_the_file_or_setting(tmp_path, case, message):
    folder = _folder(tmp_path / "videos", {"a": 2, "b": 2})
    kwargs: dict = {}
    if case == "flat":
        (folder / "loose.mp4").write_bytes(b"x")
    elif case == "no match":
        kwargs = dict(label_from="name", pattern=r"^(?P<label>clip)_")
    elif case == "unknown class":
        kwargs = dict(classes=("a",))
    elif case == "bad fractions":
        kwargs = dict(splits=(0.5, 0.2, 0.2))
    elif case == "too few":
        kwargs = dict(splits=(0.9, 0.05, 0.05))
    elif case == "no videos":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "missing folder":
        folder = tmp_path / "nowhere"
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        V.write_lists(folder, tmp_path / "lists", **kwargs)
    if case in ("flat", "no match"):
        assert ("loose.mp4" if case == "flat" else "a_00") in str(err.value)
