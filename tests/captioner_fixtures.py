"""Synthetic feature caches whose captions are a function of the features, so a model can learn them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Training settings small enough for a test to learn the synthetic captions in seconds.
TINY = dict(hidden=32, embed_dim=16, dropout=0.1, lr=1e-2, batch_size=16, min_count=1, progress=False)

SUBJECTS = ["man", "woman", "dog", "cat", "child", "panda"]
ACTIONS = ["running", "cooking", "swimming", "dancing", "singing", "riding"]
PLACES = ["street", "kitchen", "pool", "stage", "park", "road"]


def class_captions(k: int) -> list[str]:
    """Two phrasings per class (so a video has several references, as in MSVD)."""
    s, a, p = SUBJECTS[k], ACTIONS[k], PLACES[k]
    return [f"A {s} is {a} in the {p}.", f"the {s} is {a}"]


def make_synthetic(root: Path, n_videos: int = 60, classes: int = 4, frames: int = 6, dim: int = 12,
                   noise: float = 0.3, seed: int = 0, name: str = "labels.json") -> tuple[Path, Path]:
    """Write root/feats/vid<i>.avi.npy ((frames, dim) float32) and root/<name>; return (feats dir, labels)."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234).normal(size=(classes, frames, dim)).astype(np.float32)
    feats = root / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    labels = []
    for i in range(n_videos):
        k = i % classes
        vid = f"vid{seed}_{i}.avi"
        x = patterns[k] + noise * rng.normal(size=(frames, dim)).astype(np.float32)
        np.save(feats / f"{vid}.npy", x.astype(np.float32))
        labels.append({"id": vid, "caption": class_captions(k)})
    path = root / name
    path.write_text(json.dumps(labels))
    return feats, path
