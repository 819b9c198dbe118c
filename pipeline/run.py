"""`vcap run`: extract (resumable) -> train -> evaluate, everything under one output folder."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from vcap.captioner import distributed as ddp
from vcap.captioner.evaluate import evaluate
from vcap.captioner.train import TrainConfig, train
from vcap.extract.extractor import ExtractConfig, ExtractSummary, extract_folder


@dataclasses.dataclass(frozen=True)
class RunConfig:
    videos: str
    labels: str
    out: str
    extract: ExtractConfig
    train: dict  # TrainConfig fields other than feats/labels/out
    val_labels: str | None = None
    beam: int = 1


def run_all(config: RunConfig) -> dict:
    """OUT/feats (features + manifest), OUT/model (best.pt, last.pt, history.csv/png), OUT/eval
    (predictions and metrics on the validation labels, or the training labels when there are none).

    Under torchrun every stage is shared by the ranks; rank 0 alone evaluates (the others get metrics None)."""
    out = Path(config.out)
    extracted: ExtractSummary = extract_folder(config.videos, out / "feats", config.extract)
    ddp.barrier()  # under torchrun (joined by extraction): every rank's features are on disk before training
    train_config = TrainConfig(feats=str(out / "feats"), labels=config.labels, out=str(out / "model"),
                               val_labels=config.val_labels, **config.train)
    trained = train(train_config)
    if not ddp.is_main():
        return {"extract": extracted, "train": trained, "metrics": None}
    metrics = evaluate(trained["best_checkpoint"], out / "feats", config.val_labels or config.labels,
                       out=out / "eval", beam=config.beam, device=train_config.device)
    return {"extract": extracted, "train": trained, "metrics": metrics}

