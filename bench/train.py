"""Training throughput on MSVD-sized synthetic data: the loop as written vs a plain fp32 loop.

The data has MSVD's shape: 1,200 training videos with 41 captions each (its mean), so a batch of random
samples rarely holds one video twice; their features come from 48 files shared round-robin (the timing
does not depend on their values). Each loop is timed over the first --samples samples of an epoch.

As written: `train_epoch` on `epoch_batches` (bf16 autocast where supported, the output layer run once over
all steps, each video of a batch encoded once for its `captions_per_video` captions).
Plain: the textbook loop in fp32 on batches of independent samples, each encoded, logits from `step()` at every
step, on the same model and data.

Usage: python bench/train.py [--samples 384] [--device cpu] [--compile]
Prints samples/s (best of --repeats) for each loop and the ratios (--compile adds the loop as
written with `vcap train --compile`). Figures only; no assertions.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from peak import flops, peak_around  # bench/peak.py

from vcap.captioner.data import CaptionDataset, FeatureBank
from vcap.captioner.models import build_model
from vcap.captioner.config import TrainConfig
from vcap.captioner.train import caption_loss, epoch_batches, teacher_schedule, train_epoch
from vcap.captioner.vocab import PAD, SPECIALS, Vocab
from vcap.device import autocast, compile_quietly, resolve_precision


def synthetic(root: Path, videos: int, captions: int, files: int, frames: int, dim: int, vocab_size: int,
              seed: int = 0):
    """~60% zeros like VGG fc7 after ReLU; `captions` captions of 6-20 random vocabulary words a video;
    video v reads feature file v % files."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab_size - len(SPECIALS))])
    paths = [root / f"f{i}.npy" for i in range(files)]
    for path in paths:
        np.save(path, np.maximum(rng.normal(size=(frames, dim)), 0.3).astype(np.float32) - 0.3)
    items = [(f"v{v}", [" ".join(rng.choice(words, size=rng.integers(6, 21))) for _ in range(captions)],
              paths[v % files]) for v in range(videos)]
    return items, Vocab(SPECIALS + words.tolist())


def plain_epoch(model, loader, opt, device: torch.device, schedule) -> None:
    """One fp32 epoch, one projection per step, as a first implementation would write it."""
    model.train()
    for step, (feats, caps, rows) in enumerate(loader):
        feats, caps = feats[rows].to(device), caps.to(device)  # one copy of the video per caption
        state, words, out = model.encode(feats), caps[:, 0], []
        for t in range(caps.shape[1] - 1):
            logits, state = model.step(words, state)
            out.append(logits)
            use_truth = torch.rand(words.shape, device=device) < schedule(step)
            words = torch.where(use_truth, caps[:, t + 1], logits.detach().argmax(-1))
        loss = torch.nn.functional.cross_entropy(torch.stack(out, 1).flatten(0, 1), caps[:, 1:].flatten(),
                                                 ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


def bench_model(model_name: str, vocab_size: int, device: torch.device):
    """The captioner both loops train: hidden 512, all 80 frames."""
    return build_model(model_name, feature_dim=4096, vocab_size=vocab_size, hidden=512, embed_dim=300,
                       dropout=0.35, frame_stride=1).to(device)


def run(ds: CaptionDataset, vocab_size: int, device: torch.device, model_name: str, batch: int, samples: int,
        precision: str, plain: bool = False, compiled: bool = False,
        captions_per_video: int = TrainConfig.captions_per_video, seed: int = 0) -> float:
    """Samples/s over the first `samples` of an epoch: `train_epoch` in `precision`, or `plain_epoch` (fp32,
    batches of independent samples) when `plain`; `compiled` compiles the decoder step as
    `vcap train --compile` does (the warm-up batch compiles)."""
    torch.manual_seed(seed)
    model = bench_model(model_name, vocab_size, device)
    if plain:  # the textbook model: torch's own dropout (vcap's draws its CPU masks faster)
        model.drop = torch.nn.Dropout(model.drop.p)
    if compiled:
        model.advance = compile_quietly(model.advance)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    warm = DataLoader(torch.utils.data.Subset(ds, range(batch)), batch_size=batch, collate_fn=ds.collate)
    train_epoch(model, warm, opt, device, precision, scaler, teacher_schedule("always"), 0, 5.0, progress=False)
    batches = epoch_batches(ds, batch, 1 if plain else captions_per_video, seed)[: max(1, samples // batch)]
    loader = DataLoader(ds, batch_sampler=batches, collate_fn=ds.collate)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if plain:
        plain_epoch(model, loader, opt, device, teacher_schedule("inverse-sigmoid:1000"))
    else:
        train_epoch(model, loader, opt, device, precision, scaler, teacher_schedule("inverse-sigmoid:1000"), 0,
                    5.0, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(map(len, batches)) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=384, help="(video, caption) pairs timed per loop")
    ap.add_argument("--videos", type=int, default=1200, help="videos in the data set (MSVD's training split)")
    ap.add_argument("--captions", type=int, default=41, help="captions a video (MSVD's mean)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="attention")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="timed stretches per loop (best is reported)")
    ap.add_argument("--captions-per-video", type=int, default=TrainConfig.captions_per_video,
                    help="captions of one video in a batch of the loop as written (the plain loop: 1)")
    ap.add_argument("--compile", action="store_true", help="also time the loop with the decoder step compiled")
    args = ap.parse_args()
    device = torch.device(args.device)
    precision = resolve_precision("auto", device)
    with tempfile.TemporaryDirectory() as tmp:
        items, vocab = synthetic(Path(tmp), args.videos, args.captions, 48, 80, 4096, 3000)
        print(f"{args.model} on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{args.videos} videos x {args.captions} captions (80x4096 features, vocab {len(vocab)}, "
              f"<=20 words), {args.samples} samples timed, batch {args.batch}, "
              f"{args.captions_per_video} caption(s) of a video in a batch as written")
        ds = CaptionDataset(items, vocab, FeatureBank([p for _, _, p in items]), max_words=20)
        k = args.captions_per_video
        per_sample = step_flops(ds, len(vocab), device, precision, args.model, args.batch, k) / args.batch
        fast, plain, compiled, fractions = 0.0, 0.0, 0.0, []
        common = (ds, len(vocab), device, args.model, args.batch, args.samples)
        for _ in range(args.repeats):  # interleaved, best of each: this VM's timings are noisy
            rate, peak = peak_around(precision, device, lambda: run(*common, precision, captions_per_video=k))
            fractions.append(per_sample * rate / peak)
            fast = max(fast, rate)
            plain = max(plain, run(*common, "fp32", plain=True))
            if args.compile:
                compiled = max(compiled, run(*common, precision, compiled=True, captions_per_video=k))
    print(f"as written ({precision}):         {fast:8.1f} samples/s  {fast / plain:5.2f}x")
    if args.compile:
        print(f"as written, --compile:      {compiled:8.1f} samples/s  {compiled / plain:5.2f}x")
    print(f"plain fp32 loop:            {plain:8.1f} samples/s  1.00x")
    print(f"of the peak: {per_sample:.2f} GFLOP a sample (forward + backward); each epoch as written against a "
          f"{precision} 4096^2 matmul timed just before and after it: {', '.join(f'{f:.0%}' for f in fractions)}")


def step_flops(ds: CaptionDataset, vocab_size: int, device: torch.device, precision: str, model_name: str,
               batch: int, captions_per_video: int) -> float:
    """GFLOP of one training step as written (teacher-forced forward and backward) on one batch."""
    torch.manual_seed(0)
    model = bench_model(model_name, vocab_size, device)
    first = epoch_batches(ds, batch, captions_per_video, 0)[0]
    feats, caps, rows = (x.to(device) for x in ds.collate([ds[i] for i in first]))

    def step():
        with autocast(device, precision):
            loss = caption_loss(model, feats, caps, 1.0, rows)
        loss.backward()
    return flops(step)


if __name__ == "__main__":
    main()
