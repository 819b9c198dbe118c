"""decord's decoder, read frame by frame: its random access (get_batch, skip_frames) returned wrong frames on
12 of 16 real MSVD/OpenCV clips (decord issues #195, #252), while its next() matched OpenCV on all 16."""
from __future__ import annotations

from pathlib import Path

from vcap.extract.decoding import Decoder, Frames, Header, native_stderr_silenced, resize_one

try:
    import decord

    decord.logging.set_level(decord.logging.QUIET)
except ImportError:  # no wheel for this platform
    decord = None


def decode(path: Path, wanted: set[int], last: int | None, size: int) -> Frames:
    if Header(path).rotation:
        raise ValueError("it does not apply the display rotation")  # the next decoder does
    with native_stderr_silenced():
        reader = decord.VideoReader(str(path), num_threads=1)
    if len(reader) == 0:
        return 0, None
    seen = 0
    while last is None or seen <= last:
        try:
            frame = reader.next()  # never skip_frames/get_batch: see the module docstring
        except StopIteration:
            break
        if seen in wanted:
            yield seen, resize_one(frame.asnumpy(), size)
        seen += 1
    end = float(reader.get_frame_timestamp(seen - 1)[1]) if seen else None
    return seen, end


ORDER = 20  # --decoder auto: after PyAV, before OpenCV
DECODER = Decoder("decord", decord, "pip install decord (x86_64 Linux wheels only)", decode)
