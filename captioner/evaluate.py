"""Caption held-out videos with a trained model; write predictions and score them."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tqdm import tqdm

from vcap.device import resolve_device

from vcap.files import ensure_folder, hold_folder, write_together

from .checkpoint import load_model
from .config import EvalConfig
from .data import FeatureBank, attach_features, load_labels
from .decode import caption_features
from .metrics import coco_metrics, degenerate, mlds_bleu1_corpus


def evaluate(config: EvalConfig) -> dict:
    """Write OUT/predictions.txt ("video_id,caption", the MLDS format), predictions.json and metrics.json.

    OUT defaults to MODEL_FOLDER/eval-<labels file stem>, so scoring other labels never overwrites these.
    Returns the metrics: MLDS BLEU@1 plus pycocoevalcap's BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr.
    """
    dev = resolve_device(config.device)
    model, vocab, info = load_model(config.model, dev)
    labels = load_labels(config.labels)
    if config.only is not None:
        only = set(config.only)
        labels = [(vid, caps) for vid, caps in labels if vid in only]
    videos, skipped, _ = attach_features(labels, config.feats, config.labels, dim=info["feature_dim"])
    if skipped:
        print(f"vcap: skipped {skipped} of {skipped + len(videos)} videos without features in {config.feats}",
              file=sys.stderr)
    default_out = Path(config.model).parent / f"eval-{Path(config.labels).stem}"
    out = ensure_folder(Path(config.out) if config.out is not None else default_out)  # fails now, not after the work
    bank = FeatureBank([p for _, _, p in videos])
    preds: dict[str, str] = {}
    batch = config.videos_per_batch
    for start in tqdm(range(0, len(videos), batch), desc="captioning", leave=False,
                      disable=None if config.progress else True, file=sys.stderr):
        idx = list(range(start, min(start + batch, len(videos))))
        caps = caption_features(model, vocab, bank.batch(idx).to(dev), config.decode, info["max_words"])
        preds.update({videos[i][0]: c for i, c in zip(idx, caps)})
    refs = {vid: caps for vid, caps, _ in videos}
    if why := degenerate(list(preds.values())):
        print(f"vcap: warning: {config.model}: its captions of these {len(preds)} videos are degenerate ({why}); "
              f"train longer or on more videos", file=sys.stderr)
    metrics: dict = {"videos": len(videos), "skipped": skipped, "beam": config.decode.beam,
                     "MLDS-BLEU@1": mlds_bleu1_corpus(preds, refs)}
    if config.coco:
        metrics.update(coco_metrics(preds, refs))

    written = {**metrics, "model": str(config.model), "labels": str(config.labels),
               "decode": dataclasses.asdict(config.decode)}
    with hold_folder(out):  # one writer at a time; the three files change together
        write_together(out, {
            "predictions.txt": lambda p: p.write_text("".join(f"{vid},{cap}\n" for vid, cap in preds.items()),
                                                      encoding="utf-8"),
            "predictions.json": lambda p: p.write_text(json.dumps(preds, indent=1), encoding="utf-8"),
            "metrics.json": lambda p: p.write_text(json.dumps(written, indent=1), encoding="utf-8")})
    metrics["out"] = str(out)
    return metrics
