"""Features -> caption strings: greedy or beam decoding, batched over videos."""
from __future__ import annotations

import sys
from typing import Callable, Iterator, Sequence

import torch

from vcap.captioner.config import DecodeConfig
from vcap.captioner.beam import Hypothesis, beam_search, length_normalised, mask_step
from vcap.captioner.vocab import BOS, EOS, Vocab


@torch.inference_mode()
def greedy_search(model, feats: torch.Tensor, max_len: int = 20, no_repeat_ngram: int = 0) -> list[Hypothesis]:
    """feats (B, T, D) -> per video the argmax path (same token rules as beam search) and its log-prob."""
    state = model.encode(feats)
    B = feats.shape[0]
    words = torch.full((B,), BOS, dtype=torch.long, device=feats.device)
    seqs: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    done = [False] * B
    for _ in range(max_len):
        logits, state = model.step(words, state)
        logp = torch.log_softmax(logits.float(), -1)
        words = mask_step(logp, seqs, no_repeat_ngram).argmax(-1)  # (B,)
        picked = logp.gather(1, words.unsqueeze(1)).squeeze(1).tolist()
        for b, w in enumerate(words.tolist()):
            if not done[b]:
                seqs[b].append(w)
                scores[b] += picked[b]
                done[b] = w == EOS
        if all(done):
            break
    return list(zip(seqs, scores))


@torch.inference_mode()
def decode(model, feats: torch.Tensor, beam: int = 1, max_len: int = 20, no_repeat_ngram: int = 2,
           length_alpha: float = 0.7) -> list[Hypothesis]:
    """Greedy for beam=1; otherwise beam search, keeping the greedy path when it scores higher.

    Plain beam search can prune the greedy path and end below it; comparing costs one extra greedy pass
    (1/K of the beam's work) and guarantees a wider beam never returns a worse-scoring caption.
    """
    greedy = greedy_search(model, feats, max_len, no_repeat_ngram)
    if beam <= 1:
        return greedy
    beamed = beam_search(model, feats, beam, max_len, no_repeat_ngram, length_alpha)
    return [max(g, h, key=lambda x: length_normalised(x[1], len(x[0]), length_alpha)) for g, h in zip(greedy, beamed)]


def caption_features(model, vocab: Vocab, feats: torch.Tensor, config: DecodeConfig,
                     trained_max_words: int | None) -> list[str]:
    """feats (B, T, D) on the model's device -> one caption per video (eval mode, no autograd), at most
    `config.max_words` words, or as many as the model was trained on."""
    was_training = model.training
    model.eval()
    try:
        hyps = decode(model, feats.float(), config.beam, config.max_len(trained_max_words), config.no_repeat_ngram,
                      config.length_alpha)
    finally:
        model.train(was_training)
    captions = [vocab.decode(seq) for seq, _ in hyps]
    if config.beam > 1 and not all(captions):
        _warn_empty(sum(not c for c in captions), len(captions), config)
    return captions


_warned: set[str] = set()


def _warn_empty(empty: int, total: int, config: DecodeConfig) -> None:
    """Once a process: an empty caption from a beam is no answer, and it comes from the decoding settings, not
    the video. (A greedy one comes from the model: training and evaluation say so of all its captions.)"""
    if "empty" in _warned:
        return
    _warned.add("empty")
    print(f"vcap: warning: {empty} of {total} captions came out empty: with --beam {config.beam} a hypothesis "
          f"that ends at once can outscore every caption; try a smaller --beam or a larger --length-alpha",
          file=sys.stderr)


def caption_in_batches(model, vocab: Vocab, feats_of: Callable[[list[int]], torch.Tensor], items: Sequence[int],
                       batch: int, config: DecodeConfig, trained_max_words: int | None,
                       device: torch.device) -> Iterator[tuple[list[int], list[str]]]:
    """The one feature -> caption loop of caption, serve, evaluate and validation: `items` `batch` at a time,
    `feats_of(indices)` -> (B, T, D); yields (indices, their captions) as each batch is decoded."""
    for start in range(0, len(items), batch):
        indices = list(items[start : start + batch])
        yield indices, caption_features(model, vocab, feats_of(indices).to(device), config, trained_max_words)


@torch.inference_mode()
def sequence_logprob(model, feats: torch.Tensor, seqs: list[list[int]]) -> list[float]:
    """Teacher-forced summed log-probability of each token sequence (the score decoders maximise)."""
    out = []
    for b, seq in enumerate(seqs):
        caps = torch.tensor([[BOS, *seq]], device=feats.device)
        logp = torch.log_softmax(model(feats[b:b + 1], caps).float(), -1)[0]  # (len, V)
        out.append(float(logp.gather(1, caps[0, 1:].unsqueeze(1)).sum()))
    return out
