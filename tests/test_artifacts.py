"""The shipped teachers (artifacts/): their bytes match the manifest, they load strictly, and train-or-load adopts
them for their profile's presets instead of training."""
from __future__ import annotations

import hashlib
import json

import mvd_lib  # noqa: F401  (installs the torchvision guard)
import pytest

from mvd_lib import profiles, runner
from mvd_lib.runs import ARTIFACTS, Run

MANIFEST = ARTIFACTS / "MANIFEST.json"
ENTRIES = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def test_the_quick_and_laptop_teachers_are_shipped():
    shipped = {(e["profile"], key.split("/")[0]) for key, e in ENTRIES.items()}
    for name in ("quick", "laptop"):
        assert {(name, "pretrain-image"), (name, "pretrain-video")} <= shipped, sorted(shipped)


@pytest.mark.parametrize("key", sorted(ENTRIES))
def test_shipped_teacher_matches_its_manifest_and_loads_strictly(key):
    entry = ENTRIES[key]
    folder = ARTIFACTS / key
    data = (folder / "model.pth").read_bytes()
    assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    run = Run.load(folder)
    assert run.metrics["status"] == "finished" and (folder / "command.txt").read_text().strip() == entry["command"]
    encoder = run.encoder()  # strict: a missing or unexpected key raises
    assert sum(p.numel() for p in encoder.parameters()) > 0
    # the folder is what train-or-load looks for: the preset of its profile hashes to it
    verb, name = key.split("/")
    p = profiles.profile(entry["profile"])
    assert name == f"{entry['profile']}-{runner.plan(verb, profiles.preset(verb, entry['profile']), p).hash}"


@pytest.mark.parametrize("key", sorted(k for k in ENTRIES if ENTRIES[k]["profile"] == "quick"))
def test_train_or_load_adopts_the_shipped_teacher(key, tmp_path):
    verb = key.split("/")[0]
    run = runner.run(verb, "quick", root=tmp_path, progress=False)
    assert run.folder == tmp_path / key
    assert (run.folder / "model.pth").read_bytes() == (ARTIFACTS / key / "model.pth").read_bytes()


def test_a_record_kept_without_weights_gives_way_to_the_shipped_teacher(tmp_path):
    """The records of results/*/runs/ restored into runs/ (as README's claims section describes) name the shipped
    teachers' hashes without their weights: train-or-load adopts the shipped teacher instead of failing."""
    key = "pretrain-video/" + next(k.split("/")[1] for k in ENTRIES if k.startswith("pretrain-video/quick-"))
    kept = tmp_path / key
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text((ARTIFACTS / key / "metrics.json").read_text())
    run = runner.run("pretrain-video", "quick", root=tmp_path, progress=False)
    assert run.folder == kept and (kept / "model.pth").read_bytes() == (ARTIFACTS / key / "model.pth").read_bytes()
    run.encoder()  # loads
