"""MLDS BLEU@1 on hand-worked examples, and the COCO metrics through pycocoevalcap."""
import math

import pytest

from vcap.captioner.metrics import coco_metrics, java_available, mlds_bleu1, mlds_bleu1_corpus


def test_exact_match_scores_one():
    assert mlds_bleu1("a man is running", ["A man is running."]) == 1.0


def test_clipped_counts_and_no_brevity_penalty():
    # candidate "the the the the" (c=4); reference "the cat is on the mat" has "the" twice -> clipped 2/4.
    # r = 6 (only reference); c=4 <= r -> bp = exp(1 - 6/4) = exp(-0.5)
    assert mlds_bleu1("the the the the", ["the cat is on the mat"]) == pytest.approx(0.5 * math.exp(-0.5))


def test_brevity_penalty_uses_closest_reference_length():
    # candidate "a dog runs" (c=3) matches 3/3 words of the first reference.
    # reference lengths 5 and 4 (trailing '.' removed) -> closest to 3 is 4 -> bp = exp(1 - 4/3)
    score = mlds_bleu1("a dog runs", ["a dog runs very fast.", "a dog is running."])
    assert score == pytest.approx(math.exp(1 - 4 / 3))


def test_longer_candidate_has_no_penalty_and_counts_clip_per_reference():
    # candidate "a cat a cat sleeps" (c=5): "a" x2 -> max in any one ref is 1 -> 1; "cat" x2 -> 1; "sleeps" 1
    # clipped = 3, precision 3/5; references have 3 words each -> r=3, c > r -> bp = 1
    assert mlds_bleu1("a cat a cat sleeps", ["a cat sleeps", "one cat sleeps"]) == pytest.approx(0.6)


def test_punctuation_other_than_trailing_period_stays_attached():
    # reference tokens: "a", "man,", "sings" -> the candidate's "man" does not match "man,": 2/3, r=3=c -> bp=1
    assert mlds_bleu1("a man sings", ["a man, sings."]) == pytest.approx(2 / 3)


def test_corpus_average_and_empty_candidate():
    preds = {"v1": "a man is running", "v2": ""}
    refs = {"v1": ["a man is running"], "v2": ["a cat"]}
    assert mlds_bleu1_corpus(preds, refs) == pytest.approx(0.5)


@pytest.mark.slow
@pytest.mark.skipif(not java_available(), reason="java not on PATH (METEOR and the PTB tokenizer need it)")
def test_coco_metrics_with_java():
    refs = {"v1": ["A man is playing a guitar.", "a man plays guitar"], "v2": ["a dog is running in a park"]}
    preds = {"v1": "a man is playing a guitar", "v2": "a cat is sleeping"}
    m = coco_metrics(preds, refs)
    assert set(m) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    # 8 of the 10 candidate words match (all of v1's, "a" and "is" of v2's); the closest reference lengths add
    # to 6 + 7 = 13 against 10 candidate words: brevity penalty exp(1 - 13/10).
    assert m["BLEU-1"] == pytest.approx(0.8 * math.exp(1 - 13 / 10), abs=1e-3)
    perfect = coco_metrics({"v1": refs["v1"][0], "v2": refs["v2"][0]}, refs)
    assert perfect["METEOR"] > m["METEOR"] > 0 and perfect["CIDEr"] > m["CIDEr"] > 0


def test_coco_metrics_without_java(monkeypatch, capsys):
    monkeypatch.setattr("vcap.captioner.metrics.java_available", lambda: False)
    refs = {"v1": ["A man is playing a guitar."], "v2": ["a dog runs"]}
    m = coco_metrics({"v1": "a man is playing a guitar", "v2": "a dog runs"}, refs)
    assert "METEOR" not in m and m["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert capsys.readouterr().err.count("\n") == 1
