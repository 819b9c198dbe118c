"""Video -> N uniformly sampled RGB frames, resized to one fixed square size.

PyAV is tried first, then decord, then OpenCV. decord and OpenCV decode sequentially up to the last sampled
frame: OpenCV's per-frame seeking was measured 5-90x slower on H.264, and decord's random access (get_batch,
skip_frames) returned wrong frames on 12 of 16 real MSVD/OpenCV clips here (decord issues #195, #252),
while its frame-by-frame next() matched OpenCV exactly on all 16.

PyAV reads the container's packet table (the index of MP4/MOV/AVI, else one demux pass that decodes
nothing) and, per video, either decodes sequentially or seeks to the keyframe before each sampled frame and
decodes forward, whichever decodes fewer frames. Frames are numbered by counting, never by timestamp: a
keyframe's number is its position in decode order (plus an open GOP's leading frames), and each frame the
decoder outputs after it is the next number. Timestamps would mislead: AVI holds none (B-frame AVIs come out
with shuffled pts), variable frame rates break any pts = i / fps rule, and streams need not start at 0.
Each seek is checked (it landed on the keyframe planned, that keyframe is the first frame out); a failed
check falls back to sequential decoding, so the frames are always those of a sequential read. Headers
that lie about the frame count plan and cross-check as for the other decoders (`_wanted_indices`).
All paths resize with the same cv2 call, so the features they lead to agree.
"""
from __future__ import annotations

import bisect
import os
from typing import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # ffmpeg's own chatter about broken packets
import cv2  # noqa: E402

from vcap.errors import VcapError, library_text  # noqa: E402
from vcap.extract.config import DECODERS  # noqa: E402

try:
    import av
    import av.video.reformatter
except ImportError:  # PyAV is a dependency, but the other decoders still work without it
    av = None
try:
    import decord

    decord.logging.set_level(decord.logging.QUIET)
except ImportError:  # no wheel for this platform: OpenCV alone
    decord = None

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
# Decoding one frame after a seek costs more than one frame decoded in sequence (flush, demuxer seek, the
# decoder's threads refilling): charged as this many frames when choosing between the two.
SEEK_COST_FRAMES = 4
# Containers whose index lists every frame once it is open (mov/mp4's sample table, AVI's idx1); any other
# container's table comes from a demux pass.
FULL_INDEX_FORMATS = ("mov", "mp4", "avi")
# A stream whose last decodable frame ends before this share of the duration its header declares is cut off.
TRUNCATION_RATIO = 0.9


def sample_indices(total: int, n: int) -> np.ndarray:
    """Indices of n frames at the centres of n equal segments of a `total`-frame video.

    A video shorter than n frames repeats frames rather than giving fewer rows.
    """
    if total <= 0:
        raise ValueError("total must be positive")
    return np.minimum(((np.arange(n) + 0.5) * total / n).astype(np.int64), total - 1)


Plan = Callable[[int], np.ndarray]  # a video's frame count -> the frame indices to take, in order


def window_plan(fps: float, every: float, n: int, spans: list) -> Plan:
    """n frames at the centres of equal segments of each consecutive `every`-second window (the last may be
    shorter). The windows' (start, end) seconds are left in `spans`, for the frame count decoding settles on."""
    def plan(total: int) -> np.ndarray:
        step = max(1, round(every * fps))
        starts = list(range(0, total, step))
        spans[:] = [(start / fps, min(start + step, total) / fps) for start in starts]
        return np.concatenate([start + sample_indices(min(step, total - start), n) for start in starts])
    return plan


def resize_rgb(frames: list[np.ndarray], size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 from RGB frames of any size; INTER_AREA is the right filter for shrinking."""
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return out


def read_frames(path: str | os.PathLike, n: int, size: int = 224, backend: str = "auto",
                plan: Plan | None = None) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB frames sampled uniformly from the video at `path`; with `plan`, the
    frames it picks from the video's frame count instead (e.g. `window_plan`: n per window), in its order.

    Raises VcapError naming the file for anything a user can hit: missing, empty, not a video, no frames,
    truncated. With backend="auto" a file PyAV cannot read falls back to decord, then to OpenCV.
    """
    path = Path(path)
    plan = plan or (lambda total: sample_indices(total, n))
    if backend not in DECODERS:
        raise ValueError(f"backend must be one of {DECODERS}")
    if not path.is_file():
        raise VcapError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VcapError(f"{path}: empty file")
    if backend == "decord" and decord is None:
        raise VcapError("decord is not installed (pip install decord; x86_64 Linux wheels only)")
    if backend == "pyav" and av is None:
        raise VcapError("PyAV is not installed (pip install av)")
    header = _Header(path)
    if backend in ("auto", "pyav") and av is not None:
        try:
            return _sample_pyav(path, plan, size, header)
        except VcapError:
            raise
        except Exception as exc:  # av.error.InvalidDataError and kin on files FFmpeg cannot handle
            if backend == "pyav":
                raise VcapError(f"{path}: PyAV cannot read it ({library_text(exc, 200)})") from None
    if backend in ("auto", "decord") and decord is not None:
        try:
            return _sample(path, plan, size, header, _decode_decord)
        except VcapError:
            raise
        except Exception as exc:  # decord raises DECORDError, RuntimeError... on files it cannot handle
            if backend == "decord":
                raise VcapError(f"{path}: decord cannot read it ({library_text(exc)})") from None
    return _sample(path, plan, size, header, _decode_opencv)


def read_windows(path: str | os.PathLike, n: int, every: float, size: int = 224, backend: str = "auto",
                 frames_per_pass: int = 640) -> Iterator[tuple[list[tuple[float, float]], np.ndarray]]:
    """Cut the video into consecutive `every`-second windows and yield, a few windows at a time,
    ([(start, end) seconds per window], frames (windows, n, size, size, 3)): n frames of each window as
    `read_frames` samples a whole video. Each pass takes about `frames_per_pass` frames, so memory stays
    bounded on long videos; the seeking decoder reads only the parts each pass needs."""
    fps = _Header(Path(path)).fps
    if not fps > 0:
        raise VcapError(f"{path}: its header gives no frame rate, so it cannot be cut into timed windows")
    per_pass, first = max(1, frames_per_pass // n), 0
    while True:
        spans: list[tuple[float, float]] = []
        timed = window_plan(fps, every, n, spans)

        def plan(total: int) -> np.ndarray:
            return timed(total).reshape(-1, n)[first : first + per_pass].reshape(-1)

        frames = read_frames(path, n, size, backend, plan=plan)
        taken = spans[first : first + per_pass]
        yield taken, frames.reshape(len(taken), n, size, size, 3)
        first += per_pass
        if first >= len(spans):
            return


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


def _sample(path: Path, plan: Plan, size: int, header: _Header, decode) -> np.ndarray:
    """Plan with the header's frame count; if the stream ends before the last planned frame, plan again
    with the count actually seen (a second pass, rare in practice)."""
    if header.count > 0:
        wanted = plan(header.count)
        kept, seen, end = decode(path, set(wanted.tolist()), int(wanted.max()))
        if len(kept) == len(set(wanted.tolist())):
            return resize_rgb([kept[int(i)] for i in wanted], size)
    else:
        _, seen, end = decode(path, set(), None)
    if seen == 0:
        if not header.opened:
            raise VcapError(f"{path}: cannot open as a video (not a video, cut off, or an unsupported codec)")
        raise VcapError(f"{path}: no decodable frames")
    header.check_complete(path, seen, end)
    wanted = plan(seen)
    kept, _, _ = decode(path, set(wanted.tolist()), int(wanted.max()))
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


@dataclass(frozen=True)
class _PacketTable:
    """The video packets in decode order, read without decoding: their count and where the keyframes are.
    Every packet decodes to one frame on the files seen here (all 21 real clips: packets == frames decoded
    == OpenCV's count; tree.avi's empty repeats are no packets), so a keyframe's position in decode order is
    also its frame's number (plus an open GOP's leading frames, see `_decode_run`). After a seek, the
    keyframe landed on is found by the key the table holds: its dts for an index (an index entry's
    timestamp is its packet's dts), its byte offset for a demux pass (Matroska leaves the first packets'
    dts unset; AVI index offsets point 8 bytes before the packet's)."""

    count: int
    keyframes: list[int]  # decode positions of the keyframes
    keys: list[int]  # per keyframe: dts (from an index) or byte offset (from a demux pass)
    times: list[int]  # per keyframe: the timestamp to seek to (stream time base)
    by_offset: bool  # which of the two `keys` holds
    end_time: float | None  # seconds at which the last frame ends, as a sequential decode reports it
    complete: bool  # every packet's bytes lie inside the file (a cut mp4 still has its full index)

    @property
    def seekable(self) -> bool:
        """A stream that does not open on a keyframe loses its first frames in a sequential decode, so its
        packets and frames would not line up."""
        return (self.count > 0 and self.complete and self.keyframes[:1] == [0] and None not in self.keys
                and len(set(self.keys)) == len(self.keys))

    def key(self, packet) -> int | None:
        return packet.pos if self.by_offset else packet.dts


def _packet_table(container, stream, file_size: int) -> _PacketTable:
    """From the index where it lists every frame (no read: one pass over the entries, under 1 us each),
    else from one demux pass (reads the file, decodes nothing)."""
    entries = stream.index_entries
    by_offset = not (set(container.format.name.split(",")) & set(FULL_INDEX_FORMATS) and len(entries))
    count, keyframes, keys, times, last_time = 0, [], [], [], None
    if by_offset:
        for packet in container.demux(stream):
            time = packet.pts if packet.pts is not None else packet.dts
            if packet.size <= 0:  # the flush packet at the end
                continue
            if packet.is_keyframe and time is not None:
                keyframes.append(count)
                keys.append(packet.pos)
                times.append(time)
            if time is not None:
                last_time = time if last_time is None else max(last_time, time)
            count += 1
        container.seek(0, stream=stream)  # back to the start for whoever decodes next
        complete = True  # what a demux pass reads is there
    else:
        for entry in entries:  # empty repeats (AVI) and entries an edit list discards (mp4) are no frames
            flags = entry.flags  # one attribute read per entry: this loop is the cost of a long file
            if flags & 2 or entry.size <= 0:  # AVINDEX_DISCARD_FRAME
                continue
            if flags & 1:  # AVINDEX_KEYFRAME
                keyframes.append(count)
                times.append(entry.timestamp)
            count += 1
            last = entry
        keys = times  # an index entry's timestamp is its packet's dts
        last_time = last.timestamp if count else None
        final = entries[len(entries) - 1]  # the index is in decode order: its last entry's bytes end last
        complete = final.pos + final.size <= file_size
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    end = None
    if last_time is not None and stream.time_base:  # absolute, as frame.time: a start at 3 s ends at 3 s + length
        end = float(last_time * stream.time_base) + (1 / rate if rate > 0 else 0)
    return _PacketTable(count=count, keyframes=keyframes, keys=keys, times=times, by_offset=by_offset,
                        end_time=end, complete=complete)


def _wanted_indices(path: Path, plan: Plan, header: _Header, count: int, end_time: float | None) -> np.ndarray:
    """The indices `_sample` settles on, known up front from the packet count: the header's count when the
    stream holds its last planned frame, else the count itself once the truncation check has passed."""
    if header.count > 0:
        wanted = plan(header.count)
        if wanted.max() < count:
            return wanted
    header.check_complete(path, count, end_time)
    return plan(count)


def _seek_plan(keyframes: list[int], targets: list[int]) -> list[tuple[int, list[int]]] | None:
    """Runs of (keyframe to seek to, sorted targets decoded forward from it), or None when reading
    sequentially from frame 0 decodes no more frames. A target in reach of the frames already decoded is
    cheaper to decode forward to than to seek to."""
    runs: list[tuple[int, list[int]]] = []
    cost, position = 0, -1  # position: the last frame decoded
    for target in targets:
        key = keyframes[bisect.bisect_right(keyframes, target) - 1]  # keyframes[0] == 0: see `seekable`
        if runs and key <= position + SEEK_COST_FRAMES:
            cost += target - position
            runs[-1][1].append(target)
        else:
            cost += target - key + 1 + SEEK_COST_FRAMES
            runs.append((key, [target]))
        position = target
    return runs if cost < targets[-1] + 1 else None


def _sample_pyav(path: Path, plan: Plan, size: int, header: _Header) -> np.ndarray:
    """Seek when that decodes fewer frames than a sequential read, else read sequentially (`_sample`)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VcapError(f"{path}: no video stream")
        stream = container.streams.video[0]
        table = _packet_table(container, stream, path.stat().st_size)
        if table.seekable:
            wanted = _wanted_indices(path, plan, header, table.count, table.end_time)
            seeks = _seek_plan(table.keyframes, sorted(set(wanted.tolist())))
            kept = _decode_seeking(container, stream, table, seeks) if seeks else None
            if kept is not None:
                return resize_rgb([kept[int(i)] for i in wanted], size)
    return _sample(path, plan, size, header, _decode_pyav)


def _decode_seeking(container, stream, table: _PacketTable, plan) -> dict[int, np.ndarray] | None:
    """The planned frames, or None if a seek did not land where planned (sequential decoding then).
    A target that is one of an open GOP's leading frames (shown before its keyframe, decoded from the GOP
    before) is decoded again from the keyframe before."""
    position_of = dict(zip(table.keys, table.keyframes))
    kept: dict[int, np.ndarray] = {}
    reformatter = av.video.reformatter.VideoReformatter()
    try:
        for key, run in plan:
            if not _decode_run(container, stream, table, position_of, key, run, kept, reformatter):
                return None
            missing = [t for t in run if t not in kept]
            if missing:  # an open GOP's leading frames: decode them from the keyframe before
                before = bisect.bisect_left(table.keyframes, key) - 1
                if before < 0 or not _decode_run(container, stream, table, position_of, table.keyframes[before],
                                                 missing, kept, reformatter) or any(t not in kept for t in missing):
                    return None
    except av.error.FFmpegError:  # a corrupt packet: the sequential read decides what it means
        return None
    return kept


def _decode_run(container, stream, table: _PacketTable, position_of: dict[int, int], key: int,
                run: list[int], kept: dict[int, np.ndarray], reformatter) -> bool:
    """Seek to keyframe `key`, decode forward and keep the frames of `run` (sorted) met on the way.
    False if the seek landed elsewhere or the first frame out is not the keyframe.

    The keyframe's frame number is its decode position plus its leading frames: the packets after it whose
    pts come before its own (an open GOP), which the decoder drops after a seek. Every later frame follows
    in display order, one number each."""
    targets = set(run)
    seek_to = table.times[bisect.bisect_left(table.keyframes, key)]
    container.seek(seek_to, stream=stream, backward=True)  # also flushes the decoder
    first = key_pts = index = None  # decode position landed on; its pts; number of the next frame out
    leading = 0
    for packet in container.demux(stream):
        if first is None:
            if packet.size == 0:
                continue
            first = position_of.get(table.key(packet))
            if first is None or first > key or not packet.is_keyframe:
                return False
            key_pts = packet.pts
        elif index is None and packet.pts is not None and key_pts is not None and packet.pts < key_pts:
            leading += 1
        for frame in stream.decode(packet):
            if index is None:
                if not frame.key_frame:  # the decoder showed a leading frame after all: numbers unknown
                    return False
                index = first + leading
            if index in targets:
                kept[index] = _to_rgb(frame, reformatter)
            index += 1
        if index is not None and index > run[-1]:
            break
    return True


def _to_rgb(frame, reformatter) -> np.ndarray:
    """One reformatter for a whole video: `frame.to_ndarray` builds a new swscale context per frame, which
    cost 10x the conversion itself (3.4 ms against 0.33 ms per 320x240 frame here)."""
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def _decode_pyav(path: Path, wanted: set[int], last: int | None) -> Decoded:
    kept: dict[int, np.ndarray] = {}
    reformatter = av.video.reformatter.VideoReformatter()
    seen, end = 0, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                if frame.time is not None:  # B-frames in AVI come out with shuffled times: the latest counts
                    end = max(end or 0.0, frame.time + (frame.duration or 0) * float(stream.time_base or 0))
                if seen in wanted:
                    kept[seen] = _to_rgb(frame, reformatter)
                seen += 1
                if last is not None and seen > last:
                    break
        except av.error.FFmpegError:  # a cut-off packet ends the stream, as it does for OpenCV and decord
            pass
    return kept, seen, end
