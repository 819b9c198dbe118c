"""Frames/s of `vcap extract` against a naive baseline, in one process on the same videos.

Baseline: per-frame OpenCV seek, one fp32 forward per image (what a first script usually does).
vcap: decoding in a worker process overlapping the model, batched frames, channels_last and the network in
bf16 where the hardware has it; its variants (the backbone compiled or not, with or without a decode worker)
are timed in interleaved rounds, each against the machine's matmul peak of the same minute. Default videos:
the 320x240 MSVD clips in ../shared/data (generated 320x240 clips when it is absent).

    python bench/extract.py [--videos DIR] [--frames 80] [--limit 5] [--device auto] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from peak import flops, peak_around  # noqa: E402  (bench/peak.py)
from vcap.extract.backbone import load_backbone  # noqa: E402
from vcap.extract.extractor import ExtractConfig, FeatureExtractor  # noqa: E402
from vcap.extract.sampler import VIDEO_EXTENSIONS, read_frames, sample_indices  # noqa: E402

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msvd" / "videos"


def default_videos(limit: int) -> list[Path]:
    clips = []
    if SHARED_CLIPS.is_dir():
        for path in sorted(SHARED_CLIPS.glob("*.avi")):
            cap = cv2.VideoCapture(str(path))
            if (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240):
                clips.append(path)
    if clips:
        return clips[:limit]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_video

    folder = Path(tempfile.mkdtemp(prefix="vcap-bench-"))
    return [write_video(folder / f"clip{i}.mp4", frames=150, size=(320, 240), fps=30, seed=i) for i in range(limit)]


def naive(videos: list[Path], frames: int, encoder, device: torch.device) -> int:
    """Seek to each sampled frame, preprocess, one fp32 forward per frame."""
    done = 0
    for path in videos:
        cap = cv2.VideoCapture(str(path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in sample_indices(total, frames):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = cap.read()
            if not ok:
                continue
            rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)
            with torch.inference_mode():
                encoder(torch.from_numpy(rgb)[None].to(device))
            done += 1
    return done


VARIANTS = {  # name -> ExtractConfig fields: the levers this benchmark compares, interleaved in one process
    "eager": dict(compile=False),
    "compiled": dict(compile=True),
    "compiled-no-worker": dict(compile=True, workers=0),  # decoding on the main thread, between passes
    "compiled-predecoded": dict(compile=True),  # the network alone, on frames decoded before the clock starts
}


def timed_round(extractor: FeatureExtractor, videos: list[Path], per_frame: float,
                frames: np.ndarray | None = None) -> tuple[float, float]:
    """(frames/s, fraction of the peak of the same minute) of one pass over the videos (or of encoding
    `frames`, decoded beforehand)."""
    def work() -> float:
        extractor.frames_done = 0
        start = time.perf_counter()
        if frames is not None:
            extractor.encode(frames)
        else:
            results = list(extractor.features(videos))
            assert all(error is None for _, _, error in results), [e for _, _, e in results if e]
        return extractor.frames_done / (time.perf_counter() - start)

    fps, peak = peak_around(extractor.precision, extractor.device, work)
    return fps, per_frame * fps / peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, help="folder of videos (default: 320x240 MSVD clips)")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=5, help="number of videos")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--frame-batch", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.videos:
        videos = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)[: args.limit]
    else:
        videos = default_videos(args.limit)
    base = dict(frames=args.frames, size=args.size, weights="none", device=args.device, precision=args.precision,
                frame_batch=args.frame_batch, workers=args.workers)
    encoder = load_backbone("vgg16", "none")
    extractors = {name: FeatureExtractor(ExtractConfig(**{**base, **VARIANTS[name]}), encoder=encoder)
                  for name in args.variants.split(",")}
    first = next(iter(extractors.values()))
    predecoded = (np.concatenate([read_frames(v, args.frames, args.size, first.config.decoder) for v in videos])
                  if "compiled-predecoded" in extractors else None)
    print(f"{len(videos)} videos, {args.frames} frames each, device {first.device}, precision {first.precision}, "
          f"batch {first.frame_batch}, torch threads {torch.get_num_threads()}")
    frame = torch.zeros(1, args.size, args.size, 3, dtype=torch.uint8, device=first.device)
    with torch.inference_mode():
        per_frame = flops(lambda: first.encoder(frame))
    for name, extractor in extractors.items():  # warm-up: worker start, oneDNN kernels, the compile
        start = time.perf_counter()
        list(extractor.features(videos[:1]))
        print(f"{name:28s} first video (start-up, compile): {time.perf_counter() - start:5.1f} s")
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in extractors}
    for _ in range(args.rounds):
        for name, extractor in extractors.items():
            frames = predecoded if name == "compiled-predecoded" else None
            figures[name].append(timed_round(extractor, videos, per_frame, frames))
    reference = next(iter(figures))
    print(f"{per_frame:.1f} GFLOP a frame; each round's fraction is against a {first.precision} 4096^2 matmul "
          f"timed just before and after it; medians of {args.rounds} rounds")
    for name, rounds in figures.items():
        ratios = [fps / ref for (fps, _), (ref, _) in zip(rounds, figures[reference])]
        print(f"{name:28s} {statistics.median(f for f, _ in rounds):6.1f} frames/s  "
              f"{statistics.median(p for _, p in rounds):4.0%} of peak  "
              f"{statistics.median(ratios):5.2f}x {reference} (paired, {min(ratios):.2f}-{max(ratios):.2f})")
    if args.skip_baseline:
        return
    vcap_fps = statistics.median(f for f, _ in figures[reference])
    baseline = load_backbone("vgg16", "none").to(first.device).eval()
    naive(videos[:1], 4, baseline, first.device)  # warm-up
    start = time.perf_counter()
    frames = naive(videos, args.frames, baseline, first.device)
    naive_fps = frames / (time.perf_counter() - start)
    print(f"naive (per-frame seek, fp32 one by one): {naive_fps:6.1f} frames/s; "
          f"{reference} is {vcap_fps / naive_fps:.2f}x")


if __name__ == "__main__":
    main()
