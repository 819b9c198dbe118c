"""Timed captions of a long video against the decoder's own speed, before and after, in one process.

The video: the shipped sample clips, each stretched to --every seconds, joined again and again into one H.264
file of --minutes (640x360, 25 fps, x264 veryfast with its default GOP), written once into --video-dir and
reused. Windowed captioning samples every window more densely than the keyframes, so every frame must be
decoded: the decode-only limit (PyAV decoding every frame on all cores, nothing else) is the bound, unless the
network alone takes longer.

    python bench/timed.py --video-dir /tmp/vcap-bench [--backbone efficientnet-lite0|vgg16] [--model M]
        [--minutes 15] [--every 10] [--repeats 3]

Without --model, a small model is trained on the sample clips' features of --backbone (efficientnet-lite0 with
its ImageNet weights; VGG16 with random weights, as no VGG16 weights can be downloaded here: the time does not
depend on the weights). Prints, round by round and as medians: `caption_each(every=)` as it is now ("after") and as
at commit 1d9c84f ("before", re-created by undoing two changes: seeks aim at a keyframe's dts, which lands a GOP
early in MP4 with B-frames; efficientnet-lite0 keeps its batch norms), beside the decode-only limit and the
network-only time (backbone and captioner on the same sampled frames, already decoded), with real-time factors
(video seconds per wall second) and, for the network, the fraction of the machine's bf16/fp32 matmul peak measured
around it. Both paths run uncompiled, as a first 15-minute video does (under COMPILE_MIN_FRAMES), with
OMP_WAIT_POLICY=PASSIVE as the `vcap` command sets it (set OMP_WAIT_POLICY=ACTIVE to time torch's spinning threads
instead).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the vcap command does

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import flops, peak_around  # noqa: E402  (bench/peak.py)
from vcap.extract.backbones import efficientnet_lite0  # noqa: E402
from vcap.extract.decoders import pyav  # noqa: E402
from vcap.extract.sampler import read_windows  # noqa: E402
from vcap.pipeline import caption  # noqa: E402
from vcap.pipeline.caption import VideoCaptioner  # noqa: E402
from vcap.pipeline.config import CaptionConfig  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
FPS, SIZE = 25, (640, 360)


def write_long_video(path: Path, minutes: float, clip_seconds: float) -> None:
    """Cycle through the sample clips (each stretched to clip_seconds) until `minutes`."""
    clips = sorted((SAMPLES / "videos").glob("*.mp4"))
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
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        total, written, k = int(minutes * 60 * FPS), 0, 0
        while written < total:
            for image in frames[clips[k % len(clips)].name][: total - written]:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                written += 1
            k += 1
        out.mux(stream.encode())
    tmp.rename(path)


def train_model(root: Path, backbone: str) -> Path:
    """A small model on the sample clips' features of `backbone` (what is timed is its cost, not its words)."""
    weights = "none" if backbone == "vgg16" else "imagenet"
    feats, out = root / f"feats-{backbone}", root / f"model-{backbone}"
    for args in (("extract", SAMPLES / "videos", feats, "--frames", "16", "--backbone", backbone, "--weights", weights),
                 ("train", feats, SAMPLES / "labels.json", "--out", out, "--overwrite", "--epochs", "3",
                  "--val-fraction", "0", "--min-count", "1")):
        done = subprocess.run([sys.executable, "-m", "vcap", *map(str, args)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"bench: vcap {args[0]} failed:\n{done.stderr}")
    return out / "last.pt"


def decode_only(path: Path) -> float:
    """Seconds PyAV takes to decode every frame with FFmpeg's frame and slice threads, converting none."""
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


@contextlib.contextmanager
def as_before():
    """The path as at commit 1d9c84f: a seek aims at the keyframe's dts (efficientnet-lite0's batch norms:
    `captioner_for`)."""
    seek_time = pyav._PacketTable.seek_time
    pyav._PacketTable.seek_time = lambda table, k: table.times[k]
    try:
        yield
    finally:
        pyav._PacketTable.seek_time = seek_time


def captioner_for(model: Path, unfolded: bool) -> VideoCaptioner:
    config = CaptionConfig(model=str(model), device="cpu", workers=0, compile=False)
    if not unfolded:
        return VideoCaptioner(config)
    folded, efficientnet_lite0.folded = efficientnet_lite0.folded, lambda net: net
    try:
        return VideoCaptioner(config)
    finally:
        efficientnet_lite0.folded = folded


def timed_captions(captioner: VideoCaptioner, video: Path, every: float) -> tuple[float, list]:
    start = time.perf_counter()
    (result,) = captioner.caption_each([video], every=every)
    return time.perf_counter() - start, result.spans


def network_only(captioner: VideoCaptioner, video: Path, frames: np.ndarray) -> float:
    """Seconds the backbone and captioner take on (windows, n, S, S, 3) frames already decoded, through the
    windowed path's own per-pass step, 640 frames a pass."""
    start = time.perf_counter()
    per_pass = max(1, caption.MAX_PASS_FRAMES // frames.shape[1])
    for first in range(0, len(frames), per_pass):
        chunk = frames[first : first + per_pass]
        for _ in captioner._caption_windows(video, video.name, [(0.0, 0.0)] * len(chunk), chunk, None):
            pass
    return time.perf_counter() - start


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-dir", required=True, type=Path, help="where the long video (and model) are written once")
    ap.add_argument("--backbone", default="efficientnet-lite0", choices=("efficientnet-lite0", "vgg16"))
    ap.add_argument("--model", type=Path, help="a model of --backbone's features [default: trained here]")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of before and after, interleaved")
    args = ap.parse_args()
    args.video_dir.mkdir(parents=True, exist_ok=True)
    video = args.video_dir / f"long-{args.minutes:g}min-{SIZE[0]}x{SIZE[1]}-{args.every:g}s.mp4"
    if not video.exists():
        write_long_video(video, args.minutes, args.every)  # one clip a window
    model = args.model or train_model(args.video_dir, args.backbone)
    seconds = args.minutes * 60
    after = captioner_for(model, unfolded=False)
    before = captioner_for(model, unfolded=args.backbone == "efficientnet-lite0")
    settings = after.info["feature_config"]
    assert settings["backbone"] == args.backbone, f"{model} is a model of {settings['backbone']} features"
    frames = np.concatenate([f for _, f in read_windows(video, settings["frames"], args.every, settings["size"])])
    decode_only(video)  # the page cache and the libraries warm
    timed_captions(after, video, args.every)  # first-call costs (kernel choice, allocator) out of the rounds
    limits, runs, networks = [decode_only(video)], {"before": [], "after": []}, []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        with as_before():
            took, before_spans = timed_captions(before, video, args.every)
        runs["before"].append(took)
        took, after_spans = timed_captions(after, video, args.every)
        runs["after"].append(took)
        assert after_spans == before_spans, "before and after captioned differently"
        networks.append(peak_around(after.extractor.precision, after.device,
                                    lambda: network_only(after, video, frames)))
        limits.append(decode_only(video))  # before and after each round: drift cancels
    limit = float(np.median(limits))
    network = float(np.median([n for n, _ in networks]))
    one = torch.from_numpy(frames[:1, 0])
    gflop = flops(lambda: after.extractor.encoder(one.to(after.device)))
    share = float(np.median([gflop * len(frames) * frames.shape[1] / n / p for n, p in networks]))
    print(f"{cpu_name()}, {torch.get_num_threads()} torch threads; {video.name}: {args.minutes:g} min, "
          f"{SIZE[0]}x{SIZE[1]} H.264 at {FPS} fps; --every {args.every:g} with {settings['backbone']} "
          f"({len(frames)} windows x {settings['frames']} frames at {settings['size']}, {gflop:.2f} GFLOP a frame, "
          f"{after.extractor.precision})")
    print(f"decode-only limit (PyAV, every frame, thread_type AUTO; median of {len(limits)}): {limit:.1f} s = "
          f"{seconds / limit:.1f}x real time")
    print(f"network-only (backbone + captioner on the sampled frames; median of {len(networks)}): {network:.1f} s = "
          f"{seconds / network:.1f}x real time, {network / limit:.2f}x the decode-only limit, "
          f"{100 * share:.0f}% of the {after.extractor.precision} matmul peak")
    for name, times in runs.items():
        took = float(np.median(times))
        print(f"{name}: {took:.1f} s = {seconds / took:.1f}x real time, {took / limit:.2f}x the decode-only limit "
              f"(rounds: {', '.join(f'{t:.1f}' for t in times)} s)")
    ratios = [b / a for b, a in zip(runs["before"], runs["after"])]
    print(f"after against before, round by round: {', '.join(f'{r:.2f}x' for r in ratios)}; "
          f"{len(after_spans)} spans after merging")


if __name__ == "__main__":
    main()
