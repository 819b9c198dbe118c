"""`vcap run`: extract (resumable) -> train -> evaluate, everything under one output folder."""
from __future__ import annotations

from pathlib import Path

from vcap.captioner import distributed as ddp
from vcap.captioner.config import EvalConfig
from vcap.captioner.data import load_labels
from vcap.captioner.evaluate import evaluate
from vcap.captioner.train import train
from vcap.extract.extractor import ExtractSummary, extract_folder
from vcap.pipeline.config import RunConfig


def run_all(config: RunConfig) -> dict:
    """OUT/feats (features + manifest), OUT/model (best.pt, last.pt, history), OUT/eval (predictions and
    metrics on videos the model was not trained on: --val-labels, or the share of LABELS held out).

    Only the videos LABELS names are extracted unless `all_videos`. Under torchrun every stage is shared
    by the ranks; rank 0 alone evaluates (the others get metrics None; {} when no video is held out)."""
    out = Path(config.out)
    wanted = None if config.all_videos else {vid for vid, _ in load_labels(config.labels)}
    if wanted is not None and config.train.val_labels:
        wanted |= {vid for vid, _ in load_labels(config.train.val_labels)}
    extracted: ExtractSummary = extract_folder(config.videos, out / "feats", config.extract, only=wanted)
    ddp.barrier()  # under torchrun (joined by extraction): every rank's features are on disk before training
    trained = train(config.train)
    if not ddp.is_main():
        return {"extract": extracted, "train": trained, "metrics": None, "scored_on": None}
    if config.train.val_labels:
        labels, only = config.train.val_labels, None
        scored_on = f"the videos of {config.train.val_labels} (they also chose best.pt)"
    elif not trained["val_videos"]:  # --val-fraction 0: every video trained the model; none is left to score it
        return {"extract": extracted, "train": trained, "metrics": {},
                "scored_on": "no held-out videos (--val-fraction 0): not scored"}
    else:
        labels, only = config.labels, tuple(trained["val_videos"])
        scored_on = (f"{len(only)} videos of {config.labels} held out of training "
                     f"(--val-fraction {config.train.val_fraction}; they also chose best.pt)")
    metrics = evaluate(EvalConfig(model=trained["best_checkpoint"], feats=str(out / "feats"), labels=labels,
                                  out=str(out / "eval"), decode=config.decode, device=config.train.device,
                                  only=only, progress=config.train.progress))
    return {"extract": extracted, "train": trained, "metrics": metrics, "scored_on": scored_on}
