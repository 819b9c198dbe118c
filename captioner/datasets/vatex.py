"""VATEX: [{"videoID": "<youtube id>_<start 6 digits>_<end 6 digits>", "enCap": [...]}]; the private test
file has ids only. Clips are files named by their videoID."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import Sample, clean_captions, split_of_file

NAME = "vatex"
SUMMARY = 'VATEX [{"videoID": "<youtube id>_<start>_<end>", "enCap": [...]}], split from the file name'
VIDEOS = "videoID is the clip's file name without extension (8JW7yCjSyHg_000000_000010.mp4)"


def detect(data) -> bool:
    return isinstance(data, list) and any(isinstance(item, dict) and "videoID" in item for item in data[:5])


def read(path: Path, data) -> list[Sample]:
    split, out = split_of_file(path), []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("videoID"), str):
            raise VcapError(f"{path}: entry {i}: expected an object with 'videoID' (VATEX)")
        vid = item["videoID"]
        parts = vid.rsplit("_", 2)  # from the right: YouTube ids may hold "_"
        if len(parts) != 3 or not parts[0] or not (parts[1].isdigit() and parts[2].isdigit()):
            raise VcapError(f"{path}: entry {i}: videoID {vid!r} is not <youtube id>_<start>_<end>")
        out.append(Sample(vid, vid, clean_captions(item.get("enCap", []), path, f"entry {i}"), split))
    return out
