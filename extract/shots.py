"""Where a video's shots change, so that timed windows follow the video instead of the clock.

A cut is a frame whose small grey picture differs from the one before by far more than neighbouring frames
usually do: the mean absolute difference of 32x32 grey frames passes CUT_LEVEL grey levels and CUT_RATIO times
the median difference of the second before or of the second after it (fast motion raises the median of the
shot it is in, not of both shots around a cut). The frames come from one decoding pass on FFmpeg's threads,
swscale shrinking each frame before any Python sees it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vcap.errors import VcapError
from vcap.extract.decoders import decoder

SMALL = 32  # side of the grey frames compared
CUT_LEVEL = 20.0  # grey levels (0-255) of mean absolute difference a cut exceeds
CUT_RATIO = 4.0  # ... and this many times the recent median difference


def frame_differences(path: Path, backend: str = "auto") -> np.ndarray:
    """(frames - 1,) mean absolute difference of each frame's small grey picture from the one before."""
    pyav = decoder("pyav").library
    if backend in ("auto", "pyav") and pyav is not None:
        frames = _small_pyav(pyav, path)
    else:
        frames = (rgb.mean(axis=2) for _, rgb in decoder("opencv" if backend == "auto" else backend).decode(
            path, _Every(), None, SMALL))
    diffs, before = [], None
    for frame in frames:
        frame = frame.astype(np.float32)
        if before is not None:
            diffs.append(float(np.abs(frame - before).mean()))
        before = frame
    if before is None:
        raise VcapError(f"{path}: no decodable frames")
    return np.asarray(diffs, np.float32)


def _small_pyav(av, path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.reformat(width=SMALL, height=SMALL, format="gray").to_ndarray()
        except av.error.FFmpegError:  # a cut-off packet ends the stream, as for the sampler
            pass


class _Every:
    """A `wanted` set holding every frame index."""

    def __contains__(self, index: int) -> bool:
        return True


def cut_frames(diffs: np.ndarray, fps: float) -> list[int]:
    """Frame numbers where a shot starts (the frame after each jump in `diffs`)."""
    side = max(2, round(fps))
    cuts = []
    for i, diff in enumerate(diffs):
        if diff <= CUT_LEVEL:
            continue
        before, after = diffs[max(0, i - side) : i], diffs[i + 1 : i + 1 + side]
        usual = min((float(np.median(d)) for d in (before, after) if len(d)), default=0.0)
        if diff > CUT_RATIO * usual:
            cuts.append(i + 1)
    return cuts


def shot_windows(cuts: list[int], total: int, fps: float, min_seconds: float = 2.0,
                 max_seconds: float = 30.0) -> list[int]:
    """Window start frames: one window per shot, a shot shorter than `min_seconds` joined to the next (the
    last to the one before), a shot longer than `max_seconds` cut into equal windows no longer."""
    shortest, longest = max(1, round(min_seconds * fps)), max(1, round(max_seconds * fps))
    bounds = [0]
    for cut in cuts:
        if cut - bounds[-1] >= shortest and total - cut >= shortest:
            bounds.append(cut)
    starts = []
    for start, end in zip(bounds, bounds[1:] + [total]):
        pieces = -(-(end - start) // longest)
        starts.extend(start + (end - start) * k // pieces for k in range(pieces))
    return starts
