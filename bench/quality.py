"""Caption quality on real MSVD features: our captioner vs a nearest-neighbour baseline, k-fold or one split.

Usage:
  python bench/quality.py                                   # 5-fold CV over ../shared/data/msvd dev_label.json
  python bench/quality.py --folds 2 --set hidden=256 --set lr=1e-3
  python bench/quality.py --feats F --labels TRAIN.json --heldout TEST.json

Each fold trains with `captioner.train.train` (checkpoint selection on `val_fraction` of the *training*
fold, never on the held-out fold), decodes the held-out videos with `captioner.evaluate.evaluate`, and
scores two baselines on the same held-out videos: nearest neighbour (captions of the most similar training
video) and blind (one caption for every video: the training caption with the best MLDS BLEU@1 on the training
videos), which shows what the language alone earns. Folds are fixed by
zlib.crc32(video id) % folds. Prints a table per fold and mean +- std over folds; writes only to a temp dir.
Figures only; no assertions.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from vcap.captioner.data import load_labels
from vcap.captioner.embeddings import caption_word_vectors, write_word_vectors
from vcap.captioner.evaluate import evaluate
from vcap.captioner.metrics import coco_metrics, mlds_bleu1_corpus
from vcap.captioner.config import DecodeConfig, EvalConfig, TrainConfig  # noqa: E402
from vcap.captioner.train import train  # noqa: E402
from vcap.captioner.vocab import tokenize

MSVD = Path(__file__).resolve().parents[2] / "shared" / "data" / "msvd"
METRICS = ["MLDS-BLEU@1", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]

# What the 5-fold protocol trains with unless --set overrides it: sized to fit 5 folds in 30 min on 2 CPU
# cores (~5 s an epoch for 64 videos), and the settings measured best on this data (see --help epilog).
Videos = list[tuple[str, list[str]]]


def fold_of(vid: str, folds: int) -> int:
    return zlib.crc32(vid.encode("utf-8")) % folds


def consensus_caption(captions: list[str]) -> str:
    """The caption with the highest mean of sentence BLEU-1..4 against the video's other captions.

    This is the "closest to consensus" pick: the one most like what most annotators wrote.
    """
    from pycocoevalcap.bleu.bleu import Bleu

    caps = [" ".join(tokenize(c)) for c in captions]
    caps = [c for c in caps if c] or caps
    if len(caps) == 1:
        return caps[0]
    gts = {i: caps[:i] + caps[i + 1:] for i in range(len(caps))}
    res = {i: [caps[i]] for i in range(len(caps))}
    _, per = Bleu(4).compute_score(gts, res, verbose=0)  # per[n][i]: sentence BLEU-(n+1) of caption i
    mean = np.mean(np.array(per), axis=0)
    return caps[int(np.argmax(mean))]


def mean_pooled(feats: Path, videos: Videos) -> np.ndarray:
    """(N, D) L2-normalised mean over frames, so a dot product is the cosine similarity."""
    x = np.stack([np.load(feats / f"{vid}.npy").astype(np.float64).mean(0) for vid, _ in videos])
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbour(feats: Path, train_videos: Videos, test_videos: Videos) -> dict[str, str]:
    """Each held-out video gets the consensus caption of the training video with the most similar features."""
    sim = mean_pooled(feats, test_videos) @ mean_pooled(feats, train_videos).T  # (N_test, N_train)
    return {vid: consensus_caption(train_videos[int(j)][1]) for (vid, _), j in zip(test_videos, sim.argmax(1))}


def blind_caption(train_videos: Videos) -> str:
    """The one training caption that scores the best MLDS BLEU@1 on the training videos when said of every one.

    This is the best a captioner that ignores the video can do, learnt the same way (on the training fold).
    """
    refs = dict(train_videos)
    candidates = sorted({" ".join(tokenize(c)) for caps in refs.values() for c in caps})
    return max(candidates, key=lambda c: mlds_bleu1_corpus(dict.fromkeys(refs, c), refs))


def score(preds: dict[str, str], videos: Videos) -> dict[str, float]:
    refs = {vid: caps for vid, caps in videos}
    return {"MLDS-BLEU@1": mlds_bleu1_corpus(preds, refs), **coco_metrics(preds, refs)}


def parse_overrides(pairs: list[str]) -> dict:
    """--set field=value pairs for TrainConfig, converted to each field's type."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        key = key.replace("-", "_")
        if key not in fields:
            sys.exit(f"--set {pair}: TrainConfig has no field {key!r} (fields: {', '.join(fields)})")
        kind = str(fields[key].type)
        if value.lower() in ("none", ""):
            out[key] = None
        elif kind.startswith("bool"):
            out[key] = value.lower() in ("1", "true", "yes", "on")
        elif kind.startswith("int"):
            out[key] = int(value)
        elif kind.startswith("float"):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def stored_as(feats: Path, videos: Videos, dtype: str, out: Path) -> Path:
    """A copy of the videos' features as vcap extract --dtype would store them (a cast, then read back)."""
    out.mkdir(parents=True)
    for vid, _ in videos:
        np.save(out / f"{vid}.npy", np.load(feats / f"{vid}.npy").astype(dtype))
    return out


def write_labels(path: Path, videos: Videos) -> Path:
    path.write_text(json.dumps([{"id": v, "caption": c} for v, c in videos]), encoding="utf-8")
    return path


def run_split(feats: Path, train_videos: Videos, test_videos: Videos, overrides: dict,
              decodings: list[tuple[int, float]], no_repeat_ngram: int,
              tmp: Path) -> tuple[list[dict], dict, dict, dict]:
    """-> (model metrics per (beam, length_alpha), NN-baseline, blind-baseline metrics, info) for one split."""
    tmp.mkdir(parents=True, exist_ok=True)
    train_json = write_labels(tmp / "train.json", train_videos)
    test_json = write_labels(tmp / "heldout.json", test_videos)
    t0 = time.perf_counter()
    config = TrainConfig(**{"feats": str(feats), "labels": str(train_json), "out": str(tmp / "model"),
                            "progress": False, "cache_features": True, **overrides})
    summary = train(config)
    seconds = time.perf_counter() - t0
    ours = [evaluate(EvalConfig(summary.best_checkpoint, str(feats), str(test_json), out=str(tmp / f"eval{i}"),
                                decode=DecodeConfig(beam=beam, length_alpha=alpha, no_repeat_ngram=no_repeat_ngram),
                                progress=False))
            for i, (beam, alpha) in enumerate(decodings)]
    preds = json.loads((tmp / "eval0" / "predictions.json").read_text())
    nn_scores = score(nearest_neighbour(feats, train_videos, test_videos), test_videos)
    blind = blind_caption(train_videos)
    blind_scores = score({vid: blind for vid, _ in test_videos}, test_videos)
    info = {"blind": blind, "train_s": seconds, "best_epoch": summary.best_epoch,
            "epochs_run": summary.epochs_run, "vocab": summary.vocab_size, "sample": next(iter(preds.items()))}
    return [{k: o[k] for k in METRICS if k in o} for o in ours], nn_scores, blind_scores, info


def fmt_row(name: str, m: dict) -> str:
    return f"{name:<14}" + "".join(f"{m.get(k, float('nan')):>12.4f}" for k in METRICS)


def header() -> str:
    return f"{'':<14}" + "".join(f"{k:>12}" for k in METRICS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feats", type=Path, default=MSVD / "feat")
    ap.add_argument("--labels", type=Path, default=MSVD / "dev_label.json",
                    help="All labelled videos (k-fold) or the training videos (with --heldout).")
    ap.add_argument("--heldout", type=Path, default=None, help="Held-out labels: one split instead of k folds.")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", type=str, default=None, help="Comma-separated fold numbers to run (screening).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig field override, repeatable (e.g. --set hidden=256).")
    ap.add_argument("--caption-vectors", type=int, default=0, metavar="DIM",
                    help="Initialise word embeddings with DIM-d PPMI-SVD vectors learnt from msvd_all_captions.json "
                         "minus every video of --labels/--heldout (0: off).")
    ap.add_argument("--beam", type=str, default="1", help="Beam size; a comma list scores each on the same model.")
    ap.add_argument("--length-alpha", type=str, default="0.7", help="Length normalisation; comma list as --beam.")
    ap.add_argument("--no-repeat-ngram", type=int, default=2)
    ap.add_argument("--feature-dtype", choices=["float32", "float16"], default=None,
                    help="Train and score on a copy of the features stored in this type (vcap extract --dtype).")
    args = ap.parse_args()
    overrides = parse_overrides(args.overrides)  # on top of vcap train's defaults (measured best here)
    decodings = [(int(b), float(a)) for b in args.beam.split(",") for a in args.length_alpha.split(",")]
    names = ["ours"] + [f"b{b} a{a:g}" for b, a in decodings[1:]]

    labels = load_labels(args.labels)
    if args.heldout is not None:
        splits = [("split", labels, load_labels(args.heldout))]
    else:
        wanted = range(args.folds) if args.only_folds is None else [int(f) for f in args.only_folds.split(",")]
        splits = [(f"fold {k}", [v for v in labels if fold_of(v[0], args.folds) != k],
                   [v for v in labels if fold_of(v[0], args.folds) == k]) for k in wanted]
    print(f"config: {overrides or 'TrainConfig defaults'}; ours = beam {decodings[0][0]}, "
          f"length_alpha {decodings[0][1]}, "
          f"no_repeat_ngram {args.no_repeat_ngram}", flush=True)
    runs: list[list[dict]] = [[] for _ in decodings]
    nn_all, blind_all = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vcap-quality-") as tmp:
        if args.feature_dtype is not None:
            every_video = labels + (load_labels(args.heldout) if args.heldout is not None else [])
            args.feats = stored_as(args.feats, every_video, args.feature_dtype, Path(tmp) / "feats")
            print(f"features stored as {args.feature_dtype}", flush=True)
        if args.caption_vectors:
            excluded = {vid.removesuffix(".avi") for vid, _ in labels}
            if args.heldout is not None:
                excluded |= {vid.removesuffix(".avi") for vid, _ in load_labels(args.heldout)}
            corpus = json.loads((MSVD / "msvd_all_captions.json").read_text(encoding="utf-8"))
            captions = [c for vid, item in corpus.items() if vid not in excluded for c in item["caption"]]
            path = Path(tmp) / "caption_vectors.txt"
            write_word_vectors(path, caption_word_vectors(captions, args.caption_vectors))
            overrides = {**overrides, "embeddings": str(path), "embed_dim": args.caption_vectors}
            print(f"caption vectors: {len(captions)} captions of {len(corpus) - len(excluded & set(corpus))} "
                  f"videos (excluding {len(excluded & set(corpus))} evaluated ones)", flush=True)
        for i, (name, train_videos, test_videos) in enumerate(splits):
            ours, nn, blind, info = run_split(args.feats, train_videos, test_videos, overrides, decodings,
                                              args.no_repeat_ngram, Path(tmp) / str(i))
            for run, o in zip(runs, ours):
                run.append(o)
            nn_all.append(nn)
            blind_all.append(blind)
            print(f"\n{name}: {len(train_videos)} train / {len(test_videos)} held-out videos, vocab {info['vocab']}, "
                  f"best epoch {info['best_epoch']}/{info['epochs_run']}, train {info['train_s']:.0f} s; "
                  f"e.g. {info['sample'][0]}: {info['sample'][1]!r}")
            print(header())
            for name_, o in zip(names, ours):
                print(fmt_row(name_, o))
            print(fmt_row("nearest-nb", nn))
            print(fmt_row("blind", blind) + f"   ({info['blind']!r} for every video)", flush=True)
    print(f"\nmean +- std over {len(splits)} split(s); total {time.perf_counter() - t_start:.0f} s")
    print(f"{'':<14}" + "".join(f"{k:>16}" for k in METRICS))
    for name, results in [*zip(names, runs), ("nearest-nb", nn_all), ("blind", blind_all)]:
        cells = []
        for k in METRICS:
            vals = [r[k] for r in results if k in r]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f}+-{sd:.4f}" if vals else "n/a")
        print(f"{name:<14}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
