"""Timed captions of a long video against the decoder's own speed, in one process.

The video: the shipped sample clips, each stretched to --every seconds, joined again and again into one H.264
file of --minutes (640x360, 25 fps, x264 veryfast with its default GOP), written once into --video-dir and
reused. Windowed captioning samples every window more densely than the keyframes, so every frame must be
decoded: the decode-only limit (PyAV decoding every frame on all cores, nothing else) is the bound.

    python bench/timed.py --model demo/model/last.pt --video-dir /tmp/vcap-bench [--minutes 15] [--every 10]
        [--repeats 1]

Prints, for the old path (a re-open and one unthreaded pass per 640 frames, decoding then the network, in
turn) and the new one (`read_windows`: one open, FFmpeg's threads, decoding overlapped with the network):
wall time, real-time factor (video seconds per wall second) and the ratio to the decode-only limit, beside
the decode-only and network-only times (the network: backbone and captioner on the same sampled frames).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from vcap.captioner.decode import caption_features
from vcap.extract.sampler import read_frames, window_plan
from vcap.extract.decoding import Header
from vcap.pipeline import caption
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.config import CaptionConfig

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "videos"
FPS, SIZE = 25, (640, 360)


def write_long_video(path: Path, minutes: float, clip_seconds: float) -> list[str]:
    """Cycle through the sample clips (each stretched to clip_seconds) until `minutes`; -> the clip order."""
    clips = sorted(SAMPLES.glob("*.mp4"))
    count = round(clip_seconds * FPS)
    frames = {}
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        got = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            got.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_LINEAR))
        cap.release()
        frames[clip.name] = [got[i] for i in np.minimum(np.arange(count) * len(got) // count, len(got) - 1)]
    order = []
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        total, written = int(minutes * 60 * FPS), 0
        while written < total:
            clip = clips[len(order) % len(clips)].name
            order.append(clip)
            for image in frames[clip][: total - written]:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                written += 1
        out.mux(stream.encode())
    tmp.rename(path)
    return order


def decode_only(path: Path) -> float:
    """Seconds PyAV takes to decode every frame with FFmpeg's frame and slice threads, converting none."""
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


def old_read_windows(path, n, every, size=224, backend="auto", frames_per_pass=640):
    """The path `read_windows` replaces: each pass of about `frames_per_pass` frames a `read_frames` call of
    its own (a re-open, the packet table read again, one thread), the network waiting for it."""
    fps = Header(Path(path)).fps
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


def network_only(captioner: VideoCaptioner, frames: np.ndarray) -> float:
    """Seconds the backbone and captioner take on (windows, n, S, S, 3) frames already decoded, in the
    batches `caption_each(every=)` uses."""
    start = time.perf_counter()
    per_pass = max(1, 640 // frames.shape[1])
    for first in range(0, len(frames), per_pass):
        chunk = frames[first : first + per_pass]
        feats = captioner.extractor.encode(chunk.reshape(-1, *chunk.shape[2:]))
        feats = torch.from_numpy(feats).view(len(chunk), chunk.shape[1], -1)
        for at in range(0, len(chunk), captioner.config.videos_per_batch):
            caption_features(captioner.model, captioner.vocab, feats[at : at + captioner.config.videos_per_batch],
                             captioner.config.decode, captioner.info["max_words"])
    return time.perf_counter() - start


def timed_captions(captioner: VideoCaptioner, video: Path, every: float, windows) -> tuple[float, list]:
    """Seconds `caption_each(every=)` takes with `windows` as its window reader; -> (seconds, spans)."""
    real = caption.read_windows
    caption.read_windows = windows
    try:
        start = time.perf_counter()
        (result,) = captioner.caption_each([video], every=every)
        return time.perf_counter() - start, result.spans
    finally:
        caption.read_windows = real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--video-dir", required=True, type=Path, help="where the long video is written once")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of old and new path, interleaved")
    args = ap.parse_args()
    args.video_dir.mkdir(parents=True, exist_ok=True)
    video = args.video_dir / f"long-{args.minutes:g}min-{SIZE[0]}x{SIZE[1]}-{args.every:g}s.mp4"
    if not video.exists():
        write_long_video(video, args.minutes, args.every)  # one clip a window
    seconds = args.minutes * 60
    captioner = VideoCaptioner(CaptionConfig(model=args.model, device=args.device, workers=0))
    settings = captioner.info["feature_config"]
    decode_only(video)  # the page cache and the libraries warm
    limits, olds, news = [decode_only(video)], [], []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both paths alike
        old_s, old_spans = timed_captions(captioner, video, args.every, old_read_windows)
        new_s, new_spans = timed_captions(captioner, video, args.every, caption.read_windows)
        assert new_spans == old_spans, "the two paths captioned differently"
        olds.append(old_s)
        news.append(new_s)
        limits.append(decode_only(video))  # before and after each round: drift cancels
    limit = float(np.median(limits))
    frames = np.concatenate([f for _, f in caption.read_windows(video, settings["frames"], args.every,
                                                                 settings["size"])])
    network = network_only(captioner, frames)
    print(f"{video.name}: {args.minutes:g} min, {SIZE[0]}x{SIZE[1]} H.264 at {FPS} fps; --every {args.every:g} "
          f"with {settings['backbone']} ({len(frames)} windows x {settings['frames']} frames at {settings['size']}), "
          f"{torch.get_num_threads()} torch threads")
    print(f"decode-only limit (PyAV, every frame, thread_type AUTO; median of {len(limits)}): {limit:.1f} s = {seconds / limit:.1f}x real time")
    print(f"network-only (backbone + captioner on the sampled frames): {network:.1f} s = "
          f"{seconds / network:.1f}x real time")
    for name, runs in (("old path", olds), ("new path", news)):
        took = float(np.median(runs))
        print(f"{name}: {took:.1f} s = {seconds / took:.1f}x real time, {took / limit:.2f}x the decode-only limit "
              f"(median of {', '.join(f'{r:.1f}' for r in runs)} s)")
    ratios = [o / n for o, n in zip(olds, news)]
    print(f"new against old, round by round: {', '.join(f'{r:.2f}x' for r in ratios)}; "
          f"{len(new_spans)} spans after merging")


if __name__ == "__main__":
    main()
