"""What every decoder shares: its registry entry (`Decoder`, one per module of extract/decoders/), what the
header claims (`Header`), and turning a decoder's frames into groups of planned frames (a whole video's n, or one
window's n), with the checks that keep the frames those of a sequential read whatever the header says.

A decoder's `decode(path, wanted, last, size)` reads frames 0..last in order (to the end when `last` is None),
yields (index, frame resized to size x size RGB) for the indices in `wanted`, and returns (frames seen, seconds
at which the last one ends or None). It stops early at the end of the stream.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator

import numpy as np

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # ffmpeg's own chatter about broken packets
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # OpenCV's C++ warnings: a bad file gets vcap's one line only
import cv2  # noqa: E402

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # also when cv2 was imported before us

from vcap.errors import VcapError  # noqa: E402

Plan = Callable[[int], np.ndarray]  # a video's frame count -> the frame indices to take, in order
Frames = Generator[tuple[int, np.ndarray], None, tuple[int, "float | None"]]
Groups = Iterator[tuple[int, np.ndarray]]  # (group number, (group, size, size, 3) uint8), in order
# A stream whose last decodable frame ends before this share of the duration its header declares is cut off.
TRUNCATION_RATIO = 0.9


@dataclass(frozen=True)
class Decoder:
    """One decoder: its name, whether its library imported and how to install it, how it decodes, and
    optionally its own way to produce the planned groups (PyAV seeks); the sequential read is the default."""

    name: str
    library: object | None  # the imported module, None when it is not installed
    install: str  # the pip command that installs it
    decode: Callable[[Path, set, "int | None", int], Frames]
    groups: Callable[..., Groups] | None = None  # (path, plan, group, size, header, threads) -> Groups

    def planned_groups(self, path: Path, plan: Plan, group: int, size: int, header: "Header",
                       threads: bool = False) -> Groups:
        if self.groups is not None:
            return self.groups(path, plan, group, size, header, threads)
        return sequential_groups(self.decode, path, plan, group, size, header)


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Lines a C++ library writes straight to file descriptor 2 (decord's dmlc logging ignores its own
    level when opening fails) go nowhere: a bad file gets vcap's one line only."""
    with _stderr_lock:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def upright(frame: np.ndarray, degrees: float) -> np.ndarray:
    """The frame as it is shown: phones store pixels sideways with a display rotation (counter-clockwise
    degrees) beside them."""
    turns = round(degrees / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


def resize_rgb(frames: list[np.ndarray], size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 from RGB frames of any size; INTER_AREA is the right filter for shrinking."""
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_one(frame, size)
    return out


def resize_one(frame: np.ndarray, size: int) -> np.ndarray:
    """Every decoder resizes with this one call, so the features their frames lead to agree."""
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


class Header:
    """What the container header claims; it can be wrong, so it only plans the first pass and cross-checks."""

    def __init__(self, path: Path):
        cap = cv2.VideoCapture(str(path))
        try:
            self.opened = cap.isOpened()
            self.count, self.fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
            self.rotation = -cap.get(cv2.CAP_PROP_ORIENTATION_META) % 360  # OpenCV's is clockwise
        finally:
            cap.release()
        self.duration = self.count / self.fps if self.count > 0 and self.fps > 0 else None

    def check_complete(self, path: Path, frames_seen: int, end_time: float | None) -> None:
        """Frame counts in headers lie (tree.avi declares 444 and holds 68 frames plus empty repeats), so a
        short count alone proves nothing; a stream that stops early in *time* is what a cut-off file shows.
        `end_time` may be None or nonsense (decord on H.264 in AVI): then the count at the header's rate."""
        if self.duration is None or frames_seen >= self.count:
            return
        if end_time is None or not 0 < end_time <= 1.5 * self.duration:
            end_time = frames_seen / self.fps
        if end_time < TRUNCATION_RATIO * self.duration:
            raise VcapError(f"{path}: truncated (frames stop at {end_time:.1f}s of {self.duration:.1f}s)")


def assemble(frames: Iterator[tuple[int, np.ndarray]], wanted: np.ndarray, done: int) -> Generator:
    """Yield (group number, frames) for the rows of `wanted` (groups, group) from row `done` on, each as soon
    as its frames have all arrived (in any order); -> the number of rows done. Frames no later row needs
    are dropped, so memory holds about one group."""
    kept: dict[int, np.ndarray] = {}
    for index, frame in frames:
        kept[index] = frame
        while done < len(wanted) and all(int(i) in kept for i in wanted[done]):
            yield done, np.stack([kept[int(i)] for i in wanted[done]])
            done += 1
            if done < len(wanted):
                floor = int(wanted[done:].min())
                for i in [i for i in kept if i < floor]:
                    del kept[i]
    return done


def sequential_groups(decode, path: Path, plan: Plan, group: int, size: int, header: Header,
                      done: int = 0) -> Groups:
    """Plan with the header's frame count; if the stream ends before the last planned frame, plan again with
    the count actually seen and read the groups not yet given (a second pass, rare in practice). Groups
    before `done` were given already (by a seeking pass that gave up)."""
    if header.count > 0:
        wanted = plan(header.count).reshape(-1, group)
        rest = wanted[done:]
        frames = decode(path, set(rest.ravel().tolist()), int(rest.max()), size)
        done, (seen, end) = yield from _drain(frames, wanted, done)
        if done == len(wanted):
            return
    else:
        _, (seen, end) = yield from _drain(decode(path, set(), None, size), np.empty((0, group), np.int64), 0)
    if seen == 0:
        if not header.opened:
            raise VcapError(f"{path}: cannot open as a video (not a video, cut off, or an unsupported codec)")
        raise VcapError(f"{path}: no decodable frames")
    header.check_complete(path, seen, end)
    wanted = plan(seen).reshape(-1, group)
    rest = wanted[done:]
    done, _ = yield from _drain(decode(path, set(rest.ravel().tolist()), int(rest.max()), size), wanted, done)
    if done < len(wanted):
        raise VcapError(f"{path}: decoding is not repeatable (the second pass ended early)")


def _drain(frames: Frames, wanted: np.ndarray, done: int) -> Generator:
    """`assemble`, then -> (rows done, what the decoder returned: frames seen, end time)."""
    result = [0, None]

    def run() -> Iterator[tuple[int, np.ndarray]]:
        result[:] = yield from frames

    done = yield from assemble(run(), wanted, done)  # it reads to the end, where the decoder stops at `last`
    return done, tuple(result)
