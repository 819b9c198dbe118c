"""What every dataset reader hands back: one Sample per captioned video or timed segment, and the small rules
all readers share (split names, caption whitespace, segment times, the split a file name says)."""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vcap.errors import VcapError

SPLITS = ("train", "val", "test")
# The datasets' own spellings of the three splits (MSR-VTT "validate", YouCook2 "training"/"validation").
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val",
               "valid": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Sample:
    """One captioned clip: a whole video (span None) or the [start, end) seconds of one (timed datasets)."""

    id: str  # the dataset's own name for the sample
    video: str  # the video file it comes from, without extension (MLDS and COCO: the file name itself)
    captions: tuple[str, ...]
    split: str | None = None  # train, val or test; None where the file has no splits
    span: tuple[float, float] | None = None  # seconds within the video; None: the whole video


def id_problem(vid: str) -> str | None:
    """Why `vid` cannot name a file inside FEATS, or None: an id must never reach outside that folder."""
    if vid in (".", ".."):
        return "is a folder name"
    if "/" in vid or "\\" in vid:
        return "holds a path separator"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in vid):  # a line-oriented output keeps an id whole
        return "holds a control character or line break"
    if len(f"{vid}.npy".encode("utf-8", "surrogatepass")) > 255:
        return "is too long for a file name"
    return None


def split_name(value, path: Path, where: str) -> str | None:
    """A dataset's split field as train/val/test; an unknown one is an error naming the value."""
    if value is None:
        return None
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise VcapError(f"{path}: {where}: unknown split {value!r} (expected one of {', '.join(SPLIT_NAMES)})")
    return name


def split_of_file(path: Path) -> str | None:
    """The split a file's name says (ActivityNet's train.json / val_1.json, VATEX's *_validation_*.json)."""
    for word in re.split(r"[^a-z]+", Path(path).stem.lower()):
        if word in SPLIT_NAMES:
            return SPLIT_NAMES[word]
    return None


def clean_captions(captions, path: Path, where: str) -> tuple[str, ...]:
    """Captions without the annotators' surrounding whitespace (leading spaces, a leading newline); empty
    ones dropped."""
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
        raise VcapError(f"{path}: {where}: captions must be strings")
    return tuple(c.strip() for c in captions if c.strip())


def objects(data: dict, field: str, key: str, path: Path, layout: str) -> Iterator[tuple[str, dict, str]]:
    """(its `key` as a string, the object, where it is) for each object of the list data[field] (MSR-VTT's
    videos and sentences, COCO's images and annotations)."""
    if not isinstance(data.get(field), list):
        raise VcapError(f"{path}: '{field}' must be a list ({layout})")
    for i, item in enumerate(data[field]):
        if not isinstance(item, dict) or not isinstance(item.get(key), (str, int)):
            raise VcapError(f"{path}: {field}[{i}]: expected an object with '{key}' ({layout})")
        yield str(item[key]), item, f"{field}[{i}]"


def grouped_captions(data: dict, field: str, key: str, path: Path, layout: str) -> dict[str, list[str]]:
    """key -> its captions, from the list data[field] of {key, "caption"} objects."""
    out: dict[str, list[str]] = {}
    for value, item, where in objects(data, field, key, path, layout):
        out.setdefault(value, []).extend(clean_captions(item.get("caption"), path, where))
    return out


def clean_span(segment, duration, path: Path, where: str) -> tuple[float, float]:
    """[start, end] seconds as a (start, end) with start <= end, inside [0, duration] when it is known:
    reversed segments are swapped and ends past the duration (float noise in ActivityNet) are clipped.
    A zero-length segment stays one: its features come from the frame at that time."""
    try:
        start, end = (float(t) for t in segment)
    except (TypeError, ValueError):
        raise VcapError(f"{path}: {where}: expected a [start, end] pair of seconds, got {segment!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise VcapError(f"{path}: {where}: segment times must be finite numbers, got {segment!r}")
    start, end = sorted((max(start, 0.0), max(end, 0.0)))
    if isinstance(duration, (int, float)) and duration > 0:
        start, end = min(start, float(duration)), min(end, float(duration))
    return round(start, 3), round(end, 3)


def span_suffix(span: tuple[float, float] | None) -> str:
    """What a timed sample adds to its video's name, in its id and its feature file: "@12.50-19.86"."""
    return "" if span is None else f"@{span[0]:.2f}-{span[1]:.2f}"


def timed(video: str, pieces, path: Path, where: str, duration=None, split: str | None = None) -> list[Sample]:
    """Samples of one video's timed sentences [(segment, sentence), ...]; sentences of one span share a sample."""
    grouped: dict[tuple[float, float], list[str]] = {}
    for i, (segment, sentence) in enumerate(pieces):
        span = clean_span(segment, duration, path, f"{where} segment {i}")
        grouped.setdefault(span, []).extend(clean_captions(sentence, path, f"{where} segment {i}"))
    return [Sample(video + span_suffix(span), video, tuple(caps), split, span) for span, caps in grouped.items()
            if caps]
