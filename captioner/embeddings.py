"""Initialise word embeddings from a word2vec/GloVe text file, so rare words start somewhere sensible."""
from __future__ import annotations

from pathlib import Path

import torch

from vcap_shared import VcapError

from .vocab import Vocab


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
