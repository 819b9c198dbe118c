"""Frames/s of `vcap extract` against a naive baseline, in one process on the same videos.

Baseline: per-frame OpenCV seek, one fp32 forward per image (what a first script usually does).
vcap: sequential decode in a worker process overlapping the model, batched frames, channels_last and
bf16 autocast where the hardware has it. Default videos: the 320x240 MSVD clips in ../shared/data
(generated 320x240 clips when it is absent).

    python bench/extract.py [--videos DIR] [--frames 80] [--limit 5] [--device auto]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from peak import flops, matmul_peak  # noqa: E402  (bench/peak.py)
from vcap.extract.backbone import load_backbone  # noqa: E402
from vcap.extract.extractor import ExtractConfig, FeatureExtractor  # noqa: E402
from vcap.extract.sampler import VIDEO_EXTENSIONS, sample_indices  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, help="folder of videos (default: 320x240 MSVD clips)")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=5, help="number of videos")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-batch", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.videos:
        videos = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)[: args.limit]
    else:
        videos = default_videos(args.limit)
    config = ExtractConfig(frames=args.frames, size=args.size, weights="none", device=args.device,
                           frame_batch=args.frame_batch, workers=args.workers)
    extractor = FeatureExtractor(config)
    print(f"{len(videos)} videos, {args.frames} frames each, device {extractor.device}, "
          f"precision {extractor.precision}, batch {extractor.frame_batch}, workers {extractor.workers}, "
          f"torch threads {torch.get_num_threads()}")
    list(extractor.features(videos[:1]))  # warm-up: worker start, allocator, oneDNN kernels
    extractor.frames_done = 0
    start = time.perf_counter()
    results = list(extractor.features(videos))
    vcap_fps = extractor.frames_done / (time.perf_counter() - start)
    assert all(error is None for _, _, error in results), [e for _, _, e in results if e]
    print(f"vcap extract : {vcap_fps:8.1f} frames/s  ({len(videos) / (time.perf_counter() - start):.2f} videos/s)")
    frame = torch.zeros(1, args.size, args.size, 3, dtype=torch.uint8, device=extractor.device)
    with torch.inference_mode():
        per_frame = flops(lambda: extractor.encoder(frame))
    peak = matmul_peak(extractor.precision, extractor.device)
    print(f"of the peak  : {per_frame:.1f} GFLOP a frame x {vcap_fps:.1f} frames/s = {per_frame * vcap_fps:.0f} "
          f"GFLOP/s against a {peak:.0f} GFLOP/s {extractor.precision} matmul here: {per_frame * vcap_fps / peak:.0%}")
    if args.skip_baseline:
        return
    baseline = load_backbone("vgg16", "none").to(extractor.device).eval()
    naive(videos[:1], 4, baseline, extractor.device)  # warm-up
    start = time.perf_counter()
    frames = naive(videos, args.frames, baseline, extractor.device)
    naive_fps = frames / (time.perf_counter() - start)
    print(f"naive        : {naive_fps:8.1f} frames/s")
    print(f"speed-up     : {vcap_fps / naive_fps:8.2f}x")


if __name__ == "__main__":
    main()
