"""Word vectors learnt from captions put words used in the same contexts close together."""
import numpy as np

from vcap.captioner.embeddings import caption_word_vectors, load_word_vectors, write_word_vectors
from vcap.captioner.vocab import SPECIALS, Vocab


def test_caption_word_vectors_group_interchangeable_words(tmp_path):
    captions = []
    for subject in ("man", "guy", "woman", "lady"):
        for verbs, things in ((("slicing", "cutting"), ("onion", "carrot")),
                              (("playing", "strumming"), ("guitar", "banjo"))):
            captions += [f"a {subject} is {verb} a {thing}" for verb in verbs for thing in things]
    vecs = caption_word_vectors(captions, dim=8, min_count=1)
    cos = lambda a, b: float(vecs[a] @ vecs[b] / np.linalg.norm(vecs[a]) / np.linalg.norm(vecs[b]))
    assert cos("man", "guy") > cos("man", "onion")
    assert cos("slicing", "cutting") > cos("slicing", "guitar")
    assert cos("onion", "carrot") > cos("onion", "banjo")

    path = tmp_path / "vectors.txt"
    write_word_vectors(path, vecs)
    import torch

    weight = torch.zeros(6, 8)
    assert load_word_vectors(path, Vocab(SPECIALS + ["man", "zebra"]), weight) == 1
    assert torch.allclose(weight[4], torch.from_numpy(vecs["man"]), atol=1e-4)
