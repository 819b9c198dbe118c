"""Output formats, one registry (Whisper's `get_writer`): a writer is chosen by its name (--output-format,
--srt, --vtt, --json), never by a file's suffix. Structured formats (json, jsonl, tsv) hold an entry for every
video, failures included; line formats escape control characters in names so a line stays one line."""
from __future__ import annotations

import json
from pathlib import Path

from vcap.errors import VcapError
from vcap.files import atomic_write, ensure_folder
from vcap.pipeline.results import Span, VideoResult, check_unique

WRITERS: dict[str, type[Writer]] = {}


def register(cls: type[Writer]) -> type[Writer]:
    """Add a writer to the registry under its `name`; --output-format and `all` list it from then on."""
    WRITERS[cls.name] = cls
    return cls


def get_writer(name: str) -> Writer:
    if name not in WRITERS:
        raise VcapError(f"unknown output format {name!r}; choose from {', '.join(WRITERS)} or all")
    return WRITERS[name]()


def printable(text: str) -> str:
    """`text` on one line: a newline, tab or escape in a file name shows as \\n, \\t, \\x1b."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clock(seconds: float, separator: str | None = None) -> str:
    """01:02:03, or 01:02:03,456 (SubRip: separator ",") / 01:02:03.456 (WebVTT: ".")."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return text if separator is None else f"{text}{separator}{millis:03d}"


def spans_json(spans: list[Span]) -> list[dict]:
    return [{"start": round(a, 3), "end": round(b, 3), "caption": text} for a, b, text in spans]


def entry(result: VideoResult) -> dict:
    """One video in the structured formats and in serve's answer."""
    if result.error is not None:
        return {"video": result.name, "error": result.error}
    found = ({"caption": result.caption} if result.spans is None else {"windows": spans_json(result.spans)})
    pictures = {"explain": [str(p.path) for p in result.explain]} if result.explain else {}
    return {"video": result.name, **found, **pictures}


class Writer:
    """Renders results as the text of one file."""

    name = ""  # what --output-format calls it
    per_video = False  # one file per video (<stem>.<name>), not one for the run (captions.<name>)
    timed = False  # holds timed captions only: needs --every

    def render(self, results: list[VideoResult]) -> str:
        raise NotImplementedError


@register
class TXT(Writer):
    """`<video>: <caption>` per video, or `<video> 00:00:00-00:00:10 <caption>` per span: what caption prints."""

    name = "txt"

    @staticmethod
    def span_line(name: str, span: Span) -> str:
        return f"{printable(name)} {clock(span[0])}-{clock(span[1])} {span[2]}"

    def lines(self, result: VideoResult) -> list[str]:
        if result.error is not None:
            return []
        if result.spans is None:
            return [f"{printable(result.name)}: {result.caption}"]
        return [self.span_line(result.name, span) for span in result.spans]

    def render(self, results: list[VideoResult]) -> str:
        return "".join(line + "\n" for result in results for line in self.lines(result))


@register
class JSON(Writer):
    """{"videos": [{"video", "caption" | "windows" | "error"}, ...]}, the shape serve answers with."""

    name = "json"

    def render(self, results: list[VideoResult]) -> str:
        return json.dumps({"videos": [entry(r) for r in results]}, indent=1, ensure_ascii=False) + "\n"


@register
class JSONL(Writer):
    """One JSON object per line, as `json`'s entries."""

    name = "jsonl"

    def render(self, results: list[VideoResult]) -> str:
        return "".join(json.dumps(entry(r), ensure_ascii=False) + "\n" for r in results)


@register
class TSV(Writer):
    """video, start, end, caption, error: a row per span (timed) or video; start and end empty for whole videos."""

    name = "tsv"

    def render(self, results: list[VideoResult]) -> str:
        rows = [("video", "start", "end", "caption", "error")]
        for r in results:
            if r.error is not None:
                rows.append((r.name, "", "", "", r.error))
            elif r.spans is None:
                rows.append((r.name, "", "", r.caption, ""))
            else:
                rows.extend((r.name, f"{a:.3f}", f"{b:.3f}", text, "") for a, b, text in r.spans)
        return "".join("\t".join(printable(str(field)) for field in row) + "\n" for row in rows)


@register
class SRT(Writer):
    """SubRip subtitles of one video."""

    name, per_video, timed = "srt", True, True

    def render(self, results: list[VideoResult]) -> str:
        (result,) = results
        return "".join(f"{i}\n{clock(a, ',')} --> {clock(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(result.spans, 1))


@register
class VTT(Writer):
    """WebVTT subtitles of one video."""

    name, per_video, timed = "vtt", True, True

    def render(self, results: list[VideoResult]) -> str:
        (result,) = results
        return "WEBVTT\n\n" + "".join(f"{clock(a, '.')} --> {clock(b, '.')}\n{text}\n\n" for a, b, text in result.spans)


def parse_formats(text: str | None, timed: bool) -> tuple[str, ...]:
    """--output-format: names separated by commas, or `all` (None too): every format that applies."""
    names = [n.strip().lower() for n in (text or "all").split(",") if n.strip()]
    if not names or "all" in names:
        return tuple(name for name, cls in WRITERS.items() if timed or not cls.timed)
    for name in names:
        if not get_writer(name).timed or timed:
            continue
        raise VcapError(f"--output-format {name} writes timed captions: give --every SECONDS too")
    return tuple(dict.fromkeys(names))


def write_file(target: str | Path, writer: Writer, results: list[VideoResult]) -> Path:
    with atomic_write(target) as tmp:
        tmp.write_text(writer.render(results), encoding="utf-8")
    return Path(target)


class Outputs:
    """The files of one caption run: per-video files as each result comes, the run's files at the end;
    `single` maps a format to the one file of a one-video run (--srt FILE, --vtt FILE)."""

    def __init__(self, paths: list[Path], folder: str | None = None, formats: tuple[str, ...] = (),
                 single: dict[str, str] | None = None):
        self.single = {name: target for name, target in (single or {}).items() if target}
        if self.single and len(paths) != 1:
            raise VcapError(f"--srt and --vtt write the subtitles of one video; {len(paths)} were given")
        self.writers = [get_writer(name) for name in formats] if folder else []
        if any(w.per_video for w in self.writers):
            check_unique(paths, "--output-dir", key=lambda path: path.stem)
        self.folder = ensure_folder(folder) if folder else None  # fails now, not after the work
        self.results: list[VideoResult] = []

    def add(self, result: VideoResult) -> None:
        self.results.append(result)
        if result.error is not None:
            return
        for name, target in self.single.items():
            write_file(target, get_writer(name), [result])
        for writer in self.writers:
            if writer.per_video:
                write_file(self.folder / f"{result.video.stem}.{writer.name}", writer, [result])

    def close(self) -> list[Path]:
        return [write_file(self.folder / f"captions.{w.name}", w, self.results) for w in self.writers
                if not w.per_video]
