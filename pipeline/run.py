"""`vcap run`: extract (resumable) -> train -> evaluate, everything under one output folder."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from vcap import distributed as ddp
from vcap.captioner.config import EvalConfig
from vcap.captioner.datasets import has_split, read_labels, split_counts
from vcap.captioner.evaluate import evaluate
from vcap.captioner.train import TrainResult, train
from vcap.extract.folder import ExtractSummary
from vcap.pipeline.config import RunConfig
from vcap.pipeline.datasets import extract_labelled


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `vcap run` did: each stage's result, and what the scores were computed on."""

    extract: ExtractSummary
    train: TrainResult
    metrics: dict | None  # evaluate's; None on a torchrun rank other than 0, {} when no video was held out
    scored_on: str | None  # the videos the metrics are of, in words
    splits: dict  # split -> (videos, samples, captions) of LABELS
    missing: str | None  # the videos LABELS names that VIDEOS lacks, in words


def run_all(config: RunConfig) -> RunResult:
    """OUT/feats (features + manifest), OUT/model (best.pt, last.pt, history), OUT/eval (predictions and
    metrics on videos the model was not trained on: LABELS' test split where it has one, else --val-labels,
    else the share of LABELS held out).

    Only the videos LABELS names are extracted unless `all_videos`; a timed dataset's videos give one feature
    file per span. Under torchrun every stage is shared by the ranks; rank 0 alone evaluates (the others get
    metrics None; {} when no video is held out)."""
    out, train_config = Path(config.out), config.train
    samples = read_labels(config.labels, train_config.labels_format)
    extra = read_labels(train_config.val_labels, train_config.labels_format) if train_config.val_labels else []
    extracted, resolved = extract_labelled(config.videos, out / "feats", config.extract, samples + extra,
                                           train_config.video_pattern, config.all_videos)
    ddp.barrier()  # under torchrun (joined by extraction): every rank's features are on disk before training
    trained = train(train_config)
    result = RunResult(extracted, trained, None, None, split_counts(samples), resolved.report(config.videos))
    if not ddp.is_main():
        return result
    split, labels, only = None, config.labels, None
    if config.test_split and has_split(samples, config.test_split):
        split = config.test_split
        scored_on = f"the {split} split of {config.labels} (held out of training and of choosing best.pt)"
    elif train_config.val_labels:
        labels, split = train_config.val_labels, train_config.val_split
        scored_on = f"the videos of {train_config.val_labels} (they also chose best.pt)"
    elif not trained.val_videos:  # --val-fraction 0: every video trained the model; none is left to score it
        return dataclasses.replace(result, metrics={}, scored_on="no held-out videos (--val-fraction 0): not scored")
    else:
        only = tuple(trained.val_videos)
        held = f"its {train_config.val_split} split" if has_split(samples, train_config.val_split) else \
            f"--val-fraction {train_config.val_fraction}"
        scored_on = f"{len(only)} videos of {config.labels} held out of training ({held}; they also chose best.pt)"
    metrics = evaluate(EvalConfig(model=trained.best_checkpoint, feats=str(out / "feats"), labels=labels,
                                  out=str(out / "eval"), decode=config.decode, device=train_config.device,
                                  only=only, labels_format=train_config.labels_format, split=split,
                                  video_pattern=train_config.video_pattern, progress=train_config.progress))
    return dataclasses.replace(result, metrics=metrics, scored_on=scored_on)
