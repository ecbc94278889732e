"""Multi-view evaluation (mvd_reference.md section 6): softmax per view, mean per video, top-1/top-5."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mvd_lib.classifier import VideoClassifier
from mvd_lib.config import ViTConfig
from mvd_lib.evaluate import ViewPredictions, evaluate, merge_views, predict_views, score_views, topk_accuracy
from mvd_lib.rng import generator

SMALL = ViTConfig(width=32, depth=1, heads=2, num_frames=4, img_size=16, patch_size=4, tubelet_size=2)

# One video, four views, three classes. Per-view argmax votes: class 1 twice, 0 once, 2 once -> vote says 1.
# Mean of logits: [3.5, 1.75, 3.75] -> 2. Mean of softmax probabilities -> 0 (view 2 is very sure of 0).
DISAGREEING_LOGITS = [[3.0, 4.0, 2.0], [8.0, 0.0, 3.0], [2.0, 3.0, 2.0], [1.0, 0.0, 8.0]]


def softmax_by_hand(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_merge_averages_probabilities_after_softmax_not_logits_or_votes():
    # video 7: the four disagreeing views; video 3: two views that agree on class 2
    logits = DISAGREEING_LOGITS + [[0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    views = ViewPredictions.from_logits(logits, video_index=[7, 7, 7, 7, 3, 3], label=[0, 0, 0, 0, 2, 2])
    videos = merge_views(views)

    probs = [softmax_by_hand(r) for r in DISAGREEING_LOGITS]
    expected7 = [sum(p[c] for p in probs) / 4 for c in range(3)]
    probs3 = [softmax_by_hand(r) for r in logits[4:]]
    expected3 = [sum(p[c] for p in probs3) / 2 for c in range(3)]

    assert videos.video_index.tolist() == [3, 7]  # ascending video ids
    assert videos.num_views.tolist() == [2, 4]
    assert videos.label.tolist() == [2, 0]
    np.testing.assert_allclose(videos.probs[0], expected3, rtol=1e-6)
    np.testing.assert_allclose(videos.probs[1], expected7, rtol=1e-6)

    # the three decision rules really disagree on video 7, and the merge follows the probability mean
    votes = np.bincount(np.argmax(DISAGREEING_LOGITS, axis=1), minlength=3)
    assert votes.argmax() == 1
    assert np.mean(DISAGREEING_LOGITS, axis=0).argmax() == 2
    assert int(np.argmax(expected7)) == 0
    assert videos.pred.tolist() == [2, 0]
    result = score_views(views)
    assert result.top1 == 100.0 and result.num_videos == 2 and result.num_views == 6


def test_topk_by_hand_and_k_beyond_class_count():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    labels = np.array([0, 1, 2, 2])  # top-1 right for row 0 only; row 1 and 2 have the label 2nd
    acc = topk_accuracy(probs, labels, ks=(1, 2, 5))
    assert acc[1] == 25.0
    assert acc[2] == 100.0  # rows 1, 2 and 3 have their label second
    assert acc[5] == 100.0  # k >= K: all 3 classes are in the top 5
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        topk_accuracy(probs, np.array([0, 1, 2, 3]))


def test_few_classes_report_no_top5():
    views = ViewPredictions.from_logits([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], video_index=[0, 1], label=[0, 2])
    result = score_views(views)
    assert result.top1 == 50.0 and result.top5 is None and result.num_classes == 3


def test_label_disagreement_within_a_video_is_an_error():
    views = ViewPredictions.from_logits(np.zeros((4, 3)), video_index=[0, 0, 1, 1], label=[1, 1, 0, 2])
    with pytest.raises(ValueError, match="video 1 has labels \\[0, 2\\]"):
        merge_views(views)


def test_missing_views_are_reported():
    views = ViewPredictions.from_logits(np.zeros((5, 3)), video_index=[0, 0, 1, 2, 2], label=[0, 0, 1, 2, 2])
    with pytest.warns(UserWarning, match="1 of 3 videos have fewer than 2 views"):
        result = score_views(views)
    assert result.incomplete_videos == [1] and result.views_per_video == 2
    assert result.to_dict()["num_views_per_video"] == [2, 1, 2]


class ViewSet(torch.utils.data.Dataset):
    """A tiny multi-view test set: `videos` videos x `views` views, each view its own random clip."""

    def __init__(self, videos: int, views: int, num_classes: int, with_video_index: bool = True):
        g = generator(0)
        self.clips = torch.randn(videos * views, 3, SMALL.num_frames, SMALL.img_size, SMALL.img_size, generator=g)
        self.labels = torch.randint(0, num_classes, (videos,), generator=g).tolist()
        self.views, self.with_video_index = views, with_video_index

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = {"video": self.clips[i], "label": self.labels[i // self.views], "index": i, "path": f"v{i}.mp4"}
        if self.with_video_index:
            item["video_index"] = i // self.views
        return item


def test_evaluate_video_classifier_end_to_end():
    model = VideoClassifier(SMALL, num_classes=7, init_scale=1.0, seed=0)  # a visible head, not ~0 logits
    model.train()
    data = ViewSet(videos=4, views=3, num_classes=7)
    result = evaluate(model, data, batch_size=5, progress=False)  # 5 does not divide 12: a ragged last batch
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(data.clips), dim=-1).reshape(4, 3, 7).mean(dim=1)  # [videos, K]
    labels = torch.tensor(data.labels)
    assert result.num_videos == 4 and result.num_views == 12 and result.views_per_video == 3
    assert result.incomplete_videos == []
    np.testing.assert_allclose(result.videos.probs, probs.numpy(), rtol=1e-5, atol=1e-6)
    assert result.top1 == pytest.approx(100.0 * (probs.argmax(1) == labels).float().mean().item())
    top5 = (probs.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    assert result.top5 == pytest.approx(100.0 * top5)
    saved = result.to_dict(include_probs=True)
    assert saved["video_index"] == [0, 1, 2, 3] and len(saved["probs"]) == 4 and saved["label"] == data.labels


def test_items_without_video_index_are_their_own_videos():
    model = VideoClassifier(SMALL, num_classes=4, seed=0)
    data = ViewSet(videos=3, views=2, num_classes=4, with_video_index=False)  # 6 items, each its own video
    views = predict_views(model, data, batch_size=4, progress=False)
    assert views.video_index.tolist() == list(range(6)) and views.probs.shape == (6, 4)
    np.testing.assert_allclose(views.probs.sum(axis=1), 1.0, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every video has exactly one view: nothing to warn about
        result = score_views(views)
    assert result.num_videos == 6 and result.views_per_video == 1


# ---------------------------------------------------------------------------------------------- unreadable videos
class ReplacedViewSet(ViewSet):
    """ViewSet whose videos in `bad` could not be read: their views show video 0's clips, marked "replaced"."""

    def __init__(self, videos: int, views: int, num_classes: int, bad: set[int]):
        super().__init__(videos, views, num_classes)
        self.bad = bad

    def __getitem__(self, i: int) -> dict:
        vid = i // self.views
        served = 0 if vid in self.bad else vid
        item = super().__getitem__(served * self.views + i % self.views)
        item.update(video_index=vid, replaced=int(vid in self.bad))
        return item

    def video_name(self, vid: int) -> str:
        return f"list.csv:{vid + 1} v{vid}.mp4"


def test_replaced_views_are_skipped_and_reported_not_scored():
    model = VideoClassifier(SMALL, num_classes=7, init_scale=1.0, seed=0)
    data = ReplacedViewSet(videos=5, views=3, num_classes=7, bad={1, 3})
    with pytest.warns(UserWarning, match=r"2 of 5 videos could not be read .*list.csv:2 v1.mp4; list.csv:4 v3.mp4"):
        result = evaluate(model, data, batch_size=4, progress=False)
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(data.clips), dim=-1).reshape(5, 3, 7).mean(dim=1)[[0, 2, 4]]
    labels = torch.tensor(data.labels)[[0, 2, 4]]
    assert result.num_videos == 3 and result.num_views == 9 and result.num_skipped == 2
    assert result.videos.video_index.tolist() == [0, 2, 4] and result.videos.num_views.tolist() == [3, 3, 3]
    np.testing.assert_allclose(result.videos.probs, probs.numpy(), rtol=1e-5, atol=1e-6)
    assert result.top1 == pytest.approx(100.0 * (probs.argmax(1) == labels).float().mean().item())
    assert result.to_dict()["skipped_videos"] == [{"video_index": 1, "name": "list.csv:2 v1.mp4"},
                                                  {"video_index": 3, "name": "list.csv:4 v3.mp4"}]


def test_a_video_with_some_replaced_views_is_skipped_whole():
    views = ViewPredictions(probs=np.full((4, 3), 1 / 3), video_index=[0, 0, 1, 1], label=[0, 0, 1, 1],
                            index=[0, 1, 2, 3], skipped=[1])
    with pytest.warns(UserWarning, match="1 of 2 videos could not be read"):
        result = score_views(views)
    assert result.num_skipped == 1 and result.skipped_videos == [{"video_index": 1, "name": "video 1"}]
    everything_bad = ViewPredictions(probs=np.zeros((0, 3)), video_index=[], label=[], index=[], skipped=[0, 1])
    with pytest.raises(ValueError, match="no video could be scored: all 2 videos were unreadable"):
        score_views(everything_bad)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_test_videos_on_real_files_are_skipped_by_identity(tmp_path, num_workers):
    """3 good test videos and 6 bad ones: the accuracy covers the 3, the 6 are named; with workers too."""
    import shutil

    from mvd_lib.samples import SAMPLES_DIR
    from mvd_lib.video_data import VideoClsDataset

    good = sorted((SAMPLES_DIR / "videos").glob("test_*.mp4"))[:3]
    (tmp_path / "v").mkdir()
    lines = []
    for i, src in enumerate(good):
        shutil.copy(src, tmp_path / "v" / src.name)
        lines.append(f"v/{src.name} {i}")
        (tmp_path / "v" / f"empty{i}.mp4").write_bytes(b"")
        lines += [f"v/missing{i}.mp4 {i}", f"v/empty{i}.mp4 {i}"]
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")  # good, missing, empty, good, ...
    kw = dict(crop_size=16, clip_len=4, stride=2, test_clips=2, test_crops=1)
    data = VideoClsDataset(tmp_path / "test.csv", 4, "test", **kw)
    model = VideoClassifier(SMALL, num_classes=4, init_scale=1.0, seed=0)
    with pytest.warns(UserWarning, match="6 of 9 videos could not be read"):
        result = evaluate(model, data, batch_size=4, progress=False, num_workers=num_workers)
    assert result.num_videos == 3 and result.num_skipped == 6 and result.num_views == 6
    assert result.videos.video_index.tolist() == [0, 3, 6] and result.videos.label.tolist() == [0, 1, 2]
    assert [s["video_index"] for s in result.skipped_videos] == [1, 2, 4, 5, 7, 8]
    assert result.skipped_videos[0]["name"] == f"test.csv:2 {tmp_path / 'v' / 'missing0.mp4'}"
    assert len(data.bad_inputs) == 6  # the dataset's summary, from the workers as well
    # known answer: the same model on the three good videos alone
    alone = tmp_path / "good.csv"
    alone.write_text("".join(f"v/{src.name} {i}\n" for i, src in enumerate(good)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = evaluate(model, VideoClsDataset(alone, 4, "test", **kw), batch_size=4, progress=False)
    np.testing.assert_allclose(result.videos.probs, expected.videos.probs, rtol=1e-5, atol=1e-6)
    assert result.top1 == expected.top1
