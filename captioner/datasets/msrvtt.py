"""MSR-VTT `*_videodatainfo.json`: {"videos": [{"video_id", "split", "start time", ...}], "sentences":
[{"video_id", "caption"}]}, with its own train/validate/test split; video123 is the clip video123.mp4."""
from __future__ import annotations

from pathlib import Path

from vcap.captioner.datasets.sample import Sample, grouped_captions, objects, split_name

NAME = "msrvtt"
LAYOUT = "MSR-VTT videodatainfo"
SUMMARY = 'MSR-VTT *_videodatainfo.json {"videos": [...], "sentences": [...]}, split train/validate/test'
VIDEOS = "video_id videoN is the clip videoN.mp4 (the start/end times are within the YouTube video it was cut from)"


def detect(data) -> bool:
    return isinstance(data, dict) and "videos" in data and "sentences" in data


def read(path: Path, data) -> list[Sample]:
    captions = grouped_captions(data, "sentences", "video_id", path, LAYOUT)
    return [Sample(vid, vid, tuple(captions.get(vid, ())), split_name(video.get("split"), path, where))
            for vid, video, where in objects(data, "videos", "video_id", path, LAYOUT)]
