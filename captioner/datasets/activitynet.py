"""ActivityNet Captions: {"v_<youtube id>": {"duration", "timestamps": [[start, end], ...], "sentences": [...]}};
each timed sentence is a sample of that span; the split is the file's (train.json, val_1.json, val_2.json)."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import Sample, split_of_file, timed

NAME = "activitynet"
SUMMARY = 'ActivityNet Captions {"v_<id>": {"duration", "timestamps", "sentences"}}, one sample per timed sentence'
VIDEOS = "the key v_<youtube id> is the video v_<youtube id>.mp4; each sentence's features come from its span"


def detect(data) -> bool:
    if not isinstance(data, dict) or not data:
        return False
    first = next(iter(data.values()))
    return isinstance(first, dict) and "timestamps" in first and "sentences" in first


def read(path: Path, data) -> list[Sample]:
    split, out = split_of_file(path), []
    for vid, entry in data.items():
        stamps = entry.get("timestamps") if isinstance(entry, dict) else None
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            raise VcapError(f"{path}: {vid}: expected 'timestamps' and 'sentences', two lists of one length")
        out += timed(vid, zip(stamps, sentences), path, vid, entry.get("duration"), split)
    return out
