"""MSR-VTT `*_videodatainfo.json`: {"videos": [{"video_id", "split", "start time", ...}], "sentences":
[{"video_id", "caption"}]}, with its own train/validate/test split; video123 is the clip video123.mp4."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from .sample import Sample, clean_captions, split_name

NAME = "msrvtt"
SUMMARY = 'MSR-VTT *_videodatainfo.json {"videos": [...], "sentences": [...]}, split train/validate/test'
VIDEOS = "video_id videoN is the clip videoN.mp4 (the start/end times are within the YouTube video it was cut from)"


def detect(data) -> bool:
    return isinstance(data, dict) and "videos" in data and "sentences" in data


def read(path: Path, data) -> list[Sample]:
    videos, sentences = data.get("videos"), data.get("sentences")
    if not isinstance(videos, list) or not isinstance(sentences, list):
        raise VcapError(f"{path}: 'videos' and 'sentences' must be lists (MSR-VTT videodatainfo)")
    captions: dict[str, list[str]] = {}
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, dict) or not isinstance(sentence.get("video_id"), str):
            raise VcapError(f"{path}: sentences[{i}]: expected an object with 'video_id' and 'caption'")
        captions.setdefault(sentence["video_id"], []).extend(
            clean_captions(sentence.get("caption"), path, f"sentences[{i}]"))
    out = []
    for i, video in enumerate(videos):
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str):
            raise VcapError(f"{path}: videos[{i}]: expected an object with 'video_id' and 'split'")
        vid = video["video_id"]
        out.append(Sample(vid, vid, tuple(captions.get(vid, ())), split_name(video.get("split"), path, f"videos[{i}]")))
    return out
