"""Labels parsing and validation, the lazily loaded (video, caption) dataset, and batch collation."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vcap.errors import VcapError

from .vocab import PAD, Vocab


def load_labels(path: str | Path) -> list[tuple[str, list[str]]]:
    """Read an MLDS labels file: [{"id": "<video>", "caption": ["...", ...]}, ...] -> [(id, captions)]."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VcapError(f"{path}: no such labels file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VcapError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise VcapError(f'{path}: expected a JSON list of {{"id": ..., "caption": [...]}}, got {type(data).__name__}')
    out = []
    for i, item in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(item, dict):
            raise VcapError(f"{where}: expected an object with 'id' and 'caption', got {type(item).__name__}")
        vid, caps = item.get("id"), item.get("caption")
        if not isinstance(vid, str) or not vid:
            raise VcapError(f"{where}: missing or non-string 'id'")
        if caps is None:
            raise VcapError(f"{where} ({vid}): missing 'caption'")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise VcapError(f"{where} ({vid}): 'caption' must be a list of strings")
        if not caps:
            raise VcapError(f"{where} ({vid}): empty caption list")
        out.append((vid, caps))
    if not out:
        raise VcapError(f"{path}: no videos in labels file")
    return out


def load_feature_config(feats_dir: str | Path) -> dict | None:
    """The "features" settings of FEATS/manifest.json (how `vcap extract` made them), or None without one."""
    path = Path(feats_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8")).get("features")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise VcapError(f"{path}: not a valid feature manifest ({exc})") from None
    return json.loads(json.dumps(config)) if isinstance(config, dict) else None


def attach_features(labels: list[tuple[str, list[str]]], feats_dir: str | Path, labels_path: str | Path,
                    dim: int | None = None) -> tuple[list[tuple[str, list[str], Path]], int, tuple[int, int]]:
    """Pair each video with FEATS/<id>.npy; skip (and count) ids without one; insist on one (frames, dim).

    Returns (videos with their feature path, number skipped, (frames, dim)).
    """
    feats_dir = Path(feats_dir)
    if not feats_dir.is_dir():
        raise VcapError(f"{feats_dir}: no such feature directory (run `vcap extract` first)")
    kept, skipped, shape = [], 0, None
    for vid, caps in labels:
        f = feats_dir / f"{vid}.npy"
        if not f.exists():
            skipped += 1
            continue
        try:
            arr = np.load(f, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise VcapError(f"{f}: not a readable .npy feature file ({exc})") from None
        if arr.ndim != 2:
            raise VcapError(f"{f}: features must be (frames, dim), got shape {tuple(arr.shape)}")
        if dim is not None and arr.shape[1] != dim:
            raise VcapError(f"{f}: feature dim {arr.shape[1]} but the model expects {dim}; "
                            "use features extracted with the model's settings")
        if shape is None:
            shape = tuple(arr.shape)
        elif tuple(arr.shape) != shape:
            raise VcapError(f"{f}: feature shape mismatch: {tuple(arr.shape)} but other videos are {shape}; "
                            "re-extract all videos with the same settings")
        kept.append((vid, caps, f))
    if not kept:
        raise VcapError(f"{labels_path}: none of its {len(labels)} videos has features in {feats_dir}")
    return kept, skipped, shape


def split_videos(videos: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out a seeded `fraction` of videos (never captions of a training video) for validation."""
    order = list(range(len(videos)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(videos) * fraction)) if len(videos) > 1 else 0
    val = set(order[:n_val])
    return [v for i, v in enumerate(videos) if i not in val], [v for i, v in enumerate(videos) if i in val]


class FeatureBank:
    """Features per video, read from disk on demand (mmap) unless `cache` keeps them all in RAM."""

    def __init__(self, paths: list[Path], cache: bool = False):
        self.paths = paths
        self.cache = [np.load(p).astype(np.float32) for p in paths] if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[i]
        return np.asarray(np.load(self.paths[i], mmap_mode="r"), dtype=np.float32)

    def batch(self, idx: list[int]) -> torch.Tensor:
        """(B, T, D) float32."""
        return torch.from_numpy(np.stack([self[i] for i in idx]))


class CaptionDataset(Dataset):
    """Every (video, caption) pair is one sample: (video index, token ids with <BOS>/<EOS>)."""

    def __init__(self, videos: list[tuple[str, list[str], Path]], vocab: Vocab, bank: FeatureBank, max_words: int):
        self.bank = bank
        self.samples = [(v, vocab.encode(c, max_words)) for v, (_, caps, _) in enumerate(videos) for c in caps]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, list[int]]:
        return self.samples[i]

    def collate(self, items: list[tuple[int, list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> feats (B, T, D) float32, captions (B, L) long padded with <PAD>."""
        feats = self.bank.batch([v for v, _ in items])
        length = max(len(ids) for _, ids in items)
        caps = torch.full((len(items), length), PAD, dtype=torch.long)
        for row, (_, ids) in enumerate(items):
            caps[row, : len(ids)] = torch.tensor(ids)
        return feats, caps
