"""Video -> planned RGB frames at one fixed square size: n per video (`read_frames`), or n per timed window
(`read_windows`), from whichever decoder of the registry (`vcap.extract.decoders`) reads the file.

With --decoder auto, PyAV is tried first, then decord, then OpenCV; every decoder gives the frames of a
sequential read (extract/decoding.py), resized with the same cv2 call, so the features they lead to agree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from vcap.ahead import Ahead
from vcap.errors import VcapError, library_text
from vcap.extract.config import DECODERS
from vcap.extract.decoders import NAMES as DECODER_NAMES, decoder
from vcap.extract.decoding import Groups, Header, Plan
from vcap.extract.shots import cut_frames, frame_differences, shot_windows

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
# Images are refused wherever they are named (a folder's are skipped as any non-video file is): a caption
# model trained on motion says nothing reliable about one still frame.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic")
# Frames decoded ahead of the caller by `read_windows`' decoding thread: a pass of the backbone (640 frames,
# pipeline.caption.MAX_PASS_FRAMES) and as many again, so decoding never waits while the backbone runs a pass;
# memory stays bounded on a long video (1,280 frames of 224x224 are 190 MB).
FRAMES_AHEAD = 1280


def sample_indices(total: int, n: int) -> np.ndarray:
    """Indices of n frames at the centres of n equal segments of a `total`-frame video.

    A video shorter than n frames repeats frames rather than giving fewer rows.
    """
    if total <= 0:
        raise ValueError("total must be positive")
    return np.minimum(((np.arange(n) + 0.5) * total / n).astype(np.int64), total - 1)


def window_plan(fps: float, every: float, n: int, spans: list, starts: list[int] | None = None) -> Plan:
    """n frames at the centres of equal segments of each consecutive `every`-second window (the last may be
    shorter), or of the windows beginning at the frames `starts` (shots). The windows' (start, end) seconds are
    left in `spans`, for the frame count decoding settles on."""
    def plan(total: int) -> np.ndarray:
        if starts is None:
            firsts = list(range(0, total, max(1, round(every * fps))))
        else:
            firsts = [0] + [start for start in starts if 0 < start < total]
        ends = firsts[1:] + [total]
        spans[:] = [(start / fps, end / fps) for start, end in zip(firsts, ends)]
        return np.concatenate([start + sample_indices(end - start, n) for start, end in zip(firsts, ends)])
    return plan


def read_frames(path: str | os.PathLike, n: int, size: int = 224, backend: str = "auto",
                plan: Plan | None = None) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB frames sampled uniformly from the video at `path`; with `plan`, the
    frames it picks from the video's frame count instead (e.g. `window_plan`: n per window), in its order.

    Raises VcapError naming the file for anything a user can hit: missing, empty, not a video, no frames,
    truncated. With backend="auto" a file PyAV cannot read falls back to decord, then to OpenCV.
    """
    plan = plan or (lambda total: sample_indices(total, n))
    return np.concatenate([frames for _, frames in _groups(Path(path), plan, n, size, backend, threads=False)])


def read_windows(path: str | os.PathLike, n: int, every: float | str, size: int = 224, backend: str = "auto",
                 frames_per_pass: int = 640, shot_seconds: tuple[float, float] = (2.0, 30.0),
                 ) -> Iterator[tuple[list[tuple[float, float]], np.ndarray]]:
    """Cut the video into consecutive `every`-second windows (every="shots": one window per shot, from
    `shot_seconds[0]` to `shot_seconds[1]` long, see extract/shots.py) and yield, a few windows at a time,
    ([(start, end) seconds per window], frames (windows, n, size, size, 3)): n frames of each window as
    `read_frames` samples a whole video, about `frames_per_pass` frames a time.

    The file is opened once; a thread decodes (on all cores, FFmpeg's threads) up to FRAMES_AHEAD frames
    ahead of the caller, so decoding overlaps whatever the caller does with each batch (the backbone)."""
    path = Path(path)
    header = _checked_header(path, backend)
    if not header.fps > 0:
        raise VcapError(f"{path}: its header gives no frame rate, so it cannot be cut into timed windows")
    spans: list[tuple[float, float]] = []
    if every == "shots":
        diffs = frame_differences(path, backend)
        starts = shot_windows(cut_frames(diffs, header.fps), len(diffs) + 1, header.fps, *shot_seconds)
        plan = window_plan(header.fps, 0.0, n, spans, starts)
    else:
        plan = window_plan(header.fps, float(every), n, spans)
    per_pass = max(1, frames_per_pass // n)
    batch: list[np.ndarray] = []
    first = 0
    groups = _groups(path, plan, n, size, backend, threads=True, header=header)
    for number, frames in Ahead(groups, max(1, FRAMES_AHEAD // n), "vcap-decode"):
        batch.append(frames)
        if len(batch) == per_pass or number == len(spans) - 1:
            yield spans[first : first + len(batch)], np.stack(batch)
            first, batch = first + len(batch), []
    if batch:  # the stream ended short of its header's count: the windows were planned again
        yield spans[first : first + len(batch)], np.stack(batch)


def _checked_header(path: Path, backend: str) -> Header:
    if backend not in DECODERS:
        raise ValueError(f"backend must be one of {DECODERS}")
    if not path.is_file():
        raise VcapError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VcapError(f"{path}: empty file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VcapError(f"{path}: an image, not a video; vcap captions videos ({', '.join(VIDEO_EXTENSIONS)})")
    if backend != "auto" and decoder(backend).library is None:
        raise VcapError(f"{backend} is not installed ({decoder(backend).install})")
    return Header(path)


def _groups(path: Path, plan: Plan, group: int, size: int, backend: str, threads: bool,
            header: Header | None = None) -> Groups:
    """The planned frames, `group` at a time, from the first decoder that reads the file. A decoder that
    fails part-way hands over to the next, which gives the groups not yet given."""
    header = header or _checked_header(path, backend)
    names = [backend] if backend != "auto" else [name for name in DECODER_NAMES if decoder(name).library is not None]
    given = 0
    for name in names:
        entry = decoder(name)
        try:
            for number, frames in entry.planned_groups(path, plan, group, size, header, threads):
                if number >= given:
                    given += 1
                    yield number, frames
            return
        except VcapError:
            raise
        except Exception as exc:  # av.error.InvalidDataError, DECORDError... on files a library cannot handle
            if backend != "auto" or name == names[-1]:
                raise VcapError(f"{path}: {name} cannot read it ({library_text(exc, 200)})") from None
