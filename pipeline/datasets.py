"""A dataset's samples meet a folder of videos: which file each sample's video is, which are missing, and
what `vcap run` extracts (whole videos, or one feature file per timed span) and `vcap data` reports.

How a sample finds its video: with --video-pattern, VIDEOS/<pattern filled in> ("{video}.mp4", "{id}.avi";
{video} is the dataset's video name, {id} the sample's id); without one, the file below VIDEOS (any subfolder)
whose name is the video name (MLDS ids are file names) or whose name less a video extension is (MSR-VTT's
video0 -> video0.mp4, ActivityNet's v_x -> v_x.mkv)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vcap.captioner.datasets import Sample, detect_format, feature_name, read_labels, split_counts, video_file
from vcap.errors import VcapError
from vcap.extract.config import ExtractConfig
from vcap.extract.sampler import VIDEO_EXTENSIONS

SHOWN_MISSING = 5  # missing videos named in a report; the rest are counted


@dataclass
class Resolved:
    """Sample videos and the files they are: found (video name -> path) and missing (video names, sorted)."""

    found: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def report(self, folder: str | Path) -> str | None:
        """One line naming how many videos are missing and the first few; None when none is."""
        if not self.missing:
            return None
        shown = ", ".join(self.missing[:SHOWN_MISSING]) + (", ..." if len(self.missing) > SHOWN_MISSING else "")
        total = len(self.missing) + len(self.found)
        return f"{len(self.missing)} of {total} videos are not in {folder}: {shown}"


def resolve_videos(samples: list[Sample], folder: str | Path, pattern: str | None = None) -> Resolved:
    """Each distinct video of `samples` as a file in `folder` (see the module's docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VcapError(f"{folder}: no such folder of videos")
    index = None if pattern else _index(folder)
    out = Resolved()
    for sample in samples:
        if sample.video in out.found or sample.video in out.missing:
            continue
        path = folder / video_file(sample, pattern) if pattern else index.get(sample.video)
        if path is not None and path.is_file():
            out.found[sample.video] = path
        else:
            out.missing.append(sample.video)
    out.missing.sort(key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)])
    return out


def _index(folder: Path) -> dict[str, Path]:
    """file name -> path and file name less its extension -> path, for every video below `folder`."""
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    by_stem = {}
    for p in videos:
        by_stem.setdefault(p.stem, p)
    return {**by_stem, **{p.name: p for p in videos}}


def extraction_plan(samples: list[Sample], resolved: Resolved, pattern: str | None = None
                    ) -> tuple[set[str], dict[str, list[tuple[str, tuple[float, float]]]]]:
    """What `extract_folder` takes for these samples: the file names of whole videos (their features are
    FEATS/<file name>.npy), and file name -> [(feature name, span)] of timed ones."""
    whole, spans = set(), {}
    for sample in samples:
        path = resolved.found.get(sample.video)
        if path is None:
            continue
        if sample.span is None:
            whole.add(path.name)
        else:
            spans.setdefault(path.name, []).append((feature_name(sample, pattern), sample.span))
    return whole, spans


def extract_labelled(videos: str | Path, out: str | Path, config: ExtractConfig, samples: list[Sample],
                     pattern: str | None = None, all_videos: bool = False):
    """Extract the videos `samples` name (a timed sample: its span only) from VIDEOS (a folder; one file is
    taken whole) into OUT; with `all_videos`, every video there. -> (ExtractSummary, Resolved)."""
    from vcap.extract.folder import extract_folder

    folder = Path(videos).is_dir()
    resolved = resolve_videos(samples, videos, pattern) if folder else Resolved()
    whole, spans = extraction_plan(samples, resolved, pattern)
    only = None if all_videos or not folder else whole
    return extract_folder(videos, out, config, only=only, spans=spans), resolved


def describe(labels: str | Path, format: str = "auto", videos: str | Path | None = None,
             pattern: str | None = None) -> dict:
    """What `vcap data` prints: the layout, videos/samples/captions per split, and missing videos."""
    samples = read_labels(labels, format)
    summary = {"format": detect_format(labels) if format == "auto" else format, "splits": split_counts(samples),
               "timed": any(s.span is not None for s in samples), "resolved": None}
    if videos is not None:
        summary["resolved"] = resolve_videos(samples, videos, pattern)
    return summary
