"""Two stacked LSTMs, frames then words (S2VT).

Venugopalan et al. 2015: one pass reads the frames with padded words, the same LSTMs then read the words
with padded frames; no attention."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vcap.captioner.captioners import CaptionerSpec, ModelConfig
from vcap.captioner.models import Captioner, State


@dataclass(frozen=True)
class Config(ModelConfig):
    """Only the hyperparameters every captioner takes."""


class S2VTCaptioner(Captioner):
    """Two stacked LSTMs (Venugopalan et al. 2015): frames go in with padded words, then words with padded frames."""

    def __init__(self, config: Config):
        super().__init__(config)
        hidden = config.hidden
        self.proj = nn.Linear(config.feature_dim, hidden)
        self.lstm1 = nn.LSTM(hidden, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden + config.embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, config.vocab_size)

    def encode(self, feats: torch.Tensor) -> State:
        x = self.drop(self.proj(self.frames(feats)))  # (B, T', H)
        o1, (h1, c1) = self.lstm1(x)
        pad_words = o1.new_zeros(*o1.shape[:2], self.embed.embedding_dim)
        _, (h2, c2) = self.lstm2(torch.cat([o1, pad_words], -1))
        return h1[0].float(), c1[0].float(), h2[0].float(), c2[0].float()

    def advance(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h1, c1, h2, c2 = state
        pad_frame = h1.new_zeros(h1.shape[0], 1, h1.shape[1])  # (B, 1, H)
        o1, (h1, c1) = self.lstm1(pad_frame, (h1[None], c1[None]))
        x2 = torch.cat([o1, self.drop(self.embed(words)).unsqueeze(1).to(o1.dtype)], -1)
        o2, (h2, c2) = self.lstm2(x2, (h2[None].to(x2.dtype), c2[None].to(x2.dtype)))
        return o2[:, 0], (h1[0].float(), c1[0].float(), h2[0].float(), c2[0].float())


SPEC = CaptionerSpec("s2vt", Config, S2VTCaptioner)
