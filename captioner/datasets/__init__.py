"""Dataset readers: one module per label layout, one registry (READERS), one entry point (read_labels).

A reader module holds everything about its layout: NAME (the --labels-format value), SUMMARY (what the file
looks like, for --help and errors), VIDEOS (how its ids name video files), detect(data) (whether parsed file
content has its structure) and read(path, data) -> [Sample]; TEXT = True where it reads the file as text, and
LOOSE = True where its detect matches more than its own layout (mlds: any JSON list). Every module of this
package with a NAME is a reader (sample.py, without one, holds what they share), so adding a layout is adding
one module. Auto-detection tries the readers in the order of their names, the loose ones last, so a file of a
specific layout is never taken for a loose one.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from vcap.errors import VcapError

from vcap.captioner.datasets.sample import SPLITS, Sample, id_problem, span_suffix

__all__ = ["READERS", "FORMATS", "SPLITS", "Sample", "read_labels", "register", "select_split", "feature_name",
           "split_counts"]


@dataclass(frozen=True)
class Reader:
    name: str
    summary: str
    videos: str
    detect: Callable[[Any], bool]
    read: Callable[[Path, Any], list[Sample]]
    text: bool = False  # reads the file as text (csv), not JSON
    loose: bool = False  # its detect matches more than its layout: auto-detection tries it last

    @classmethod
    def of(cls, module: ModuleType) -> "Reader":
        return cls(module.NAME, module.SUMMARY, module.VIDEOS, module.detect, module.read,
                   getattr(module, "TEXT", False), getattr(module, "LOOSE", False))


READERS: dict[str, Reader] = {}


def register(module: Any) -> Reader:
    """Add a layout from your own code: a module, or any object with NAME, SUMMARY, VIDEOS, detect and read (and
    TEXT, LOOSE where they apply). Auto-detection tries it after those registered before, and before the loose
    ones (the MLDS list, which any JSON list matches)."""
    reader = Reader.of(module)
    if reader.name in READERS:
        raise ValueError(f"label layout {reader.name!r} is registered twice")
    ordered = sorted([*READERS.values(), reader], key=lambda r: r.loose)  # stable: only the loose ones move
    READERS.clear()
    READERS.update((r.name, r) for r in ordered)
    return reader


_modules = (importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
for _module in sorted((m for m in _modules if hasattr(m, "NAME")), key=lambda m: m.NAME):
    register(_module)
FORMATS = ("auto", *READERS)


def read_labels(path: str | Path, format: str = "auto", split: str | None = None) -> list[Sample]:
    """The samples of a labels file in any layout READERS knows (auto: recognised from its structure), those
    of `split` only where the file has splits. Anything else is a one-line VcapError naming the file."""
    path = Path(path)
    if format != "auto" and format not in READERS:
        raise VcapError(f"--labels-format {format}: choose from {', '.join(FORMATS)}")
    data = _parse(path, READERS[format].text if format != "auto" else None)
    if format == "auto":
        reader = next((r for r in READERS.values() if r.detect(data)), None)
        if reader is None:
            loose = " or ".join(r.summary for r in READERS.values() if r.loose)
            others = "; ".join(f"{r.name}: {r.summary}" for r in READERS.values() if not r.loose)
            raise VcapError(f"{path}: expected {loose}, or one of the layouts {others}")
    else:
        reader = READERS[format]
        if not reader.detect(data):
            raise VcapError(f"{path}: not {format} labels: expected {reader.summary}")
    samples = reader.read(path, data)
    if not samples:
        raise VcapError(f"{path}: no videos in labels file")
    return select_split(samples, split, path)


def detect_format(path: str | Path) -> str:
    """The name of the reader that recognises the file (for `vcap data`)."""
    data = _parse(Path(path), None)
    return next((r.name for r in READERS.values() if r.detect(data)), "unknown")


def _parse(path: Path, text: bool | None) -> Any:
    """JSON content, or the text itself for text layouts (None: JSON if it looks like JSON)."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VcapError(f"{path}: no such labels file") from None
    except IsADirectoryError:
        raise VcapError(f"{path}: is a folder, not a labels file") from None
    except UnicodeDecodeError as exc:
        raise VcapError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if text or (text is None and content.lstrip()[:1] not in ("[", "{")):
        return content
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise VcapError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:  # valid JSON nested deeper than the parser goes
        raise VcapError(f"{path}: nested too deeply to be a labels file") from None


def select_split(samples: list[Sample], split: str | None, path: str | Path) -> list[Sample]:
    """The samples of `split`; all of them when `split` is None or the file has no splits."""
    if split is None or all(s.split is None for s in samples):
        return samples
    chosen = [s for s in samples if s.split == split]
    if not chosen:
        have = sorted({s.split for s in samples if s.split})
        raise VcapError(f"{path}: no samples of split {split} (it has {', '.join(have)}); choose one with --split")
    return chosen


def has_split(samples: list[Sample], split: str) -> bool:
    return any(s.split == split for s in samples)


def feature_name(sample: Sample, pattern: str | None = None) -> str:
    """The name of a sample's feature file in FEATS, less ".npy": its video's file name (from `pattern`, or its
    video name, which FEATS/<video>.<extension>.npy also matches), plus "@start-end" for a timed sample."""
    base = Path(video_file(sample, pattern)).name if pattern else sample.video
    name = base + span_suffix(sample.span)
    if (problem := id_problem(name)) is not None:
        raise VcapError(f"sample {sample.id!r}: its feature file name {name!r} {problem}")
    return name


def video_file(sample: Sample, pattern: str) -> str:
    """`pattern` ("{video}.mp4", "clips/{id}.avi") filled in for a sample; a bad pattern is one line."""
    try:
        return pattern.format(id=sample.id, video=sample.video)
    except (KeyError, IndexError, ValueError) as exc:
        raise VcapError(f"--video-pattern {pattern}: expected a pattern using {{video}} or {{id}} "
                        f"({type(exc).__name__}: {exc})") from None


def split_counts(samples: list[Sample]) -> dict[str, tuple[int, int, int]]:
    """split (or "all") -> (videos, samples, captions)."""
    out: dict[str, tuple[set, int, int]] = {}
    for s in samples:
        videos, n, caps = out.get(s.split or "all", (set(), 0, 0))
        videos.add(s.video)
        out[s.split or "all"] = (videos, n + 1, caps + len(s.captions))
    return {k: (len(v), n, c) for k, (v, n, c) in sorted(out.items(), key=lambda kv: _split_order(kv[0]))}


def _split_order(name: str) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)
