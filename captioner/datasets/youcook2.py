"""YouCook2: {"database": {"<youtube id>": {"subset", "duration", "annotations": [{"segment", "sentence"}]}}};
each annotated segment is a sample of that span."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import Sample, split_name, timed

NAME = "youcook2"
SUMMARY = 'YouCook2 {"database": {"<id>": {"subset", "annotations": [{"segment", "sentence"}]}}}, one sample a segment'
VIDEOS = "the key <youtube id> is the video <youtube id>.mp4 (in any subfolder); each segment's features come " \
         "from its span"


def detect(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("database"), dict)


def read(path: Path, data) -> list[Sample]:
    out = []
    for vid, entry in data["database"].items():
        notes = entry.get("annotations") if isinstance(entry, dict) else None
        if not isinstance(notes, list) or not all(isinstance(a, dict) for a in notes):
            raise VcapError(f"{path}: database.{vid}: expected 'annotations', a list of {{'segment', 'sentence'}}")
        split = split_name(entry.get("subset"), path, f"database.{vid}")
        out += timed(vid, ((a.get("segment"), a.get("sentence", "")) for a in notes), path, f"database.{vid}",
                     entry.get("duration"), split)
    return out
