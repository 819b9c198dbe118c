"""Timed captions as text: `00:00:00-00:00:10` lines, SubRip (.srt) and WebVTT (.vtt) files."""
from __future__ import annotations

from pathlib import Path

from vcap.files import atomic_write

Span = tuple[float, float, str]  # start and end in seconds, caption


def clock(seconds: float, separator: str | None = None) -> str:
    """01:02:03, or 01:02:03,456 (SubRip: separator ",") / 01:02:03.456 (WebVTT: ".")."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return text if separator is None else f"{text}{separator}{millis:03d}"


def spans_json(spans: list[Span]) -> list[dict]:
    """Timed captions as JSON objects (`vcap caption --every --json`, serve's ?every=)."""
    return [{"start": round(a, 3), "end": round(b, 3), "caption": text} for a, b, text in spans]


def srt(spans: list[Span]) -> str:
    return "".join(f"{i}\n{clock(a, ',')} --> {clock(b, ',')}\n{text}\n\n" for i, (a, b, text) in enumerate(spans, 1))


def vtt(spans: list[Span]) -> str:
    return "WEBVTT\n\n" + "".join(f"{clock(a, '.')} --> {clock(b, '.')}\n{text}\n\n" for a, b, text in spans)


def write_subtitles(path: str | Path, spans: list[Span]) -> None:
    """SubRip or WebVTT by the file's extension (.srt / .vtt), written atomically."""
    path = Path(path)
    text = vtt(spans) if path.suffix.lower() == ".vtt" else srt(spans)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
