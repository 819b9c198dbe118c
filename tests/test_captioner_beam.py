"""Decoding: beam width 1 is greedy, a wider beam never scores worse, repeated n-grams are blocked."""
import pytest
import torch

from vcap.captioner.beam import beam_search, repeat_bans
from vcap.captioner.config import DecodeConfig
from vcap.captioner.decode import caption_features, decode, greedy_search, sequence_logprob
from vcap.captioner.models import build_model
from vcap.captioner.vocab import SPECIALS, Vocab


def _model(name="attention", seed=0, vocab_size=12):
    torch.manual_seed(seed)
    return build_model(name, feature_dim=6, vocab_size=vocab_size, hidden=16, embed_dim=8, dropout=0.0,
                       frame_stride=1).eval()


def test_repeat_bans():
    assert repeat_bans([5, 6, 5], 2) == [6]
    assert repeat_bans([5, 6, 7], 1) == [5, 6, 7]
    assert repeat_bans([5], 3) == []


@pytest.mark.parametrize("name", ["attention", "s2vt"])
def test_beam_one_equals_greedy(name):
    model = _model(name)
    feats = torch.randn(5, 4, 6)
    beamed = beam_search(model, feats, beam=1, max_len=8, no_repeat_ngram=2)
    greedy = greedy_search(model, feats, max_len=8, no_repeat_ngram=2)
    assert [s for s, _ in beamed] == [s for s, _ in greedy]
    assert [b for _, b in beamed] == pytest.approx([g for _, g in greedy], abs=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_beam_never_scores_below_greedy(seed):
    model = _model(seed=seed)
    feats = torch.randn(6, 4, 6)
    greedy = decode(model, feats, beam=1, max_len=8, no_repeat_ngram=0, length_alpha=0.0)
    beamed = decode(model, feats, beam=4, max_len=8, no_repeat_ngram=0, length_alpha=0.0)
    for (_, g), (seq, b) in zip(greedy, beamed):
        assert b >= g - 1e-5
    # the reported score is the model's teacher-forced log-probability of the returned tokens
    rescored = sequence_logprob(model, feats, [s for s, _ in beamed])
    assert rescored == pytest.approx([b for _, b in beamed], abs=1e-4)


def test_no_repeat_ngram_blocks_a_a_a():
    model = _model(vocab_size=7)
    with torch.no_grad():  # make word 4 overwhelmingly likely at every step
        model.out.bias.fill_(0.0)
        model.out.bias[4] = 50.0
    vocab = Vocab(SPECIALS + ["a", "b", "c"])
    feats = torch.randn(3, 4, 6)
    greedy = DecodeConfig(beam=1, no_repeat_ngram=0, max_words=4)
    assert caption_features(model, vocab, feats, greedy, None)[0] == "a a a a a"
    for beam in (1, 3):
        for cap in caption_features(model, vocab, feats, DecodeConfig(beam=beam, no_repeat_ngram=2, max_words=5), None):
            words = cap.split()
            bigrams = list(zip(words, words[1:]))
            assert len(bigrams) == len(set(bigrams)) and "a a a" not in cap
