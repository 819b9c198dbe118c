"""Caption held-out videos with a trained model; write predictions and score them."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from vcap.device import resolve_device

from vcap.files import atomic_write, ensure_folder

from .checkpoint import load_model
from .data import FeatureBank, attach_features, load_labels
from .decode import caption_features
from .metrics import coco_metrics, mlds_bleu1_corpus


def evaluate(model_path: str | Path, feats: str | Path, labels: str | Path, out: str | Path | None = None,
             beam: int = 1, batch_size: int = 64, device: str = "auto", max_len: int = 21,
             no_repeat_ngram: int = 2, length_alpha: float = 0.7, coco: bool = True,
             progress: bool = True) -> dict:
    """Write OUT/predictions.txt ("video_id,caption", the MLDS format), predictions.json and metrics.json.

    `out` defaults to MODEL_FOLDER/eval-<labels file stem>, so scoring other labels never overwrites these.
    Returns the metrics: MLDS BLEU@1 plus pycocoevalcap's BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr.
    """
    dev = resolve_device(device)
    model, vocab, info = load_model(model_path, dev)
    videos, skipped, _ = attach_features(load_labels(labels), feats, labels, dim=info["feature_dim"])
    if skipped:
        print(f"vcap: skipped {skipped} of {skipped + len(videos)} videos without features in {feats}",
              file=sys.stderr)
    out = ensure_folder(out if out is not None else Path(model_path).parent / f"eval-{Path(labels).stem}")
    bank = FeatureBank([p for _, _, p in videos])
    preds: dict[str, str] = {}
    for start in tqdm(range(0, len(videos), batch_size), desc="captioning", leave=False, disable=not progress,
                      file=sys.stderr):
        idx = list(range(start, min(start + batch_size, len(videos))))
        caps = caption_features(model, vocab, bank.batch(idx).to(dev), beam=beam, max_len=max_len,
                                no_repeat_ngram=no_repeat_ngram, length_alpha=length_alpha)
        preds.update({videos[i][0]: c for i, c in zip(idx, caps)})
    refs = {vid: caps for vid, caps, _ in videos}
    metrics: dict = {"videos": len(videos), "skipped": skipped, "beam": beam,
                     "MLDS-BLEU@1": mlds_bleu1_corpus(preds, refs)}
    if coco:
        metrics.update(coco_metrics(preds, refs))

    with atomic_write(out / "predictions.txt") as tmp:
        tmp.write_text("".join(f"{vid},{cap}\n" for vid, cap in preds.items()), encoding="utf-8")
    with atomic_write(out / "predictions.json") as tmp:
        tmp.write_text(json.dumps(preds, indent=1), encoding="utf-8")
    with atomic_write(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({**metrics, "model": str(model_path), "labels": str(labels)}, indent=1),
                       encoding="utf-8")
    metrics["out"] = str(out)
    return metrics
