"""PyAV's decoder: reads the container's packet table once (the index of MP4/MOV/AVI, else one demux pass that
decodes nothing) and, per call, either decodes sequentially or seeks to the keyframe before each planned frame
and decodes forward, whichever decodes fewer frames.

Frames are numbered by counting, never by timestamp: a keyframe's number is its position in decode order (plus
an open GOP's leading frames), and each frame the decoder outputs after it is the next number. Timestamps would
mislead: AVI holds none (B-frame AVIs come out with shuffled pts), variable frame rates break any pts = i / fps
rule, and streams need not start at 0. Each seek is checked (it landed on the keyframe planned, that keyframe
is the first frame out); a failed check hands the groups not yet given to the sequential read, so the frames
are always those of a sequential read. Headers that lie about the frame count plan and cross-check as for the
other decoders (`_wanted_indices`).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcap.errors import VcapError
from vcap.extract.decoding import (Decoder, Frames, Groups, Header, Plan, assemble, resize_one, sequential_groups,
                                  upright)

try:
    import av
    import av.video.reformatter  # FFmpeg's own log lines stay silent: PyAV's default
except ImportError:  # PyAV is a dependency, but the other decoders still work without it
    av = None

# Decoding one frame after a seek costs more than one frame decoded in sequence (flush, demuxer seek, the
# decoder's threads refilling): charged as this many frames when choosing between the two.
SEEK_COST_FRAMES = 4
# Containers whose index lists every frame once it is open (mov/mp4's sample table, AVI's idx1); any other
# container's table comes from a demux pass.
FULL_INDEX_FORMATS = ("mov", "mp4", "avi")


class _Missed(Exception):
    """A seek did not land where planned: the sequential read decides."""


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
    times: list[int]  # per keyframe: its timestamp (stream time base)
    last_time: int | None  # the latest packet timestamp (stream time base)
    by_offset: bool  # which of the two `keys` holds
    end_time: float | None  # seconds at which the last frame ends, as a sequential decode reports it
    complete: bool  # every packet's bytes lie inside the file (a cut mp4 still has its full index)

    @property
    def seekable(self) -> bool:
        """A stream that does not open on a keyframe loses its first frames in a sequential decode, so its
        packets and frames would not line up."""
        return (self.count > 0 and self.complete and self.keyframes[:1] == [0] and None not in self.keys
                and len(set(self.keys)) == len(self.keys))

    def seek_time(self, k: int) -> int:
        """Where to seek for keyframe k: halfway to the next keyframe (or to the last packet). A backward seek
        lands on the last keyframe at or before the time as the demuxer compares it, which for MP4 is the
        keyframe's pts; B-frames put that after the dts the index holds, so seeking to the dts itself lands a
        whole GOP early, and decoding that GOP costs more than the seek saves."""
        after = self.times[k + 1] if k + 1 < len(self.times) else max(self.last_time or 0, self.times[k]) + 1
        return (self.times[k] + after) // 2

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
    return _PacketTable(count=count, keyframes=keyframes, keys=keys, times=times, last_time=last_time,
                        by_offset=by_offset, end_time=end, complete=complete)


def _wanted_indices(path: Path, plan: Plan, header: Header, count: int, end_time: float | None) -> np.ndarray:
    """The indices `sequential_groups` settles on, known up front from the packet count: the header's count
    when the stream holds its last planned frame, else the count itself once the truncation check has passed."""
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


def groups(path: Path, plan: Plan, group: int, size: int, header: Header, threads: bool = False) -> Groups:
    """Seek when that decodes fewer frames than a sequential read, else read sequentially, in one open of
    the file: its packet table is read once per call. `threads`: FFmpeg's frame and slice threads, for one
    video decoded alone (extraction runs one process per core instead)."""
    done = 0
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VcapError(f"{path}: no video stream")
        stream = container.streams.video[0]
        table = _packet_table(container, stream, path.stat().st_size)
        if table.seekable:
            wanted = _wanted_indices(path, plan, header, table.count, table.end_time).reshape(-1, group)
            targets = sorted(set(wanted.ravel().tolist()))
            runs = _seek_plan(table.keyframes, targets)
            if threads:
                stream.thread_type = "AUTO"
            reformatter = av.video.reformatter.VideoReformatter()
            if runs:
                frames = _seek_frames(container, stream, table, runs, size, reformatter)
            else:
                frames = _frames(container, stream, set(targets), targets[-1], size, reformatter)
            try:
                done = yield from assemble(frames, wanted, 0)
            except _Missed:
                pass
            if done == len(wanted):
                return
    yield from sequential_groups(decode, path, plan, group, size, header, done)


def _seek_frames(container, stream, table: _PacketTable, runs, size: int, reformatter) -> Frames:
    """The planned frames; raises _Missed if a seek did not land where planned. A target that is one of an
    open GOP's leading frames (shown before its keyframe, decoded from the GOP before) is decoded again from
    the keyframe before."""
    position_of = dict(zip(table.keys, table.keyframes))
    try:
        for key, run in runs:
            given: set[int] = set()
            yield from _decode_run(container, stream, table, position_of, key, run, given, size, reformatter)
            missing = [t for t in run if t not in given]
            if missing:  # an open GOP's leading frames: decode them from the keyframe before
                before = bisect.bisect_left(table.keyframes, key) - 1
                if before < 0:
                    raise _Missed
                yield from _decode_run(container, stream, table, position_of, table.keyframes[before], missing,
                                       given, size, reformatter)
                if any(t not in given for t in missing):
                    raise _Missed
    except av.error.FFmpegError:  # a corrupt packet: the sequential read decides what it means
        raise _Missed from None
    return 0, None


def _decode_run(container, stream, table: _PacketTable, position_of: dict[int, int], key: int, run: list[int],
                given: set[int], size: int, reformatter) -> Frames:
    """Seek to keyframe `key`, decode forward and yield the frames of `run` (sorted) met on the way.
    Raises _Missed if the seek landed elsewhere or the first frame out is not the keyframe.

    The keyframe's frame number is its decode position plus its leading frames: the packets after it whose
    pts come before its own (an open GOP), which the decoder drops after a seek. Every later frame follows
    in display order, one number each."""
    targets = set(run)
    seek_to = table.seek_time(bisect.bisect_left(table.keyframes, key))
    container.seek(seek_to, stream=stream, backward=True)  # also flushes the decoder
    first = key_pts = index = None  # decode position landed on; its pts; number of the next frame out
    leading = 0
    for packet in container.demux(stream):
        if first is None:
            if packet.size == 0:
                continue
            first = position_of.get(table.key(packet))
            if first is None or first > key or not packet.is_keyframe:
                raise _Missed
            key_pts = packet.pts
        elif index is None and packet.pts is not None and key_pts is not None and packet.pts < key_pts:
            leading += 1
        for frame in stream.decode(packet):
            if index is None:
                if not frame.key_frame:  # the decoder showed a leading frame after all: numbers unknown
                    raise _Missed
                index = first + leading
            if index in targets and index not in given:
                given.add(index)
                yield index, _to_rgb(frame, reformatter, size)
            index += 1
        if index is not None and index > run[-1]:
            break
    return 0, None


def _to_rgb(frame, reformatter, size: int) -> np.ndarray:
    """Converted at the decoded size, then shrunk with `resize_one` as every decoder does: swscale's own
    area filter, straight to size x size, is cheaper but differs from OpenCV's by a few grey levels at edges,
    enough that features extracted through one decoder and captioned through another would disagree. One
    reformatter for a whole video: `frame.to_ndarray` builds a new swscale context per frame, which costs
    several times the conversion itself."""
    rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    return resize_one(upright(rgb, getattr(frame, "rotation", 0)), size)


def _frames(container, stream, wanted: set[int], last: int | None, size: int, reformatter) -> Frames:
    """Frames 0..last of an open container in order, the wanted ones converted."""
    seen, end = 0, None
    try:
        for frame in container.decode(stream):
            if frame.time is not None:  # B-frames in AVI come out with shuffled times: the latest counts
                end = max(end or 0.0, frame.time + (frame.duration or 0) * float(stream.time_base or 0))
            if seen in wanted:
                yield seen, _to_rgb(frame, reformatter, size)
            seen += 1
            if last is not None and seen > last:
                break
    except av.error.FFmpegError:  # a cut-off packet ends the stream, as it does for OpenCV and decord
        pass
    return seen, end


def decode(path: Path, wanted: set[int], last: int | None, size: int) -> Frames:
    with av.open(str(path)) as container:
        reformatter = av.video.reformatter.VideoReformatter()
        return (yield from _frames(container, container.streams.video[0], wanted, last, size, reformatter))


ORDER = 10  # --decoder auto: first, for its exact seeking to the sampled frames
DECODER = Decoder("pyav", av, "pip install av", decode, groups)
