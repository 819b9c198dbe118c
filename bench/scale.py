"""How training's cost grows with the data set: samples/s, peak memory and disk reads from 1k to 40k videos.

Writes synthetic feature caches of MSR-VTT's shape (80 x 4096 a video, 20 captions) and, at 40k videos, VATEX's
(10 captions) into ROOT once (sizes share files: the 1k cache is the first 1k of the 40k one), then, for each
size in a fresh process, builds the training data exactly as `vcap train` does (labels, feature checks,
vocabulary, batches of several captions per video) and times --batches training steps of the default captioner
with its file page cache evicted first (cold: every read comes from the disk, as past the machine's memory), in
four interleaved stretches: a plain DataLoader, and vcap train's loader, which reads the next batches ahead.
Also measures the disk's random-read rate on whole feature files. Sizes that do not fit the disk are skipped,
saying so. Figures only; no assertions.

    python bench/scale.py --root /data/vcap-scale [--sizes 1000,5000,10000,40000] [--dtype float16] [--nproc 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = [f"w{i}" for i in range(3000)]
MARGIN = 2 << 30  # bytes left free on the disk


def captions_per_video(size: int) -> int:
    return 20 if size <= 10_000 else 10  # MSR-VTT has 20 a video (10k videos), VATEX 10 (41k)


def make_cache(root: Path, sizes: list[int], frames: int, dim: int, dtype: str) -> list[int]:
    """Feature files for the largest size that fits the disk, and one labels file per size; -> the sizes made."""
    feats = root / f"feats-{dtype}"
    feats.mkdir(parents=True, exist_ok=True)
    per_file = frames * dim * np.dtype(dtype).itemsize + 128
    have = 0  # files are written in order, each whole (temp, then rename): count the leading run of them
    while (feats / f"video{have}.mp4.npy").exists():
        have += 1
    room = have + (shutil.disk_usage(root).free - MARGIN) // per_file
    made = [s for s in sizes if s <= room]
    for s in sorted(set(sizes) - set(made)):
        print(f"skipped {s:,} videos: needs {s * per_file / 2**30:.1f} GiB, the disk has room for {room:,} files")
    if not made:
        return made
    # ReLU-like features (non-negative, mostly small) from a pool of 64 arrays: their content does not change
    # what reading and training them costs, and drawing 40k x 327k normals would take longer than the bench.
    rng = np.random.default_rng(0)
    pool = [np.maximum(rng.standard_normal((frames, dim), np.float32), 0).astype(dtype) for _ in range(64)]
    start = time.perf_counter()
    for i in range(have, max(made)):
        tmp = feats / f".video{i}.mp4.tmp.npy"
        np.save(tmp, pool[i % len(pool)])
        os.replace(tmp, feats / f"video{i}.mp4.npy")
        if i % 5000 == 4999:
            print(f"  wrote {i + 1:,} feature files ({time.perf_counter() - start:.0f} s)", flush=True)
    words = random.Random(0)
    for s in made:
        labels = root / f"labels-{s}.json"
        if not labels.exists():
            entries = [{"id": f"video{i}.mp4", "caption": [" ".join(words.choices(WORDS, k=9))
                                                           for _ in range(captions_per_video(s))]} for i in range(s)]
            labels.write_text(json.dumps(entries))
    return made


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed), so the next read comes from the disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_read_bytes() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])


def random_read_rate(root: Path, dtype: str, count: int = 200) -> str:
    files = sorted((root / f"feats-{dtype}").glob("*.npy"))
    picked = random.Random(1).sample(files, min(count, len(files)))
    evict(picked)
    start = time.perf_counter()
    size = sum(len(p.read_bytes()) for p in picked)
    seconds = time.perf_counter() - start
    return (f"{len(picked) / seconds:.0f} files/s, {size / seconds / 2**20:.0f} MiB/s "
            f"({size / len(picked) / 2**20:.2f} MiB a file)")


def measure(root: Path, size: int, dtype: str, batches: int, warm: bool) -> dict:
    """One size, in this process: set-up as vcap train does it, then `batches` timed training steps."""
    import torch

    from vcap import distributed as ddp
    from vcap.captioner.config import TrainConfig
    from vcap.captioner.data import CaptionDataset, FeatureBank, attach_features, batch_loader, load_labels
    from vcap.captioner.models import build_model
    from vcap.captioner.train import epoch_batches, teacher_schedule, train_epoch
    from vcap.captioner.vocab import Vocab
    from vcap.device import resolve_precision

    config = TrainConfig(feats=str(root / f"feats-{dtype}"), labels=str(root / f"labels-{size}.json"), out="unused")
    device = torch.device("cpu")
    distributed = ddp.join_torchrun(device)
    torch.manual_seed(0)
    read0, t0 = disk_read_bytes(), time.perf_counter()
    videos, _, shape = attach_features(load_labels(config.labels), config.feats, config.labels)
    vocab = Vocab.build((c for _, caps, _ in videos for c in caps), config.min_count)
    dataset = CaptionDataset(videos, vocab, FeatureBank([p for _, _, p in videos]), config.max_words)
    setup_s, setup_read = time.perf_counter() - t0, disk_read_bytes() - read0
    model = build_model(config.captioner, feature_dim=shape[1], vocab_size=len(vocab), hidden=config.hidden,
                        embed_dim=config.embed_dim, dropout=config.dropout, frame_stride=config.frame_stride)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = epoch_batches(dataset, config.batch_size, config.captions_per_video, seed=0)
    warmup, half = 2, max(batches // 4, 1)
    order = [ddp.my_part(b) for b in order[: warmup + 4 * half]]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step_args = (opt, device, resolve_precision(config.precision, device), scaler,
                 teacher_schedule(config.teacher_forcing), 0, config.grad_clip)

    def plain(part):
        return torch.utils.data.DataLoader(dataset, batch_sampler=part, collate_fn=dataset.collate)

    train_epoch(net, plain(order[:warmup]), *step_args, progress=False)
    timed = {"plain": [0.0, 0, 0], "read_ahead": [0.0, 0, 0]}  # seconds, samples, bytes read
    for k, variant in enumerate(["plain", "read_ahead", "plain", "read_ahead"]):  # interleaved, each cold
        part = order[warmup + k * half : warmup + (k + 1) * half]
        if not warm:  # every file was read by the checks or an earlier stretch: from the disk again
            evict([p for _, _, p in videos])
        ddp.barrier()
        read1, t1 = disk_read_bytes(), time.perf_counter()
        train_epoch(net, plain(part) if variant == "plain" else batch_loader(dataset, part), *step_args, progress=False)
        row = timed[variant]
        row[0] += time.perf_counter() - t1
        row[1] += sum(len(b) for b in part)
        row[2] += disk_read_bytes() - read1
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"videos": size, "captions": len(dataset), "rank": ddp.rank(),
            "setup_s": round(setup_s, 2), "setup_read_gib": round(setup_read / 2**30, 2),
            **{f"{k}_samples_per_s": round(n / t * ddp.world_size(), 1) for k, (t, n, _) in timed.items()},
            "step_read_mib_per_sample": round(sum(r for *_, r in timed.values()) / 2**20
                                              / sum(n for _, n, _ in timed.values()), 3),
            "peak_rss_mib": round(rss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="folder for the synthetic caches (written once)")
    ap.add_argument("--sizes", default="1000,5000,10000,40000")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=32, help="training steps timed per size (after 2 untimed)")
    ap.add_argument("--warm", action="store_true", help="leave the page cache as it is (default: evict it)")
    ap.add_argument("--nproc", type=int, default=1, help="ranks under torchrun (gloo)")
    ap.add_argument("--rounds", type=int, default=1, help="passes over the sizes, interleaved; each row is one")
    ap.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a child process
    args = ap.parse_args()
    if args.measure is not None:
        result = measure(args.root, args.measure, args.dtype, args.batches, args.warm)
        if result["rank"] == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    made = make_cache(args.root, sizes, args.frames, args.dim, args.dtype)
    print(f"disk random reads of whole feature files (cold): {random_read_rate(args.root, args.dtype)}")
    print(f"{'videos':>8} {'captions':>9} {'set-up s':>9} {'set-up GiB read':>16} {'samples/s':>10} "
          f"{'read-ahead':>11} {'ratio':>6} {'MiB read a sample':>18} {'peak RSS MiB':>13}")
    for size in [s for _ in range(args.rounds) for s in made]:
        command = [sys.executable, __file__, "--root", str(args.root), "--dtype", args.dtype, "--measure", str(size),
                   "--batches", str(args.batches)] + (["--warm"] if args.warm else [])
        if args.nproc > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                       str(args.nproc), *command[1:]]
        out = subprocess.run(command, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{size:>8}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(line[7:])
        print(f"{r['videos']:>8,} {r['captions']:>9,} {r['setup_s']:>9} {r['setup_read_gib']:>16} "
              f"{r['plain_samples_per_s']:>10} {r['read_ahead_samples_per_s']:>11} "
              f"{r['read_ahead_samples_per_s'] / r['plain_samples_per_s']:>5.2f}x "
              f"{r['step_read_mib_per_sample']:>18} {r['peak_rss_mib']:>13,}", flush=True)


if __name__ == "__main__":
    main()
