"""Caption held-out videos with a trained model; write predictions and score them."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tqdm import tqdm

from vcap.device import resolve_device

from vcap.files import ensure_folder, hold_folder, write_together

from vcap.captioner.checkpoint import load_model
from vcap.captioner.config import EvalConfig
from vcap.captioner.data import FeatureBank, attach_features, load_labels
from vcap.captioner.decode import caption_in_batches
from vcap.captioner.metrics import coco_metrics, degenerate, mlds_bleu1_corpus


def evaluate(config: EvalConfig) -> dict:
    """Write OUT/predictions.txt ("video_id,caption", the MLDS format), predictions.json, coco_results.json
    ([{"image_id", "caption"}], the COCO results format) and metrics.json.

    OUT defaults to MODEL_FOLDER/eval-<labels file stem>, so scoring other labels never overwrites these.
    Returns the metrics: MLDS BLEU@1 plus pycocoevalcap's BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr.
    """
    dev = resolve_device(config.device)
    model, vocab, info = load_model(config.model, dev)
    labels = load_labels(config.labels, config.labels_format, config.split, config.video_pattern)
    if config.only is not None:
        only = set(config.only)
        labels = [(vid, caps) for vid, caps in labels if vid in only]
    videos, skipped, _ = attach_features(labels, config.feats, config.labels, dim=info["feature_dim"])
    if skipped:
        print(f"vcap: skipped {skipped} of {skipped + len(videos)} videos without features in {config.feats}",
              file=sys.stderr)
    default_out = Path(info["path"]).parent / f"eval-{Path(config.labels).stem}"
    out = ensure_folder(Path(config.out) if config.out is not None else default_out)  # fails now, not after the work
    bank = FeatureBank([p for _, _, p in videos])
    preds: dict[str, str] = {}
    batches = caption_in_batches(model, vocab, bank.batch, range(len(videos)), config.videos_per_batch,
                                 config.decode, info["max_words"], dev)
    for idx, caps in tqdm(batches, desc="captioning", leave=False, total=-(-len(videos) // config.videos_per_batch),
                          disable=None if config.progress else True, file=sys.stderr):
        preds.update({videos[i][0]: c for i, c in zip(idx, caps)})
    refs = {vid: caps for vid, caps, _ in videos}
    if why := degenerate(list(preds.values())):
        print(f"vcap: warning: {config.model}: its captions of these {len(preds)} videos are degenerate ({why}); "
              f"train longer or on more videos", file=sys.stderr)
    metrics: dict = {"videos": len(videos), "skipped": skipped, "split": config.split, "beam": config.decode.beam,
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
            "coco_results.json": lambda p: p.write_text(  # what pycocoevalcap and other tools read
                json.dumps([{"image_id": vid, "caption": cap} for vid, cap in preds.items()], indent=1),
                encoding="utf-8"),
            "metrics.json": lambda p: p.write_text(json.dumps(written, indent=1), encoding="utf-8")})
    metrics["out"], metrics["scored"] = str(out), list(preds)
    return metrics
