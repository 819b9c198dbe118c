"""Wall time to take 80 frames from long H.264 videos: sequential decoding against PyAV's seeking path.

Videos: libx264 (ultrafast, 2 s GOP, 30 fps, --bframes B-frames) of a texture panning under a moving square,
cached in --cache. The 10 s and 1 min files are encoded; longer ones repeat the 1 min file's packets
with shifted timestamps (every GOP starts with an IDR frame, so the result is one valid stream and
decodes at the same cost per frame) rather than spending an hour encoding 60 min of 1080p.

Per video, in one process and interleaved: `opencv` and `pyav-seq` read sequentially to the last sampled
frame (OpenCV's path, and PyAV's own sequential read); `pyav` is `read_frames(backend="pyav")`, which
seeks or reads sequentially, whichever decodes fewer frames, timed before and after them and averaged.
The pyav frames are checked equal to pyav-seq's. Sequential reads are skipped beyond --sequential-max-min
minutes (they take minutes there). With B-frames, `pyav-dts` is the seeking read with each seek aimed at the
keyframe's dts, as at commit 1d9c84f (it lands a GOP early in MP4).

    python bench/decode.py [--sizes 320x240,1280x720,1920x1080] [--lengths 10s,1m,10m,60m] [--frames 80]
        [--bframes 0]
"""
from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vcap.extract import decoding, sampler
from vcap.extract.decoders import pyav

FPS = 30
GOP_S = 2
LENGTHS = {"10s": 10, "1m": 60, "10m": 600, "60m": 3600}


def _frames(width: int, height: int, count: int) -> list[av.VideoFrame]:
    """`count` distinct yuv420p frames: a smooth random texture panning under a moving square."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (height // 16 + 4, width // 16 + 4, 3), np.uint8)
    texture = np.kron(coarse, np.ones((16, 16, 1), np.uint8))  # blocky texture, wider than the frame
    frames = []
    for i in range(count):
        x, y = i % 48, (i * 2) % 48
        img = np.ascontiguousarray(texture[y : y + height, x : x + width])
        s = max(8, height // 6)
        left = (i * width // count) % (width - s)
        img[height // 2 - s // 2 : height // 2 + s // 2, left : left + s] = (255, 255, 255)
        frames.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    return frames


def _encode(path: Path, width: int, height: int, seconds: int, bframes: int) -> None:
    pattern = _frames(width, height, 90)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={
            "preset": "ultrafast",
            "x264-params": f"keyint={GOP_S * FPS}:min-keyint={GOP_S * FPS}:scenecut=0:bframes={bframes}"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, FPS)
        for i in range(seconds * FPS):
            frame = pattern[i % len(pattern)]
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    tmp.rename(path)


def _repeat(source: Path, path: Path, times: int) -> None:
    """`times` copies of `source`'s packets back to back, timestamps shifted: no re-encoding."""
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(source)) as first:
        length = first.streams.video[0].frames
    with av.open(str(tmp), "w") as out:
        out_stream = None
        for rep in range(times):
            with av.open(str(source)) as src:
                stream = src.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream)
                step = round(length / FPS / stream.time_base)  # the source's length in its time base
                for packet in src.demux(stream):
                    if packet.size == 0:
                        continue
                    packet.pts += rep * step
                    packet.dts += rep * step
                    packet.stream = out_stream
                    out.mux(packet)
    tmp.rename(path)


def video(cache: Path, width: int, height: int, length: str, bframes: int = 0) -> Path:
    path = cache / f"h264_{width}x{height}_{length}{f'_b{bframes}' if bframes else ''}.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if LENGTHS[length] <= 60:
            _encode(path, width, height, LENGTHS[length], bframes)
        else:
            _repeat(video(cache, width, height, "1m", bframes), path, LENGTHS[length] // 60)
        print(f"  (made {path.name}, {path.stat().st_size / 1e6:.0f} MB, in {time.perf_counter() - start:.0f} s)")
    return path


def sequential_pyav(path: Path, n: int, size: int) -> np.ndarray:
    """PyAV's sequential read, the reference the seeking read must match."""
    groups = decoding.sequential_groups(pyav.decode, path, lambda total: sampler.sample_indices(total, n),
                                        n, size, decoding.Header(path))
    return np.concatenate([frames for _, frames in groups])


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    frames = fn()
    return time.perf_counter() - start, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="320x240,1280x720,1920x1080")
    parser.add_argument("--lengths", default="10s,1m,10m,60m")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--size", type=int, default=224, help="square resize, as vcap extract")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vcap" / "bench-decode")
    parser.add_argument("--sequential-max-min", type=float, default=60, help="skip sequential reads of longer videos")
    parser.add_argument("--sequential", default="opencv,pyav-seq", help="sequential readers to time")
    parser.add_argument("--bframes", type=int, default=0, help="x264's B-frames between references")
    args = parser.parse_args()
    n, size = args.frames, args.size
    rows = []
    for dims in args.sizes.split(","):
        width, height = map(int, dims.split("x"))
        for length in args.lengths.split(","):
            path = video(args.cache, width, height, length, args.bframes)
            sampler.read_frames(path, 2, size)  # warm the page cache and the libraries
            seek_s, got = timed(lambda: sampler.read_frames(path, n, size, backend="pyav"))
            opencv_s = seq_s = float("nan")
            if LENGTHS[length] <= args.sequential_max_min * 60:
                if "opencv" in args.sequential:
                    opencv_s, _ = timed(lambda: sampler.read_frames(path, n, size, backend="opencv"))
                if "pyav-seq" in args.sequential:
                    seq_s, want = timed(lambda: sequential_pyav(path, n, size))
                    assert np.array_equal(got, want), f"{path}: seeking returned other frames"
                again, _ = timed(lambda: sampler.read_frames(path, n, size, backend="pyav"))
                seek_s = (seek_s + again) / 2  # before and after the sequential reads: drift cancels
            if args.bframes:
                at_dts = pyav._PacketTable.seek_time
                pyav._PacketTable.seek_time = lambda table, k: table.times[k]
                dts_s, _ = timed(lambda: sampler.read_frames(path, n, size, backend="pyav"))
                pyav._PacketTable.seek_time = at_dts
                print(f"{dims:>9} {length:>4}  pyav-dts {dts_s:6.2f} s: x{dts_s / seek_s:4.1f} the seek as it is now")
            rows.append((dims, length, opencv_s, seq_s, seek_s))
            faster = min((t for t in (opencv_s, seq_s) if t == t), default=None)
            ratio = f"x{faster / seek_s:5.1f} vs the faster sequential" if faster else "(no sequential read)"
            print(f"{dims:>9} {length:>4}  opencv {opencv_s:7.2f} s  pyav-seq {seq_s:7.2f} s  pyav {seek_s:6.2f} s  "
                  + ratio, flush=True)
    print(f"\n{n} frames, seconds (speed-up of pyav over the faster sequential read)")
    print("| size | " + " | ".join(LENGTHS) + " |")
    for dims in dict.fromkeys(r[0] for r in rows):
        cells = {r[1]: r for r in rows if r[0] == dims}
        line = []
        for length in LENGTHS:
            if length not in cells:
                line.append("")
                continue
            _, _, o, s, p = cells[length]
            faster = min((t for t in (o, s) if t == t), default=None)
            line.append(f"{faster:.2f} -> {p:.2f} (x{faster / p:.0f})" if faster else f"-> {p:.2f}")
        print(f"| {dims} | " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
