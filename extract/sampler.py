"""Video -> N uniformly sampled RGB frames, resized to one fixed square size.

decord is tried first and OpenCV is the fallback. Both decode sequentially up to the last sampled frame:
OpenCV's per-frame seeking was measured 5-90x slower on H.264, and decord's random access (get_batch,
skip_frames) returned wrong frames on 12 of 16 real MSVD/OpenCV clips here (decord issues #195, #252),
while its frame-by-frame next() matched OpenCV exactly on all 16. Both paths resize with the same cv2 call,
so the features they lead to agree.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # ffmpeg's own chatter about broken packets
import cv2  # noqa: E402

from vcap.errors import VcapError, library_text  # noqa: E402

try:
    import decord

    decord.logging.set_level(decord.logging.QUIET)
except ImportError:  # no wheel for this platform: OpenCV alone
    decord = None

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
BACKENDS = ("auto", "decord", "opencv")
# A stream whose last decodable frame ends before this share of the duration its header declares is cut off.
TRUNCATION_RATIO = 0.9


def sample_indices(total: int, n: int) -> np.ndarray:
    """Indices of n frames at the centres of n equal segments of a `total`-frame video.

    A video shorter than n frames repeats frames rather than giving fewer rows.
    """
    if total <= 0:
        raise ValueError("total must be positive")
    return np.minimum(((np.arange(n) + 0.5) * total / n).astype(np.int64), total - 1)


def resize_rgb(frames: list[np.ndarray], size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 from RGB frames of any size; INTER_AREA is the right filter for shrinking."""
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return out


def read_frames(path: str | os.PathLike, n: int, size: int = 224, backend: str = "auto") -> np.ndarray:
    """(n, size, size, 3) uint8 RGB frames sampled uniformly from the video at `path`.

    Raises VcapError naming the file for anything a user can hit: missing, empty, not a video, no frames,
    truncated. With backend="auto" a file decord cannot read falls back to OpenCV.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    if not path.is_file():
        raise VcapError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VcapError(f"{path}: empty file")
    if backend == "decord" and decord is None:
        raise VcapError("decord is not installed (pip install decord; x86_64 Linux wheels only)")
    header = _Header(path)
    if backend != "opencv" and decord is not None:
        try:
            return _sample(path, n, size, header, _decode_decord)
        except VcapError:
            raise
        except Exception as exc:  # decord raises DECORDError, RuntimeError... on files it cannot handle
            if backend == "decord":
                raise VcapError(f"{path}: decord cannot read it ({library_text(exc)})") from None
    return _sample(path, n, size, header, _decode_opencv)


class _Header:
    """What the container header claims; it can be wrong, so it only plans the first pass and cross-checks."""

    def __init__(self, path: Path):
        cap = cv2.VideoCapture(str(path))
        try:
            self.opened = cap.isOpened()
            self.count, self.fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
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


# A decoder reads frames 0..last in order, keeps those in `wanted` (RGB), and reports how many frames it saw
# and when the last one ends (seconds, or None if unknown). It stops early at the end of the stream.
Decoded = "tuple[dict[int, np.ndarray], int, float | None]"


def _sample(path: Path, n: int, size: int, header: _Header, decode) -> np.ndarray:
    """Plan with the header's frame count; if the stream ends before the last planned frame, plan again
    with the count actually seen (a second pass, rare in practice)."""
    if header.count > 0:
        wanted = sample_indices(header.count, n)
        kept, seen, end = decode(path, set(wanted.tolist()), int(wanted[-1]))
        if len(kept) == len(set(wanted.tolist())):
            return resize_rgb([kept[int(i)] for i in wanted], size)
    else:
        _, seen, end = decode(path, set(), None)
    if seen == 0:
        if not header.opened:
            raise VcapError(f"{path}: cannot open as a video (not a video, cut off, or an unsupported codec)")
        raise VcapError(f"{path}: no decodable frames")
    header.check_complete(path, seen, end)
    wanted = sample_indices(seen, n)
    kept, _, _ = decode(path, set(wanted.tolist()), int(wanted[-1]))
    if len(kept) < len(set(wanted.tolist())):
        raise VcapError(f"{path}: decoding is not repeatable (the second pass ended early)")
    return resize_rgb([kept[int(i)] for i in wanted], size)


def _decode_opencv(path: Path, wanted: set[int], last: int | None) -> Decoded:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    kept: dict[int, np.ndarray] = {}
    seen, end = 0, None
    try:
        while last is None or seen <= last:
            if not cap.grab():
                break
            end = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 + (1 / fps if fps > 0 else 0)
            if seen in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                kept[seen] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            seen += 1
    finally:
        cap.release()
    return kept, seen, end


def _decode_decord(path: Path, wanted: set[int], last: int | None) -> Decoded:
    reader = decord.VideoReader(str(path), num_threads=1)
    if len(reader) == 0:
        return {}, 0, None
    kept: dict[int, np.ndarray] = {}
    seen = 0
    while last is None or seen <= last:
        try:
            frame = reader.next()  # never skip_frames/get_batch: see the module docstring
        except StopIteration:
            break
        if seen in wanted:
            kept[seen] = frame.asnumpy()
        seen += 1
    end = float(reader.get_frame_timestamp(seen - 1)[1]) if seen else None
    return kept, seen, end
