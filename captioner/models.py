"""What every captioner shares: one encode/step interface, the training forward pass, and build_model, which
makes one by name from the registry (each captioner is a module of vcap.captioner.captioners).

Each exposes `encode(feats) -> state` and `step(words, state) -> (logits, state)` (`advance` then `project`,
split so that training can run the output layer once over all steps), where every tensor in
`state` has the batch on dim 0, so training, greedy decoding and beam search share one loop and beam
search can reorder hypotheses with `index_select(0, ...)`.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vcap.captioner import captioners
from vcap.captioner.captioners import ModelConfig
from vcap.captioner.vocab import PAD

State = tuple[torch.Tensor, ...]


class Dropout(nn.Dropout):
    """nn.Dropout, with the mask drawn by torch.rand on the CPU, where dropout's bernoulli_ is about twice as
    slow. The same distribution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = torch.rand(x.shape) >= self.p
        return x * keep.to(x.dtype) * (1 / (1 - self.p))


class Captioner(nn.Module):
    name = ""  # its registry name, set by build_model

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = dataclasses.asdict(config)  # plain values: a checkpoint's model_config
        self.frame_stride = config.frame_stride
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD)
        self.drop = Dropout(config.dropout)

    def frames(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, ceil(T / frame_stride), D): every k-th frame, the same in training and decoding.

        Neighbouring frames of a short clip are near duplicates; keeping one in k cuts the encoder's cost k-fold.
        """
        return feats[:, :: self.frame_stride] if self.frame_stride > 1 else feats

    def encode(self, feats: torch.Tensor) -> State:
        raise NotImplementedError

    def advance(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Feed one word per sample: -> (the decoder output the next word is predicted from, new state)."""
        raise NotImplementedError

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder outputs (..., X) -> float logits (..., V)."""
        return self.out(self.drop(hidden)).float()

    def step(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        hidden, state = self.advance(words, state)
        return self.project(hidden), state

    def forward(self, feats: torch.Tensor, captions: torch.Tensor, teacher_prob: float = 1.0,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """feats (U, T, D), captions (B, L) starting with <BOS> -> logits (B, L-1, V) predicting captions[:, 1:].

        rows (B,): the video (row of feats) of each caption, so each video is encoded once however many of its
        captions the batch holds; None: one video a caption (U = B).

        Scheduled sampling: at each step a sample feeds the ground-truth word with probability
        `teacher_prob`, else the model's own previous argmax, so training sees its own mistakes.
        The output layer, most of a step's work with a large vocabulary, runs once over all steps at the
        end; inside the loop it runs (without gradient) only at steps where some sample feeds its own word.
        """
        state = self.encode(feats)
        if rows is not None:
            state = tuple(s.index_select(0, rows) for s in state)
        words = _fresh_column(captions, 0)
        own = torch.zeros(captions[:, 1:].shape, dtype=torch.bool, device=captions.device)  # (B, L-1)
        if teacher_prob < 1.0:
            own = torch.rand(own.shape, device=own.device) >= teacher_prob
        steps_with_own = own.any(0).tolist()  # one device sync a batch, not one a step
        hiddens = []
        for t in range(captions.shape[1] - 1):
            hidden, state = self.advance(words, state)
            hiddens.append(hidden)
            words = _fresh_column(captions, t + 1)
            if steps_with_own[t]:
                with torch.no_grad():
                    words = torch.where(own[:, t], self.project(hidden).argmax(-1), words)
        return self.project(torch.stack(hiddens, 1))


def _fresh_column(captions: torch.Tensor, t: int) -> torch.Tensor:
    """captions[:, t] as a new contiguous tensor, like the sampled words that may replace it: a compiled step
    then always sees one stride and no view (the plain slice recompiled it for every caption length)."""
    return captions[:, t].clone(memory_format=torch.contiguous_format)


def build_model(name: str, **model_config) -> Captioner:
    """Captioner `name` of the registry, from a model_config (a model's `.config`, as saved in checkpoints)."""
    entry = captioners.spec(name)
    model = entry.model(entry.config(**model_config))
    model.name = name
    return model
