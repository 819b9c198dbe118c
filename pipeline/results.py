"""What captioning a video gives, typed: the CLI, the writers, serve and the Python API read the same fields."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vcap.errors import VcapError

Span = tuple[float, float, str]  # start and end in seconds, caption


@dataclass(frozen=True)
class Picture:
    """An explain picture: the frames the model saw and its attention per word."""

    path: Path
    start: float | None = None  # the window it explains, in seconds; None: the whole video
    end: float | None = None


@dataclass
class VideoResult:
    """One video's outcome: a caption (whole video), spans (timed windows, neighbours with the same caption
    merged), or an error; `name` is what the user knows it by (the path as given, or an upload's name)."""

    video: Path
    name: str
    caption: str | None = None
    spans: list[Span] | None = None
    explain: list[Picture] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def merge_spans(spans: list[Span]) -> list[Span]:
    """Consecutive windows with the same caption become one span."""
    merged: list[Span] = []
    for start, end, caption in spans:
        if merged and merged[-1][2] == caption:
            merged[-1] = (merged[-1][0], end, caption)
        else:
            merged.append((start, end, caption))
    return merged


def check_unique(paths: list[Path], what: str, key=lambda path: path.name) -> None:
    """Refuse, before any work, two videos that `what` would write to one file (one file per `key`)."""
    seen: dict[str, Path] = {}
    for path in paths:
        if key(path) in seen and seen[key(path)] != path:
            raise VcapError(f"{seen[key(path)]} and {path} would both write {key(path)!r} files, as {what} writes "
                            f"one file per video; caption them in two runs or rename one")
        seen[key(path)] = path
