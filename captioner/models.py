"""The two captioners: attention seq2seq (default) and S2VT, behind one encode/step interface.

Both expose `encode(feats) -> state` and `step(words, state) -> (logits, state)` (`advance` then `project`,
split so that training can run the output layer once over all steps), where every tensor in
`state` has the batch on dim 0, so training, greedy decoding and beam search share one loop and beam
search can reorder hypotheses with `index_select(0, ...)`.
"""
from __future__ import annotations

import torch
from torch import nn

from vcap.captioner.config import CAPTIONERS
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
    name = ""

    def __init__(self, *, feature_dim: int, vocab_size: int, hidden: int, embed_dim: int, dropout: float,
                 frame_stride: int):
        """No defaults here: TrainConfig holds them, and a checkpoint's model_config gives every value."""
        super().__init__()
        self.config = {"feature_dim": feature_dim, "vocab_size": vocab_size, "hidden": hidden,
                       "embed_dim": embed_dim, "dropout": dropout, "frame_stride": frame_stride}
        self.frame_stride = frame_stride
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.drop = Dropout(dropout)

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

    name = "attention"

    def __init__(self, **config):
        super().__init__(**config)
        feature_dim, vocab_size, hidden, embed_dim = (config[k] for k in ("feature_dim", "vocab_size", "hidden",
                                                                          "embed_dim"))
        self.proj = nn.Linear(feature_dim, hidden)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.att_keys = nn.Linear(hidden, hidden, bias=False)
        self.att_query = nn.Linear(hidden, hidden)
        self.att_v = nn.Linear(hidden, 1, bias=False)
        self.decoder = nn.LSTMCell(embed_dim + hidden, hidden)
        self.out = nn.Linear(2 * hidden, vocab_size)

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


class S2VTCaptioner(Captioner):
    """Two stacked LSTMs (Venugopalan et al. 2015): frames go in with padded words, then words with padded frames."""

    name = "s2vt"

    def __init__(self, **config):
        super().__init__(**config)
        feature_dim, vocab_size, hidden, embed_dim = (config[k] for k in ("feature_dim", "vocab_size", "hidden",
                                                                          "embed_dim"))
        self.proj = nn.Linear(feature_dim, hidden)
        self.lstm1 = nn.LSTM(hidden, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden + embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

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


MODELS = {m.name: m for m in (AttentionCaptioner, S2VTCaptioner)}
assert set(MODELS) == set(CAPTIONERS), "captioner.config.CAPTIONERS lists the captioners; add a class to both"


def build_model(name: str, **config) -> Captioner:
    """`config` is a model's `.config` dict (as saved in checkpoints)."""
    return MODELS[name](**config)
