"""LSTM encoder + LSTM decoder with additive attention.

The frames are encoded once; at each word the decoder attends over them (Bahdanau et al. 2015), and those
weights are what `vcap caption --explain` draws."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vcap.captioner.captioners import CaptionerSpec, ModelConfig
from vcap.captioner.models import Captioner, State


@dataclass(frozen=True)
class Config(ModelConfig):
    """Only the hyperparameters every captioner takes."""


class AdditiveScores(torch.autograd.Function):
    """Bahdanau's scores v . tanh(keys + query) (keys (B, T, H), query (B, H), v (H,) -> (B, T)), in fp32 with a
    hand-written backward: the (B, T, H) tensors each decoder step makes are memory-bound, and this takes 8
    passes over them where autograd takes 13 (tanh in place, no casts for autocast, tanh's gradient in one op).
    fp32 also because the CPU's bf16 tanh is several times slower than its fp32 one."""

    @staticmethod
    def forward(ctx, keys: torch.Tensor, query: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        squashed = torch.tanh_(keys + query.unsqueeze(1))
        ctx.save_for_backward(squashed, v)
        return squashed @ v

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        squashed, v = ctx.saved_tensors
        with torch.autocast(grad.device.type, enabled=False):  # fp32 even if backward() runs under autocast
            grad_keys = torch.ops.aten.tanh_backward(grad.unsqueeze(-1) * v, squashed)  # of keys + query: (B, T, H)
            return grad_keys, grad_keys.sum(1), squashed.flatten(0, 1).t() @ grad.flatten()


class AttentionCaptioner(Captioner):
    """Linear+dropout+LSTM encoder over frames; LSTM decoder with additive (Bahdanau) attention."""

    def __init__(self, config: Config):
        super().__init__(config)
        hidden = config.hidden
        self.proj = nn.Linear(config.feature_dim, hidden)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.att_keys = nn.Linear(hidden, hidden, bias=False)
        self.att_query = nn.Linear(hidden, hidden)
        self.att_v = nn.Linear(hidden, 1, bias=False)
        self.decoder = nn.LSTMCell(config.embed_dim + hidden, hidden)
        self.out = nn.Linear(2 * hidden, config.vocab_size)

    def encode(self, feats: torch.Tensor) -> State:
        enc, (h, c) = self.encoder(self.drop(self.proj(self.frames(feats))))  # enc (B, T, H); h, c (1, B, H)
        return enc, self.att_keys(enc).float(), h[0].float(), c[0].float()

    def attend(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (context (B, H), attention weights over the encoded frames (B, T)) for the next word."""
        enc, keys, h, _ = state
        query = self.att_query(h).float()
        with torch.autocast(enc.device.type, enabled=False):
            scores = AdditiveScores.apply(keys, query, self.att_v.weight.float().squeeze(0))  # (B, T)
        weights = scores.softmax(-1).to(enc.dtype)
        return torch.bmm(weights.unsqueeze(1), enc).squeeze(1), weights

    def advance(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        enc, keys, h, c = state
        context, _ = self.attend(state)
        x = torch.cat([self.drop(self.embed(words)).to(context.dtype), context], -1)
        h, c = self.decoder(x, (h.to(x.dtype), c.to(x.dtype)))
        return torch.cat([h.to(context.dtype), context], -1), (enc, keys, h.float(), c.float())


SPEC = CaptionerSpec("attention", Config, AttentionCaptioner)
