"""Timed captions of a long video: the shipped sample clips joined again and again into one H.264 file of
--minutes (320x240, 15 fps, 2 s GOP, written with PyAV's libx264), one clip every --every seconds, captioned with
--every seconds.

    python bench/timed.py --model demo/model/last.pt [--minutes 10] [--every 10]

Prints the wall time (model load, decoding, features and captions; the file's writing not counted) and the
first SubRip cues.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import cv2

from vcap.extract.sampler import read_frames
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.config import CaptionConfig
from vcap.pipeline.writers import get_writer

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "videos"
FPS, SIZE = 15, (320, 240)


def write_long_video(path: Path, minutes: float, clip_seconds: float) -> list[str]:
    """Cycle through the sample clips (each stretched to clip_seconds) until `minutes`; -> the clip order."""
    clips = sorted(SAMPLES.glob("*.mp4"))
    count = round(clip_seconds * FPS)
    frames = {c.name: [cv2.resize(f, SIZE) for f in read_frames(c, count, size=max(SIZE))] for c in clips}
    order = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"g": str(2 * FPS), "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        total = int(minutes * 60 * FPS)
        written = 0
        while written < total:
            clip = clips[len(order) % len(clips)].name
            order.append(clip)
            for image in frames[clip][: total - written]:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                written += 1
        out.mux(stream.encode())
    return order


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long.mp4"
        write_long_video(video, args.minutes, args.every)  # one clip a window
        t0 = time.perf_counter()
        captioner = VideoCaptioner(CaptionConfig(model=args.model, device=args.device, workers=0))
        loaded = time.perf_counter() - t0
        (result,) = captioner.caption_each([video], every=args.every)
        spans = result.spans
        seconds = time.perf_counter() - t0
    windows = round(args.minutes * 60 / args.every)
    print(f"{args.minutes:g} min video, --every {args.every:g}: {windows} windows, {len(spans)} spans after merging, "
          f"{seconds:.1f} s in all ({loaded:.1f} s loading the models)")
    print("\n\n".join(get_writer("srt").render([result]).split("\n\n")[:4]))


if __name__ == "__main__":
    main()
