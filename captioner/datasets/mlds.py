"""MLDS / MSVD JSON list: [{"id": "<video file name>", "caption": ["...", ...]}, ...]; the id is the file name."""
from __future__ import annotations

from pathlib import Path

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import Sample, id_problem

NAME = "mlds"
SUMMARY = 'a JSON list [{"id": "<video file name>", "caption": [...]}] (MLDS/MSVD)'
VIDEOS = "the id is the video's file name (abc_5_15.avi)"
LOOSE = True  # any JSON list not of VATEX's (videoID) matches: auto-detection tries it last


def detect(data) -> bool:
    return isinstance(data, list) and not any(isinstance(item, dict) and "videoID" in item for item in data[:5])


def read(path: Path, data) -> list[Sample]:
    if not isinstance(data, list):
        raise VcapError(f'{path}: expected a JSON list of {{"id": ..., "caption": [...]}}, got {type(data).__name__}')
    out = []
    for i, item in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(item, dict):
            raise VcapError(f"{where}: expected an object with 'id' and 'caption', got {type(item).__name__}")
        vid, caps = item.get("id"), item.get("caption")
        if not isinstance(vid, str) or not vid:
            raise VcapError(f"{where}: missing or non-string 'id'")
        if (problem := id_problem(vid)) is not None:
            raise VcapError(f"{where}: id {vid!r} {problem}; an id is the file name of a video "
                            f"(its features are FEATS/<id>.npy)")
        if caps is None:
            raise VcapError(f"{where} ({vid}): missing 'caption'")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise VcapError(f"{where} ({vid}): 'caption' must be a list of strings")
        if not caps:
            raise VcapError(f"{where} ({vid}): empty caption list")
        out.append(Sample(vid, vid, tuple(caps)))
    return out
