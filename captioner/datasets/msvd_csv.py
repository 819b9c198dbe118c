"""MSVD's original `MSR Video Description Corpus.csv` (VideoID, Start, End, ..., Language, Description): its
English rows, one clip <VideoID>_<Start>_<End> each. A `youtube_mapping.txt` beside it ("<clip> vidN" lines)
names the clips vidN and gives the usual split: vid1-1200 train, vid1201-1300 val, vid1301-1970 test."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import Sample

NAME = "msvd-csv"
SUMMARY = "MSVD's MSR Video Description Corpus.csv (English rows); youtube_mapping.txt beside it gives vidN and splits"
VIDEOS = "clip <VideoID>_<Start>_<End> is the file <VideoID>_<Start>_<End>.avi (YouTubeClips)"
TEXT = True
COLUMNS = ("VideoID", "Start", "End", "Language", "Description")
MAPPING = "youtube_mapping.txt"
SPLIT_ENDS = ((1200, "train"), (1300, "val"), (1970, "test"))  # vidN up to these is that split


def detect(data) -> bool:
    return isinstance(data, str) and all(column in data.partition("\n")[0] for column in COLUMNS)


def read(path: Path, data) -> list[Sample]:
    rows = csv.DictReader(io.StringIO(data))
    missing = [c for c in COLUMNS if c not in (rows.fieldnames or [])]
    if missing:
        raise VcapError(f"{path}: expected the MSVD csv columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    captions: dict[str, list[str]] = {}
    for row in rows:
        text = (row.get("Description") or "").strip()
        if row.get("Language") == "English" and text:
            clip = f"{row['VideoID']}_{row['Start']}_{row['End']}"
            captions.setdefault(clip, []).append(text)
    names = read_mapping(path.parent / MAPPING)
    return [Sample(names.get(clip, clip), clip, tuple(caps), split_of_vid(names.get(clip)))
            for clip, caps in captions.items()]


def read_mapping(path: Path) -> dict[str, str]:
    """clip -> vidN from MSVD's youtube_mapping.txt ("-4wsuPCjDBc_5_15 vid1" lines, CRLF); {} without one."""
    if not path.is_file():
        return {}
    pairs = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not all(len(pair) == 2 and pair[1].startswith("vid") for pair in pairs):
        raise VcapError(f"{path}: expected lines '<clip> vidN' (MSVD's youtube_mapping.txt)")
    return dict(pairs)


def split_of_vid(name: str | None) -> str | None:
    number = name[3:] if name else ""
    if not number.isdigit():
        return None
    return next((split for end, split in SPLIT_ENDS if int(number) <= end), None)
