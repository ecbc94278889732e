"""The decoded-clip cache: decode once, memory-mapped reads, keys that follow the file and the sampling,
atomic writes."""
import os

import numpy as np
import pytest

from mvd_lib import clip_cache
from mvd_lib.clip_cache import ClipCache


@pytest.fixture()
def video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not decoded here, only its identity matters" * 10)
    return path


def frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(4, 8, 10, 3), dtype=np.uint8)


def test_decode_once_then_memory_mapped_hits(tmp_path, video_file):
    cache = ClipCache(tmp_path / "cache")
    calls = []

    def decode():
        calls.append(1)
        return frames()

    first = cache.get_or_create(video_file, decode, indices=[0, 4, 8, 12], size=8, params={"stride": 4})
    second = cache.get_or_create(video_file, decode, indices=[0, 4, 8, 12], size=8, params={"stride": 4})
    assert len(calls) == 1 and (cache.misses, cache.hits) == (1, 1)
    assert isinstance(second, np.memmap) and not second.flags.writeable
    np.testing.assert_array_equal(first, frames())
    np.testing.assert_array_equal(second, frames())
    assert len(cache) == 1 and cache.nbytes() >= frames().nbytes
    # a new cache object on the same folder (another process, a later run) finds the entry
    other = ClipCache(tmp_path / "cache")
    np.testing.assert_array_equal(other.get_or_create(video_file, decode, indices=[0, 4, 8, 12], size=8,
                                                      params={"stride": 4}), frames())
    assert len(calls) == 1


def test_key_follows_file_indices_size_and_params(video_file):
    cache = ClipCache(video_file.parent / "cache")
    base = cache.key(video_file, [0, 1, 2], 8, {"stride": 4})
    assert base == cache.key(video_file, (0, 1, 2), 8, {"stride": 4})
    variants = [
        cache.key(video_file, [0, 1, 3], 8, {"stride": 4}),
        cache.key(video_file, None, 8, {"stride": 4}),
        cache.key(video_file, [0, 1, 2], 16, {"stride": 4}),
        cache.key(video_file, [0, 1, 2], (8, 10), {"stride": 4}),
        cache.key(video_file, [0, 1, 2], 8, {"stride": 2}),
        cache.key(video_file, [0, 1, 2], 8),
    ]
    assert len({base, *variants}) == len(variants) + 1
    st = video_file.stat()
    os.utime(video_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: mtime changes
    touched = cache.key(video_file, [0, 1, 2], 8, {"stride": 4})
    video_file.write_bytes(video_file.read_bytes() + b"!")  # edited: size changes
    assert len({base, touched, cache.key(video_file, [0, 1, 2], 8, {"stride": 4})}) == 3
    with pytest.raises(FileNotFoundError):
        cache.key(video_file.parent / "gone.mp4")


def test_failed_write_leaves_no_entry_and_no_temp_file(tmp_path, video_file, monkeypatch):
    cache = ClipCache(tmp_path / "cache")

    def broken_save(f, array, allow_pickle=False):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(clip_cache.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.get_or_create(video_file, frames, indices=[0])
    monkeypatch.undo()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    np.testing.assert_array_equal(cache.get_or_create(video_file, frames, indices=[0]), frames())


def test_rejects_non_uint8(tmp_path, video_file):
    cache = ClipCache(tmp_path / "cache")
    with pytest.raises(TypeError, match="uint8"):
        cache.get_or_create(video_file, lambda: frames().astype(np.float32))


def test_metadata_and_clear(tmp_path, video_file):
    cache = ClipCache(tmp_path / "cache")
    assert cache.get_meta(video_file) is None
    cache.put_meta(video_file, {"num_frames": 64, "height": 48, "width": 64})
    assert cache.get_meta(video_file) == {"num_frames": 64, "height": 48, "width": 64}
    cache.get_or_create(video_file, frames)
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.nbytes() == 0 and cache.get_meta(video_file) is None


def test_unreadable_entry_is_a_miss_and_is_rewritten(tmp_path, video_file):
    cache = ClipCache(tmp_path / "cache")
    cache.get_or_create(video_file, frames, indices=[0])
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short outside the cache (e.g. an older, non-atomic writer)
    cache.put_meta(video_file, {"num_frames": 4})
    (meta,) = (tmp_path / "cache").rglob("*.json")
    meta.write_text('{"num_fr')
    again = ClipCache(tmp_path / "cache")
    np.testing.assert_array_equal(again.get_or_create(video_file, frames, indices=[0]), frames())
    assert again.misses == 1 and again.hits == 0
    assert again.get_meta(video_file) is None and not meta.exists()
