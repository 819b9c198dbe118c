"""Labels parsing and validation, a training run's videos and vocabulary, the lazily loaded (video, caption)
dataset, and batch collation."""
from __future__ import annotations

import dataclasses
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vcap.ahead import Ahead
from vcap.errors import VcapError, library_text
from vcap.extract.manifest import read_manifest

from vcap.captioner.config import TrainConfig
from vcap.captioner.datasets import feature_name, has_split, read_labels
from vcap.captioner.vocab import PAD, SPECIALS, Vocab, no_words_reason

# Features must lie within the float16 range: decoding and training run in half precision on GPUs, and
# no backbone's activations come near it, so a value beyond it (or NaN, inf) is a broken file, not a feature.
FEATURE_LIMIT = 65504.0


def load_labels(path: str | Path, format: str = "auto", split: str | None = None,
                pattern: str | None = None) -> list[tuple[str, list[str]]]:
    """[(feature file name, captions)] of a labels file in any layout `vcap.captioner.datasets` reads (MLDS:
    [(id, captions)]), the samples of `split` only where the file has splits; `pattern` names video files."""
    samples = [s for s in read_labels(path, format, split) if s.captions]
    if not samples:
        raise VcapError(f"{path}: none of its videos{f' of split {split}' if split else ''} has captions")
    return [(feature_name(s, pattern), list(s.captions)) for s in samples]


def labels_have_split(path: str | Path, format: str, split: str) -> bool:
    """Whether a labels file's layout has splits and `split` is one of them."""
    return has_split(read_labels(path, format), split)


def load_feature_config(feats_dir: str | Path) -> dict | None:
    """The "features" settings of FEATS/manifest.json (how `vcap extract` made them), or None without one."""
    manifest = read_manifest(feats_dir)
    return manifest["features"] if manifest is not None else None


def attach_features(labels: list[tuple[str, list[str]]], feats_dir: str | Path, labels_path: str | Path,
                    dim: int | None = None) -> tuple[list[tuple[str, list[str], Path]], int, tuple[int, int]]:
    """Pair each video with FEATS/<id>.npy; skip (and count) ids without one; insist on one (frames, dim).

    Returns (videos with their feature path, number skipped, (frames, dim)).
    """
    feats_dir = Path(feats_dir)
    if not feats_dir.is_dir():
        raise VcapError(f"{feats_dir}: no such feature directory (run `vcap extract` first)")
    kept, skipped, shapes = [], 0, {}
    named = feature_files(feats_dir)
    for vid, caps in labels:
        f = named.get(vid)
        if f is None:
            skipped += 1
            continue
        shapes[f] = check_features(f, dim)
        kept.append((vid, caps, f))
    if not kept:
        raise VcapError(f"{labels_path}: none of its {len(labels)} videos has features in {feats_dir} (make them "
                        f"with `vcap extract VIDEOS {feats_dir} --labels {labels_path}`)")
    counts = Counter(shapes.values()).most_common()
    shape, n = counts[0]
    if len(counts) > 1:  # blame a file of a minority shape, not whichever file came first
        odd = next(f for f, s in shapes.items() if s != shape)
        usual = next(f for f, s in shapes.items() if s == shape)
        raise VcapError(f"{odd}: feature shape mismatch: {shapes[odd]}, but {n} of the {len(shapes)} feature files "
                        f"are {shape} (e.g. {usual.name}); re-extract all videos with the same settings")
    return kept, skipped, shape


def feature_files(feats_dir: Path) -> dict[str, Path]:
    """name -> FEATS/<name>.npy, also under the name less a video extension: `vcap extract` names the features
    of video0.mp4 video0.mp4.npy, and a dataset's id video0 finds them. An exact name wins."""
    files = [p for p in feats_dir.iterdir() if p.name.endswith(".npy") and not p.name.startswith(".")]
    out = {}
    for p in files:
        stem = p.name[: -len(".npy")]
        base, dot, ext = stem.rpartition(".")
        if dot and 1 <= len(ext) <= 4 and ext.isalnum():
            out.setdefault(base, p)
    return {**out, **{p.name[: -len(".npy")]: p for p in files}}


def check_features(f: Path, dim: int | None = None) -> tuple[int, int]:
    """The (frames, dim) of a feature file, or a VcapError naming it: not a .npy, not numbers, wrong
    shape, or values that are not finite numbers within FEATURE_LIMIT. Reads the whole file once."""
    with f.open("rb") as stream:
        magic = stream.read(6)
    if magic != b"\x93NUMPY":
        raise VcapError(f"{f}: not a .npy feature file ({'empty' if not magic else 'no NumPy header'}); "
                        "make features with `vcap extract` or numpy.save")
    try:
        arr = np.load(f, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise VcapError(f"{f}: cannot read it as a feature array ({library_text(exc)}); extract it again") from None
    if arr.dtype.kind not in "fiu":
        raise VcapError(f"{f}: features must be numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise VcapError(f"{f}: features must be (frames, dim), got shape {tuple(arr.shape)}")
    if dim is not None and arr.shape[1] != dim:
        raise VcapError(f"{f}: feature dim {arr.shape[1]} but the model expects {dim}; "
                        "use features extracted with the model's settings")
    # max/min propagate NaN, and a NaN comparison is False: two passes, no temporary array
    if not (arr.max() <= FEATURE_LIMIT and arr.min() >= -FEATURE_LIMIT):
        bad = int(np.count_nonzero(~(np.abs(np.asarray(arr, np.float64)) <= FEATURE_LIMIT)))
        raise VcapError(f"{f}: {bad} of its {arr.size} values are NaN, infinite or beyond +-{FEATURE_LIMIT:g}; "
                        "extract it again (vcap extract --overwrite) or drop its video from the labels")
    return tuple(arr.shape)


def split_videos(videos: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out a seeded `fraction` of videos (never captions of a training video) for validation."""
    order = list(range(len(videos)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(videos) * fraction)) if len(videos) > 1 and fraction > 0 else 0
    val = set(order[:n_val])
    return [v for i, v in enumerate(videos) if i not in val], [v for i, v in enumerate(videos) if i in val]


def _videos(labels_path: str, feats: str, role: str, config: TrainConfig,
            split: str) -> tuple[list, tuple[int, int]]:
    labels = load_labels(labels_path, config.labels_format, split, config.video_pattern)
    videos, skipped, shape = attach_features(labels, feats, labels_path)
    if skipped:
        print(f"vcap: {role}: skipped {skipped} of {skipped + len(videos)} videos without features in {feats}",
              file=sys.stderr)
    return videos, shape


def _train_and_val_videos(config: TrainConfig) -> tuple[list, list, tuple[int, int]]:
    """Training videos (LABELS' --split) and validation videos: --val-labels, else LABELS' --val-split where
    its layout has one (MSR-VTT's validate), else a seeded --val-fraction share of the training videos."""
    videos, shape = _videos(config.labels, config.feats, "training labels", config, config.split)
    val_source = config.val_labels or (config.labels if labels_have_split(config.labels, config.labels_format,
                                                                          config.val_split) else None)
    if val_source is None:
        return (*split_videos(videos, config.val_fraction, config.seed), shape)
    val_videos, val_shape = _videos(val_source, config.feats, "validation labels", config, config.val_split)
    if val_shape != shape:
        raise VcapError(f"{val_source}: feature shape {val_shape} differs from training {shape}")
    return videos, val_videos, shape


@dataclasses.dataclass
class TrainingData:
    """What a run trains and validates on."""

    train_videos: list
    val_videos: list  # empty: no held-out split (--val-fraction 0)
    vocab: Vocab
    shape: tuple[int, int]  # (frames, feature dim)


def training_data(config: TrainConfig) -> TrainingData:
    """The training and held-out videos with their features, and the vocabulary of the training captions."""
    train_videos, val_videos, shape = _train_and_val_videos(config)
    if not train_videos or (config.val_fraction and not val_videos):
        raise VcapError(f"{config.labels}: need at least 2 videos with features to hold some out for validation "
                        f"(or --val-fraction 0)")
    captions = [c for _, caps, _ in train_videos for c in caps]
    vocab = Vocab.build(captions, config.min_count)
    if len(vocab) == len(SPECIALS):
        raise VcapError(f"{config.labels}: {no_words_reason(captions, config.min_count)}; nothing to learn")
    return TrainingData(train_videos, val_videos, vocab, shape)


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

    def by_video(self) -> list[list[int]]:
        """The sample indices of each video's captions."""
        groups: dict[int, list[int]] = {}
        for i, (video, _) in enumerate(self.samples):
            groups.setdefault(video, []).append(i)
        return list(groups.values())

    def collate(self, items: list[tuple[int, list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> feats (U, T, D) float32 of the batch's U distinct videos, captions (B, L) long padded with <PAD>,
        rows (B,) long: the video of each caption, so a video with several captions is read and encoded once."""
        videos = list(dict.fromkeys(v for v, _ in items))
        row_of = {v: row for row, v in enumerate(videos)}
        length = max(len(ids) for _, ids in items)
        caps = torch.full((len(items), length), PAD, dtype=torch.long)
        for row, (_, ids) in enumerate(items):
            caps[row, : len(ids)] = torch.tensor(ids)
        return self.bank.batch(videos), caps, torch.tensor([row_of[v] for v, _ in items])


def batch_loader(dataset: CaptionDataset, batches: list[list[int]], pin_memory: bool = False) -> Ahead:
    """The training batches of one epoch, read from the disk two ahead of the step that trains on them. A thread,
    not worker processes: batches of 80 x 4096 features need no pickling between threads, and on a machine of
    few cores a process would take a core from the training step."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=dataset.collate, pin_memory=pin_memory)
    return Ahead(loader, 2, "vcap-read-ahead")
