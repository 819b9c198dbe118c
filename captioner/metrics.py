"""Caption metrics: the MLDS course's BLEU@1 and the COCO caption metrics (pycocoevalcap)."""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from vcap.captioner.vocab import tokenize


def _closest_ref_length(ref_lengths: list[int], cand_length: int) -> int:
    """The reference length closest to the candidate's; on a tie the earliest reference wins (as MLDS)."""
    best = ref_lengths[0]
    for r in ref_lengths:
        if abs(cand_length - r) < abs(cand_length - best):
            best = r
    return best


def mlds_bleu1(candidate: str, references: list[str]) -> float:
    """BLEU@1 of one caption as MLDS bleu_eval.py scores it.

    Whitespace tokens compared lower-cased (punctuation other than a trailing '.' stays on the word),
    counts clipped by the most any one reference has, brevity penalty exp(1 - r/c) when c <= r with r the
    reference length closest to c. An empty candidate scores 0 (the course script divides by zero).
    """
    refs = [r.rstrip(".").strip().lower().split() for r in references]
    cand = candidate.strip().lower().split()
    if not cand or not refs:
        return 0.0
    ref_counts = [Counter(r) for r in refs]
    clipped = sum(min(n, max(rc[w] for rc in ref_counts)) for w, n in Counter(cand).items())
    precision = clipped / len(cand)
    c, r = len(cand), _closest_ref_length([len(x) for x in refs], len(cand))
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return precision * bp


def mlds_bleu1_corpus(predictions: dict[str, str], references: dict[str, list[str]]) -> float:
    """Mean of per-video MLDS BLEU@1 over the videos in `references` (a missing prediction scores 0)."""
    scores = [mlds_bleu1(predictions.get(vid, ""), refs) for vid, refs in references.items()]
    return sum(scores) / len(scores) if scores else 0.0


def java_available() -> bool:
    return shutil.which("java") is not None


def ptb_tokenize(captions: dict[str, list[dict]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer, run from a temp folder of ours holding a link to its jar.

    It writes its input file beside its jar and runs Java there, which fails where its package folder is
    read-only (a system-wide install); the folder is where its module's __file__ says it is.
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    installed = ptbtokenizer.__file__
    with tempfile.TemporaryDirectory(prefix="vcap-ptb-") as tmp:
        os.symlink(jar, Path(tmp) / jar.name)
        ptbtokenizer.__file__ = str(Path(tmp) / "ptbtokenizer.py")
        try:
            return ptbtokenizer.PTBTokenizer().tokenize(captions)
        finally:
            ptbtokenizer.__file__ = installed


def coco_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr from pycocoevalcap.

    With Java: the PTB tokenizer and METEOR, as the COCO evaluation does. Without Java: our own
    lower-case/punctuation-stripping tokeniser, METEOR skipped with one warning line.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = [vid for vid in references if vid in predictions]
    if not ids:
        return {}
    java = java_available()
    if java:
        gts = ptb_tokenize({v: [{"caption": c} for c in references[v]] for v in ids})
        res = ptb_tokenize({v: [{"caption": predictions[v]}] for v in ids})
    else:
        print("vcap: warning: java not found on PATH; skipping METEOR and the PTB tokenizer", file=sys.stderr)
        gts = {v: [" ".join(tokenize(c)) for c in references[v]] for v in ids}
        res = {v: [" ".join(tokenize(predictions[v]))] for v in ids}
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        out["METEOR"] = float(Meteor().compute_score(gts, res)[0])
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return out


# Words that say nothing about a video on their own: captions of only these are degenerate.
STOP_WORDS = frozenset("a an the is are was were be been being am of in on at to into onto and or with by for "
                       "from as it its this that these those there here his her their some".split())


def degenerate(captions: list[str]) -> str | None:
    """Why captions of several videos say nothing about them (one caption for all, or stop words only), or None."""
    if captions and not any(captions):
        return "they are all empty"
    if len(captions) >= 2 and len(set(captions)) == 1:
        return f"all get the caption {captions[0]!r}"
    if captions and all(set(c.split()) <= STOP_WORDS for c in captions):
        return f"they hold only stop words, e.g. {captions[0]!r}"
    return None
