"""Scale-out: --shard jobs and torchrun ranks split the videos disjointly and merge one manifest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vcap.extract.config import ExtractConfig
from vcap.extract.folder import extract_folder, in_share
from vcap.device import resolve_device
from vcap.errors import VcapError

SMALL = dict(frames=4, size=64, weights="none", device="cpu", workers=0)
FLAGS = ["--frames", "4", "--size", "64", "--weights", "none", "--workers", "0", "--device", "cpu"]


def broken_file_in_each_share(folder: Path, count: int) -> dict[int, str]:
    """One unreadable 'video' per share, named so that its hash lands there."""
    names, n = {}, 0
    while len(names) < count:
        name = f"broken{n}.mp4"
        share = next(i for i in range(count) if in_share(name, (i, count)))
        if share not in names:
            (folder / name).write_bytes(b"not a video")
            names[share] = name
        n += 1
    return names


@pytest.mark.slow
def test_shards_cover_every_video_exactly_once_and_merge_failures(tmp_path, make_video):
    videos = {make_video(f"clip{i}.mp4", frames=8, seed=i).name for i in range(6)}
    broken = broken_file_in_each_share(tmp_path / "videos", 2)
    out = tmp_path / "feats"
    summaries = [extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL, shard=(i, 2))) for i in range(2)]
    assert sum(s.done for s in summaries) == len(videos)
    assert {p.name[:-4] for p in out.glob("*.npy")} == videos
    assert set(summaries[0].failed) == {broken[0]} and set(summaries[1].failed) == {broken[1]}
    assert set(json.loads((out / "manifest.json").read_text())["failures"]) == set(broken.values())
    again = extract_folder(tmp_path / "videos", out, ExtractConfig(**SMALL, shard=(1, 2)))
    assert again.done == 0 and again.skipped == summaries[1].done


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_ranks_split_the_videos_and_write_one_manifest(tmp_path, make_video):
    videos = {make_video(f"clip{i}.mp4", frames=8, seed=i).name for i in range(5)}
    broken = broken_file_in_each_share(tmp_path / "videos", 2)
    out = tmp_path / "feats"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vcap", "extract", str(tmp_path / "videos"), str(out), *FLAGS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0  # each rank met one broken file and says so
    assert "extract 0/2" in result.stderr and "extract 1/2" in result.stderr
    assert {p.name[:-4] for p in out.glob("*.npy")} == videos
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["failures"]) == set(broken.values())
    assert all(np.load(out / f"{v}.npy").shape == (4, 4096) for v in videos)


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:2") == torch.device("cuda", 2) and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(VcapError, match="sees 4 GPU"):
        resolve_device("cuda:4")


LATE_RANK_0 = """
import os, sys, time
import torch, torch.distributed as dist
from vcap.extract.config import ExtractConfig
from vcap.extract.folder import extract_folder
from vcap.distributed import join_torchrun

extract_folder(sys.argv[1], sys.argv[2], ExtractConfig(**eval(sys.argv[3])))
assert dist.is_initialized(), "extraction left no process group for training to share"
if os.environ["RANK"] == "0":
    time.sleep(2)  # a late rank 0 made a re-created group read stale addresses and time out
assert join_torchrun(torch.device("cpu"))
total = torch.ones(1)
dist.all_reduce(total)
open(f"{sys.argv[2]}.rank{os.environ['RANK']}", "w").write(str(int(total)))
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_training_shares_the_process_group_extraction_made(tmp_path, make_video):
    for i in range(2):
        make_video(f"clip{i}.mp4", frames=8, seed=i)
    script = tmp_path / "late_rank_0.py"
    script.write_text(LATE_RANK_0)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tmp_path / "videos"), str(tmp_path / "feats"), repr(SMALL)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(tmp_path / f"feats.rank{r}").read_text() for r in range(2)] == ["2", "2"]  # both joined one sum


def synthetic_features(root: Path, videos: int = 12, frames: int = 5, dim: int = 16) -> tuple[Path, Path]:
    """Features whose class decides the caption, as `vcap extract` would lay them out."""
    rng = np.random.default_rng(0)
    feats = root / "feats"
    feats.mkdir()
    words = ["red", "green", "blue"]
    labels = []
    for v in range(videos):
        kind = v % 3
        x = rng.normal(size=(frames, dim)).astype(np.float32)
        x[:, kind] += 3
        np.save(feats / f"v{v}.avi.npy", x)
        labels.append({"id": f"v{v}.avi", "caption": [f"a {words[kind]} thing moves", f"the {words[kind]} thing"]})
    (root / "labels.json").write_text(json.dumps(labels))
    return feats, root / "labels.json"


TRAIN = ["--hidden", "16", "--embed-dim", "8", "--dropout", "0", "--lr", "0.01", "--min-count", "1",
         "--batch-size", "8", "--teacher-forcing", "always", "--patience", "0", "--device", "cpu",
         "--precision", "fp32", "--val-fraction", "0.25"]


def train_under_torchrun(ranks: int, feats: Path, labels: Path, out: Path, *extra: str):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "vcap", "train", str(feats), str(labels), "--out", str(out), *TRAIN, *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return _history(out)


def _history(out: Path) -> list[dict]:
    import csv

    return list(csv.DictReader((out / "history.csv").open()))


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path):
    feats, labels = synthetic_features(tmp_path)
    one = train_under_torchrun(1, feats, labels, tmp_path / "one", "--epochs", "4")
    two = train_under_torchrun(2, feats, labels, tmp_path / "two", "--epochs", "4")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 0.02 * float(a["train_loss"])
        assert abs(float(a["val_loss"]) - float(b["val_loss"])) < 0.02 * float(a["val_loss"])
    assert float(two[-1]["train_loss"]) < float(two[0]["train_loss"])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "config.json", "history.csv",
                                                                   "history.png", "last.pt"]


@pytest.mark.slow
@pytest.mark.distributed
def test_an_interrupted_two_rank_run_resumes(tmp_path):
    feats, labels = synthetic_features(tmp_path)
    straight = train_under_torchrun(2, feats, labels, tmp_path / "straight", "--epochs", "3")
    train_under_torchrun(2, feats, labels, tmp_path / "resumed", "--epochs", "2")
    resumed = train_under_torchrun(2, feats, labels, tmp_path / "resumed", "--epochs", "3", "--resume")
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert abs(float(resumed[-1]["train_loss"]) - float(straight[-1]["train_loss"])) < 1e-4
