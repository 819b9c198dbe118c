"""Caption tokenisation and the word <-> id table saved inside every checkpoint."""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Iterable

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<PAD>", "<BOS>", "<EOS>", "<UNK>"]


def _kept(c: str) -> bool:
    """Letters, digits, '_' and combining marks (the vowel signs of Hindi, accents written apart) stay part of
    a word; whitespace separates words; punctuation, symbols (emoji, $, +), control and format characters go."""
    return c.isalnum() or c == "_" or c.isspace() or unicodedata.category(c)[0] == "M"


def tokenize(text: str) -> list[str]:
    """Lower-case and drop punctuation, so 'A man, running.' and 'a man running' share tokens, in any script:
    'लाल' stays 'लाल'."""
    return "".join(c for c in text.lower() if _kept(c)).split()


def no_words_reason(captions: list[str], min_count: int) -> str:
    """Why the captions give a vocabulary of special tokens only."""
    counts = Counter(tok for cap in captions for tok in tokenize(cap))
    if not counts:
        return "its training captions hold no words (only punctuation, symbols or spaces)"
    word, n = counts.most_common(1)[0]
    return f"--min-count {min_count} is above every word's count (the most frequent, {word!r}, appears {n} times)"


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
