"""Batched beam search with length normalisation and n-gram repeat blocking."""
from __future__ import annotations

import torch

from vcap.captioner.vocab import BOS, EOS, PAD, UNK

# A decoded caption: token ids (ending in <EOS> if the model finished it) and its summed log-probability.
Hypothesis = tuple[list[int], float]
NEVER = (PAD, BOS, UNK)  # tokens a caption may never contain


def repeat_bans(seq: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in `seq` (n=2 rules out "a a a" and "a man ... a man")."""
    if n <= 0 or len(seq) < n - 1:
        return []
    prefix = seq[len(seq) - n + 1:] if n > 1 else []
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == prefix]


def mask_step(logp: torch.Tensor, seqs: list[list[int]], no_repeat_ngram: int) -> torch.Tensor:
    """logp (N, V) -> a copy with forbidden next tokens at -inf."""
    allowed = logp.clone()
    allowed[:, list(NEVER)] = float("-inf")
    if no_repeat_ngram > 0:
        for row, seq in enumerate(seqs):
            bans = repeat_bans(seq, no_repeat_ngram)
            if bans:
                allowed[row, bans] = float("-inf")
    return allowed


def length_normalised(score: float, length: int, alpha: float) -> float:
    """score / length**alpha: alpha=0 is the raw log-probability, alpha=1 the per-word average."""
    return score / max(length, 1) ** alpha


@torch.inference_mode()
def beam_search(model, feats: torch.Tensor, beam: int, max_len: int = 20, no_repeat_ngram: int = 0,
                length_alpha: float = 0.0) -> list[Hypothesis]:
    """feats (B, T, D) -> the best of `beam` hypotheses per video, ranked by length-normalised score.

    Finished hypotheses stay in the beam with their score frozen (their only continuation is <PAD> at
    zero cost), so all B*K rows advance in lock step and one batched `step` serves every video.
    """
    B, K = feats.shape[0], beam
    state = tuple(s.repeat_interleave(K, 0) for s in model.encode(feats))  # batch dim -> B*K
    words = torch.full((B * K,), BOS, dtype=torch.long, device=feats.device)
    scores = torch.full((B, K), float("-inf"), device=feats.device)
    scores[:, 0] = 0.0  # all K rows start identical: expand only the first
    seqs: list[list[int]] = [[] for _ in range(B * K)]
    done = torch.zeros(B * K, dtype=torch.bool, device=feats.device)
    for _ in range(max_len):
        logits, state = model.step(words, state)
        logp = torch.log_softmax(logits.float(), -1)  # (B*K, V)
        V = logp.shape[1]
        allowed = mask_step(logp, seqs, no_repeat_ngram)
        allowed[done] = float("-inf")
        allowed[done, PAD] = 0.0
        total = (scores.view(-1, 1) + allowed).view(B, K * V)
        scores, flat = total.topk(K, dim=1)  # (B, K)
        src = (torch.arange(B, device=feats.device).unsqueeze(1) * K + flat // V).view(-1)  # (B*K,)
        words = (flat % V).view(-1)
        state = tuple(s.index_select(0, src) for s in state)
        src_l, words_l, done_l = src.tolist(), words.tolist(), done.tolist()
        seqs = [seqs[s] if done_l[s] else seqs[s] + [w] for s, w in zip(src_l, words_l)]
        done = done.index_select(0, src) | (words == EOS)
        if bool(done.all()):
            break
    out = []
    flat_scores = scores.view(-1).tolist()
    for b in range(B):
        rows = range(b * K, (b + 1) * K)
        best = max(rows, key=lambda r: length_normalised(flat_scores[r], len(seqs[r]), length_alpha))
        out.append((seqs[best], flat_scores[best]))
    return out
