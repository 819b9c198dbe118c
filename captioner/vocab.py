"""Caption tokenisation and the word <-> id table saved inside every checkpoint."""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<PAD>", "<BOS>", "<EOS>", "<UNK>"]

_PUNCT = re.compile(r"[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case and drop punctuation, so 'A man, running.' and 'a man running' share tokens."""
    return _PUNCT.sub("", text.lower()).split()


class Vocab:
    """Ids 0-3 are <PAD>, <BOS>, <EOS>, <UNK>; the rest are words in a fixed order."""

    def __init__(self, words: list[str]):
        if words[:4] != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 4) -> "Vocab":
        """Words seen fewer than `min_count` times map to <UNK> (count them on training captions only)."""
        counts = Counter(tok for cap in captions for tok in tokenize(cap))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_words: int) -> list[int]:
        """<BOS> w1 .. wn <EOS>, truncated to `max_words` words."""
        ids = [self.index.get(tok, UNK) for tok in tokenize(text)][:max_words]
        return [BOS, *ids, EOS]

    def decode(self, ids: Iterable[int]) -> str:
        """Stop at <EOS>; drop the other special tokens."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i > UNK:
                out.append(self.words[i])
        return " ".join(out)
