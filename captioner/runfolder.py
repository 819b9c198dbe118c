"""A training run's folder (OUT): the files it holds, the one routine that changes them, which epoch best.pt
holds (and the TrainResult that reports it), and the rules for taking it over (--overwrite) or continuing it
(--resume), each checked in one place."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
from pathlib import Path

import torch

from vcap.config import field_names, flag
from vcap.errors import VcapError
from vcap.files import ensure_folder, hold_folder, remove_stale_temps, write_together

from vcap import distributed as ddp
from vcap.captioner.checkpoint import read_checkpoint, write_checkpoint
from vcap.captioner.config import ARCHITECTURE, TrainConfig

RUN_FILES = ("best.pt", "last.pt", "history.csv", "history.png", "config.json")


def check_out(config: TrainConfig, out: Path) -> None:
    """A run never replaces another run's results unless told to (--overwrite), nor resumes what is not there."""
    if out.exists() and not out.is_dir():
        raise VcapError(f"{out}: exists and is not a folder")
    if config.resume:
        if not (out / "last.pt").exists():
            raise VcapError(f"{out / 'last.pt'}: nothing to resume (train without --resume first)")
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not config.overwrite:
        raise VcapError(f"{out}: holds a training run already ({', '.join(found)}); continue it with --resume, "
                        f"replace it with --overwrite, or choose another --out")


def take_folder(config: TrainConfig, out: Path, held: contextlib.ExitStack) -> None:
    """Make OUT and hold it for this run (the main rank: it alone writes), checking it again while held
    (another run may have written there since), and remove the temp files a killed run left."""
    ensure_folder(out)  # a folder that cannot take the checkpoints fails now, not after the first epoch
    if ddp.is_main():
        held.enter_context(hold_folder(out))
        check_out(config, out)
        remove_stale_temps(out, RUN_FILES)


def resume_checkpoint(out: str | Path, values: dict, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(OUT/last.pt, the config it records) for --resume: there, a whole checkpoint with a whole training state,
    and the model `values` ask for. What defines the model (ARCHITECTURE) comes from the checkpoint; a value
    that contradicts it is refused, naming the flags, rather than recorded while the old model trains on."""
    last = Path(out) / "last.pt"
    if not last.exists():
        raise VcapError(f"{last}: nothing to resume (train without --resume first)")
    ckpt = read_checkpoint(last, device)
    recorded = ckpt.get("train_config")
    if not isinstance(recorded, dict) or "captioner" not in recorded:
        raise VcapError(f"{last}: written by an older vcap (checkpoint format {ckpt.get('version')}), which "
                        f"cannot be resumed; caption and evaluate still read it; train anew with --overwrite")
    problem = _resume_state_problem(ckpt)
    if problem:
        raise VcapError(f"{last}: cannot be resumed: {problem}; train anew with --overwrite")
    known = field_names(TrainConfig)
    # a run from before captions_per_video trained on independent samples, and resumes so; one from before
    # captioner_options had none
    recorded = {"captions_per_video": 1, "captioner_options": {}, **{k: v for k, v in recorded.items() if k in known}}
    clashes = [f"{_given(k, values[k])} (the run has {recorded[k]})" for k in ARCHITECTURE
               if k in values and values[k] != recorded[k]]
    if clashes:
        raise VcapError(f"{last}: --resume keeps the model it holds; drop {', '.join(clashes)}, "
                        f"or train anew with --overwrite")
    return ckpt, recorded


def _given(field: str, value) -> str:
    """How the command line says `value` of `field`: --captioner-option KEY=VALUE for each captioner option."""
    if field == "captioner_options":
        return " ".join(f"--captioner-option {k}={json.dumps(v)}" for k, v in value.items()) or \
            "no --captioner-option"
    return f"{flag(field)} {value}"


def resumed_config(run: str | Path, **overrides) -> TrainConfig:
    """The config of the training run in folder `run` (from its last.pt) with `overrides` applied, for --resume."""
    if overrides.get("overwrite"):
        raise VcapError("--resume continues the run in OUT and --overwrite replaces it: choose one")
    _, recorded = resume_checkpoint(run, overrides)
    return TrainConfig(**{**recorded, **overrides, "resume": True, "overwrite": False})


def _resume_state_problem(ckpt: dict) -> str | None:
    """How last.pt's training state (beyond the model, which read_checkpoint checks) is not whole, or None."""
    epoch, step, history, rng = ckpt.get("epoch"), ckpt.get("step"), ckpt.get("history"), ckpt.get("rng")
    if not isinstance(ckpt.get("optimizer"), dict) or not isinstance(rng, dict) \
            or not isinstance(rng.get("torch"), torch.Tensor):
        return "its optimizer or random-number state is missing"
    if not isinstance(epoch, int) or epoch < 1 or not isinstance(step, int) or step < 0:
        return f"its epoch {epoch!r} or step {step!r} is not a count"
    if not isinstance(history, list) or [h.get("epoch") if isinstance(h, dict) else None for h in history] \
            != list(range(1, epoch + 1)):
        return f"its history does not list epochs 1 to {epoch}"
    return None


def save_epoch(out: Path, checkpoint: dict, resume_state: dict, history: list[dict], resolved: dict,
               best: bool, first: bool, new_run: bool) -> None:
    """One change of OUT after an epoch: last.pt (`checkpoint` + `resume_state`), the history, best.pt when this
    epoch is the best, config.json beside the run's first checkpoint. A run being replaced (--overwrite) stays
    whole until the new run's first epoch is written: then its files this epoch does not write go."""
    writers = {"last.pt": lambda p: write_checkpoint(p, {**checkpoint, **resume_state}),
               "history.csv": lambda p: write_history_csv(p, history),
               "history.png": lambda p: write_history_png(p, history)}
    if best:
        writers["best.pt"] = lambda p: write_checkpoint(p, checkpoint)
    if first:
        writers["config.json"] = lambda p: p.write_text(json.dumps(resolved, indent=1) + "\n")
    write_together(out, writers, remove=RUN_FILES if new_run else ())


def write_history_csv(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def write_history_png(path: Path, history: list[dict]) -> None:
    """Training loss and validation BLEU@1 per epoch."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [h["val_bleu1"] for h in history], color="tab:green")
    ax2.set(xlabel="epoch", ylabel="BLEU@1", title="Validation BLEU@1 (MLDS, greedy)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


# best.pt is chosen on held-out videos only when there are enough of them, and never before an epoch that
# has had the chance to learn: on a few videos the first epoch's loss is lowest while it says "a a" for all.
MIN_CHOOSING_VIDEOS = 5
MIN_BEST_EPOCH = 3


def chooses_best(val_videos: int) -> bool:
    return val_videos >= MIN_CHOOSING_VIDEOS


def best_rule(config: TrainConfig, val_videos: int) -> str:
    """How best.pt was chosen, in the user's words."""
    if not val_videos:
        return "the last epoch: no videos are held out (--val-fraction 0)"
    if not chooses_best(val_videos):
        held = f"{val_videos} held-out video" + ("s are" if val_videos > 1 else " is")
        return f"the last epoch: {held} too few to choose by (fewer than {MIN_CHOOSING_VIDEOS})"
    return ("lowest validation loss" if config.select_on == "loss" else "best validation BLEU@1") + \
        f" from epoch {MIN_BEST_EPOCH} on"


def _selection_score(h: dict, select_on: str) -> float:
    """Higher is better: validation BLEU@1, or minus the validation loss."""
    return h["val_bleu1"] if select_on == "bleu1" else -h["val_loss"]


def best_epoch(history: list[dict], select_on: str = "bleu1", chooses: bool = True, epochs: int = 0) -> int:
    """The epoch best.pt holds: the first reaching the best selection score from MIN_BEST_EPOCH on (or from
    the run's last epoch, if shorter); the last one while none may be chosen yet, or when nothing chooses."""
    eligible = [h for h in history if h["epoch"] >= min(MIN_BEST_EPOCH, epochs or MIN_BEST_EPOCH)]
    if not chooses or not eligible:
        return history[-1]["epoch"]
    best = max(_selection_score(h, select_on) for h in eligible)
    return next(h["epoch"] for h in eligible if _selection_score(h, select_on) == best)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run made: its checkpoints, the epoch best.pt holds and why, and what it trained on."""

    best_checkpoint: str
    last_checkpoint: str
    best_epoch: int  # the epoch best.pt holds
    best_val_bleu1: float  # its scores on the held-out videos (NaN without any)
    best_val_loss: float
    select_on: str
    best_rule: str  # how best.pt was chosen, in words
    epochs_run: int  # counting those of the run resumed
    steps: int
    stopped_early: bool
    train_videos: int
    val_videos: list[str]  # the ids held out for validation
    vocab_size: int
    history: list[dict]  # a row per epoch, as in history.csv


def run_result(config: TrainConfig, out: Path, history: list[dict], steps: int, train_videos: int,
               val_videos: list[str], vocab_size: int) -> TrainResult:
    """A finished run's TrainResult: its history says which epoch best.pt holds."""
    chooses = chooses_best(len(val_videos))
    chosen = best_epoch(history, config.select_on, chooses, config.epochs) if history else 0
    best_row = next((h for h in history if h["epoch"] == chosen), {})
    return TrainResult(best_checkpoint=str(out / "best.pt"), last_checkpoint=str(out / "last.pt"), best_epoch=chosen,
                       best_val_bleu1=best_row.get("val_bleu1", -1.0), best_val_loss=best_row.get("val_loss", math.inf),
                       select_on=config.select_on, best_rule=best_rule(config, len(val_videos)),
                       epochs_run=len(history), steps=steps, stopped_early=len(history) < config.epochs,
                       train_videos=train_videos, val_videos=val_videos, vocab_size=vocab_size, history=history)
