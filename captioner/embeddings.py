"""Initialise word embeddings from a word2vec/GloVe text file, so rare words start somewhere sensible."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from vcap.errors import VcapError

from vcap.captioner.vocab import Vocab, tokenize


def load_word_vectors(path: str | Path, vocab: Vocab, weight: torch.Tensor) -> int:
    """Copy the vectors of vocabulary words found in `path` into `weight` (V, E) in place; return how many.

    Accepts GloVe ("word v1 v2 ...") and word2vec text (the same with an "N D" header line).
    Words not in the file keep their random initialisation.
    """
    path = Path(path)
    if not path.is_file():
        raise VcapError(f"{path}: no such embeddings file")
    dim, found = weight.shape[1], 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if n == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) < 2:
                continue
            if len(parts) - 1 != dim:
                raise VcapError(f"{path}: vectors have {len(parts) - 1} dimensions but the model's word "
                                f"embeddings have {dim}; pass --embed-dim {len(parts) - 1}")
            i = vocab.index.get(parts[0])
            if i is not None and i > 3:
                try:
                    weight[i] = torch.tensor([float(x) for x in parts[1:]])
                except ValueError:
                    raise VcapError(f"{path}: line {n + 1} is not 'word v1 v2 ...'") from None
                found += 1
    return found


def caption_word_vectors(captions: Iterable[str], dim: int = 300, window: int = 4, min_count: int = 2,
                         max_vocab: int = 4000) -> dict[str, np.ndarray]:
    """Word vectors from a caption corpus: SVD of the positive PMI co-occurrence matrix (Levy & Goldberg 2014).

    A dependency-free stand-in for word2vec that learns, from many captions of *other* videos, that
    "guy" sits near "man" and "slicing" near "cutting", which 64 training videos cannot teach.
    Vectors are scaled to unit RMS per dimension so they start at the scale nn.Embedding uses.
    """
    from collections import Counter

    sents = [tokenize(c) for c in captions]
    counts = Counter(w for s in sents for w in s)
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))[:max_vocab]
    index = {w: i for i, w in enumerate(words)}
    co = np.zeros((len(words), len(words)), dtype=np.float64)
    for s in sents:
        ids = [index.get(w, -1) for w in s]
        for i, a in enumerate(ids):
            if a < 0:
                continue
            for j in range(max(0, i - window), min(len(ids), i + window + 1)):
                if j != i and ids[j] >= 0:
                    co[a, ids[j]] += 1.0 / abs(i - j)
    row, col = co.sum(1, keepdims=True), co.sum(0, keepdims=True) ** 0.75  # context smoothing
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(co * col.sum() / (row * col))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    k = min(dim, len(words) - 1)
    torch.manual_seed(0)
    u, s, _ = torch.svd_lowrank(torch.from_numpy(ppmi), q=k, niter=4)
    vecs = (u * s.sqrt()).numpy()  # (W, k)
    vecs = vecs / np.maximum(vecs.std(0, keepdims=True), 1e-12)
    if k < dim:
        vecs = np.pad(vecs, ((0, 0), (0, dim - k)))
    return {w: vecs[i].astype(np.float32) for w, i in index.items()}


def write_word_vectors(path: str | Path, vectors: dict[str, np.ndarray]) -> None:
    """word2vec text format ("N D" header, then "word v1 v2 ..."), readable by load_word_vectors and gensim."""
    dim = len(next(iter(vectors.values())))
    with Path(path).open("w", encoding="utf-8") as f:
        f.write(f"{len(vectors)} {dim}\n")
        for w, v in vectors.items():
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
