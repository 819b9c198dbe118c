"""Does the extraction precision change what the captioner sees? bf16 against fp32 features, in one process.

Extracts the shipped sample clips twice (fp32, then bf16), prints the per-frame cosine between the two, trains
the demo-sized captioner on the fp32 features and prints how many clips get the same caption from the bf16
features. Uses efficientnet-lite0's genuine ImageNet weights where `vcap[lite]` is installed (else a random,
seeded VGG16: no ImageNet VGG16 weights can be had offline).

    python bench/precision.py [--frames 16] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from vcap.captioner.checkpoint import load_model
from vcap.captioner.config import DecodeConfig, TrainConfig
from vcap.captioner.decode import caption_features
from vcap.captioner.train import train
from vcap.extract.config import ExtractConfig
from vcap.extract.extractor import FeatureExtractor
from vcap.extract.folder import find_videos, video_id

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    try:
        import efficientnet_lite_pytorch  # noqa: F401

        backbone = dict(backbone="efficientnet-lite0", weights="imagenet")
    except ImportError:
        backbone = dict(backbone="vgg16", weights="none")
    videos = find_videos(SAMPLES / "videos")
    feats = {}
    for precision in ("fp32", "bf16"):
        config = ExtractConfig(frames=args.frames, device=args.device, precision=precision, workers=0, **backbone)
        feats[precision] = {video_id(p): f for p, f, _ in FeatureExtractor(config).features(videos)}
    a = np.concatenate([feats["fp32"][v] for v in sorted(feats["fp32"])])
    b = np.concatenate([feats["bf16"][v] for v in sorted(feats["fp32"])])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    print(f"{backbone['backbone']} ({backbone['weights']}), {len(videos)} clips x {args.frames} frames: "
          f"cosine bf16 vs fp32 per frame min {cos.min():.5f}, mean {cos.mean():.5f}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "feats"
        folder.mkdir()
        for vid, f in feats["fp32"].items():
            np.save(folder / f"{vid}.npy", f)
        labels = json.loads((SAMPLES / "labels.json").read_text()) + json.loads(
            (SAMPLES / "heldout_labels.json").read_text())
        (Path(tmp) / "labels.json").write_text(json.dumps(labels))
        summary = train(TrainConfig(str(folder), str(Path(tmp) / "labels.json"), str(Path(tmp) / "model"),
                                    hidden=128, embed_dim=64, batch_size=8, lr=3e-3, min_count=1, epochs=40,
                                    patience=0, frame_stride=1, val_fraction=0.1, device=args.device,
                                    precision="fp32", progress=False))
        model, vocab, info = load_model(summary.best_checkpoint)
    ids = sorted(feats["fp32"])
    captions = {p: caption_features(model, vocab, torch.from_numpy(np.stack([feats[p][v] for v in ids])),
                                    DecodeConfig(), info["max_words"]) for p in ("fp32", "bf16")}
    same = sum(x == y for x, y in zip(captions["fp32"], captions["bf16"]))
    print(f"captions from bf16 features equal to those from fp32 features: {same} of {len(ids)} clips")
    for vid, x, y in zip(ids, captions["fp32"], captions["bf16"]):
        if x != y:
            print(f"  {vid}: fp32 '{x}' / bf16 '{y}'")


if __name__ == "__main__":
    main()
