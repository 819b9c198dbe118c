"""Labels validation, vocabulary, feature pairing."""

import numpy as np
import pytest

from vcap.captioner.data import attach_features, load_labels
from vcap.captioner.vocab import BOS, EOS, UNK, Vocab, tokenize
from vcap.errors import VcapError


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("A man, running... FAST!") == ["a", "man", "running", "fast"]


def test_vocab_min_count_and_specials():
    vocab = Vocab.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.words[:4] == ["<PAD>", "<BOS>", "<EOS>", "<UNK>"]
    assert set(vocab.words[4:]) == {"a", "dog"}
    ids = vocab.encode("A dog sleeps.", max_words=20)
    assert ids[0] == BOS and ids[-1] == EOS and ids[3] == UNK
    assert vocab.decode(ids[1:]) == "a dog"


@pytest.mark.parametrize("content, message", [
    ('{"id": "x"}', "expected a JSON list"),
    ('[{"caption": ["a"]}]', "missing or non-string 'id'"),
    ('[{"id": "v.avi"}]', "missing 'caption'"),
    ('[{"id": "v.avi", "caption": []}]', "empty caption list"),
    ('[{"id": "v.avi", "caption": "a dog"}]', "must be a list of strings"),
    ('[{"id": "v.avi", "caption": ["a"]', "not valid JSON"),
])
def test_malformed_labels_give_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(VcapError) as err:
        load_labels(path)
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text


def test_missing_features_are_skipped_and_shape_mismatch_is_an_error(tmp_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "a.avi.npy", np.zeros((4, 8), np.float32))
    labels = [("a.avi", ["x"]), ("missing.avi", ["y"])]
    kept, skipped, shape = attach_features(labels, feats, "labels.json")
    assert [v for v, _, _ in kept] == ["a.avi"] and skipped == 1 and shape == (4, 8)
    np.save(feats / "b.avi.npy", np.zeros((4, 9), np.float32))
    with pytest.raises(VcapError, match="b.avi.npy: feature shape mismatch"):
        attach_features(labels + [("b.avi", ["z"])], feats, "labels.json")
