"""Scale-out: --shard jobs and torchrun ranks split the videos disjointly and merge one manifest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import cli
from extract.extractor import ExtractConfig, extract_folder, in_share

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


def test_torchrun_ranks_split_the_videos_and_write_one_manifest(tmp_path, make_video):
    videos = {make_video(f"clip{i}.mp4", frames=8, seed=i).name for i in range(5)}
    broken = broken_file_in_each_share(tmp_path / "videos", 2)
    out = tmp_path / "feats"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(Path(cli.__file__)), "extract", str(tmp_path / "videos"), str(out), *FLAGS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0  # each rank met one broken file and says so
    assert "extract 0/2" in result.stderr and "extract 1/2" in result.stderr
    assert {p.name[:-4] for p in out.glob("*.npy")} == videos
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["failures"]) == set(broken.values())
    assert all(np.load(out / f"{v}.npy").shape == (4, 4096) for v in videos)
