"""Training loop: scheduled sampling, per-epoch validation, best/last checkpoints, resume, early stopping."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vcap.config import field_names
from vcap.device import autocast, compile_quietly, join_torchrun, resolve_device, resolve_precision
from vcap.errors import Interrupted, VcapError
from vcap.files import ensure_folder, hold_folder, remove_stale_temps, signals_deferred, write_together

from . import distributed as ddp
from .config import ARCHITECTURE, DecodeConfig, TrainConfig, teacher_schedule_k
from .checkpoint import make_checkpoint, model_from_checkpoint, read_checkpoint, write_checkpoint
from .data import (CaptionDataset, FeatureBank, attach_features, batch_loader, labels_have_split, load_feature_config,
                   load_labels, split_videos)
from .decode import caption_in_batches
from .embeddings import load_word_vectors
from .metrics import mlds_bleu1_corpus
from .models import Captioner, build_model
from .vocab import PAD, SPECIALS, Vocab


def teacher_schedule(spec: str) -> Callable[[int], float]:
    """Probability of feeding the ground-truth word at training step `step`.

    inverse-sigmoid:K is p = K / (K + exp(step / K)) (Bengio et al. 2015): ~1 early, decaying as the
    model becomes able to continue from its own predictions.
    """
    k = teacher_schedule_k(spec)
    if k is None:
        return (lambda step: 1.0) if spec == "always" else (lambda step: 0.0)
    return lambda step: k / (k + math.exp(min(step / k, 700.0)))


def caption_loss(model: Captioner, feats: torch.Tensor, caps: torch.Tensor, teacher_prob: float,
                 rows: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the non-<PAD> target words (feats, caps, rows as `CaptionDataset.collate` gives)."""
    logits = model(feats, caps, teacher_prob, rows)  # (B, L-1, V)
    return nn.functional.cross_entropy(logits.float().flatten(0, 1), caps[:, 1:].flatten(), ignore_index=PAD,
                                       label_smoothing=label_smoothing)


def epoch_batches(dataset: CaptionDataset, batch_size: int, captions_per_video: int,
                  seed: int) -> list[list[int]]:
    """One epoch's batches of sample indices, every sample once: each video's captions in a seeded random
    order, cut into groups of `captions_per_video`, the groups shuffled and then cut into batches.

    A batch of B samples then holds about B / captions_per_video videos, each encoded once for its captions
    (the encoder was over a third of a step's work); 1 gives batches of independent samples."""
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for samples in dataset.by_video():
        order = [samples[i] for i in torch.randperm(len(samples), generator=generator).tolist()]
        groups += [order[i : i + captions_per_video] for i in range(0, len(order), captions_per_video)]
    flat = [i for g in torch.randperm(len(groups), generator=generator).tolist() for i in groups[g]]
    return [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]


def train_epoch(model: Captioner, loader: Iterable, opt: torch.optim.Optimizer, device: torch.device,
                precision: str, scaler: torch.amp.GradScaler, schedule: Callable[[int], float],
                step: int, grad_clip: float, desc: str = "", progress: bool = True,
                label_smoothing: float = 0.0) -> tuple[float, int]:
    """One pass over `loader`; returns (mean training loss, global step after the epoch)."""
    model.train()
    total, n = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, file=sys.stderr,
               disable=None if progress and ddp.is_main() else True)  # None: off when stderr is no terminal
    for batch in bar:
        feats, caps, rows = (x.to(device, non_blocking=True) for x in batch)
        with autocast(device, precision):
            loss = caption_loss(model, feats, caps, schedule(step), rows, label_smoothing)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
        step += 1
        total += loss.item() * len(caps)
        n += len(caps)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return ddp.weighted_mean(total, n), step


@torch.no_grad()
@torch.compiler.set_stance("force_eager")  # a compiled training step would recompile for every decoding shape
def validate(model: Captioner, vocab: Vocab, videos: list, bank: FeatureBank, dataset: CaptionDataset,
             device: torch.device, precision: str, batch_size: int, max_words: int) -> tuple[float, float]:
    """(teacher-forced loss, MLDS BLEU@1 of greedy captions) on held-out videos, each rank taking a part."""
    model.eval()
    total, n = 0.0, 0
    pairs = ddp.my_part(list(range(len(dataset))))
    for start in range(0, len(pairs), batch_size):
        batch = dataset.collate([dataset[i] for i in pairs[start : start + batch_size]])
        feats, caps, rows = (x.to(device) for x in batch)
        with autocast(device, precision):
            loss = caption_loss(model, feats, caps, 1.0, rows)
        total += loss.item() * len(caps)
        n += len(caps)
    preds = {}
    mine = ddp.my_part(list(range(len(videos))))
    for idx, caps in caption_in_batches(model, vocab, bank.batch, mine, batch_size, DecodeConfig(), max_words, device):
        preds.update({videos[i][0]: c for i, c in zip(idx, caps)})
    preds = ddp.merged(preds)
    return ddp.weighted_mean(total, n), mlds_bleu1_corpus(preds, {vid: refs for vid, refs, _ in videos})


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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _videos(labels_path: str, feats: str, role: str, config: TrainConfig,
            split: str) -> tuple[list, tuple[int, int]]:
    labels = load_labels(labels_path, config.labels_format, split, config.video_pattern)
    videos, skipped, shape = attach_features(labels, feats, labels_path)
    if skipped:
        print(f"vcap: {role}: skipped {skipped} of {skipped + len(videos)} videos without features in {feats}",
              file=sys.stderr)
    return videos, shape


def _train_and_val_videos(config: TrainConfig) -> tuple[list, list, tuple[int, int]]:
    """Training videos (LABELS' --split) and validation videos: --val-labels, else LABELS' --val-split where
    its layout has one (MSR-VTT's validate), else a seeded --val-fraction share of the training videos."""
    videos, shape = _videos(config.labels, config.feats, "training labels", config, config.split)
    val_source = config.val_labels or (config.labels if labels_have_split(config.labels, config.labels_format,
                                                                          config.val_split) else None)
    if val_source is None:
        return (*split_videos(videos, config.val_fraction, config.seed), shape)
    val_videos, val_shape = _videos(val_source, config.feats, "validation labels", config, config.val_split)
    if val_shape != shape:
        raise VcapError(f"{val_source}: feature shape {val_shape} differs from training {shape}")
    return videos, val_videos, shape


RUN_FILES = ("best.pt", "last.pt", "history.csv", "history.png", "config.json")


def resumed_config(run: str | Path, **overrides) -> TrainConfig:
    """The config of the training run in folder `run` (from its last.pt) with `overrides` applied, for --resume.

    What defines the model (ARCHITECTURE) comes from the checkpoint; an override that contradicts it is
    refused, naming the flags, rather than recorded while the old architecture trains on."""
    if overrides.get("overwrite"):
        raise VcapError("--resume continues the run in OUT and --overwrite replaces it: choose one")
    last = Path(run) / "last.pt"
    if not last.exists():
        raise VcapError(f"{last}: nothing to resume (train without --resume first)")
    ckpt = read_checkpoint(last)
    recorded = _recorded_config(ckpt, last)
    clashes = _architecture_clashes(overrides, recorded)
    if clashes:
        raise VcapError(f"{last}: --resume keeps the model it holds; drop {', '.join(clashes)}, "
                        f"or train anew with --overwrite")
    return TrainConfig(**{**recorded, **overrides, "resume": True, "overwrite": False})


def _architecture_clashes(values: dict, recorded: dict) -> list[str]:
    """The settings among `values` that define the model and differ from the run's: '--hidden 64 (the run has 32)'."""
    from vcap.config import flag

    return [f"{flag(k)} {values[k]} (the run has {recorded[k]})" for k in ARCHITECTURE
            if k in values and values[k] != recorded[k]]


def _recorded_config(ckpt: dict, path: Path) -> dict:
    recorded = ckpt.get("train_config")
    if not isinstance(recorded, dict) or "captioner" not in recorded:
        raise VcapError(f"{path}: written by an older vcap (checkpoint format {ckpt.get('version')}), which "
                        f"cannot be resumed; caption and evaluate still read it; train anew with --overwrite")
    problem = _resume_state_problem(ckpt)
    if problem:
        raise VcapError(f"{path}: cannot be resumed: {problem}; train anew with --overwrite")
    known = field_names(TrainConfig)
    # a run from before captions_per_video trained on independent samples, and resumes so
    return {"captions_per_video": 1, **{k: v for k, v in recorded.items() if k in known}}


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


def _check_out(config: TrainConfig, out: Path) -> None:
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


def train(config: TrainConfig) -> dict:
    """Train a captioner on cached features; returns a summary with the best score and checkpoint paths.

    Writes OUT/best.pt, last.pt (with optimizer, loss scaler and RNG state), history.csv/png and
    config.json (the resolved config) after every epoch."""
    out = Path(config.out)
    _check_out(config, out)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    distributed = join_torchrun(device)  # under torchrun: one rank of a data-parallel run
    with contextlib.ExitStack() as held:
        return _train(config, out, device, precision, distributed, held)


def _train(config: TrainConfig, out: Path, device: torch.device, precision: str, distributed: bool,
           held: contextlib.ExitStack) -> dict:
    schedule = teacher_schedule(config.teacher_forcing)
    torch.manual_seed(config.seed)

    train_videos, val_videos, shape = _train_and_val_videos(config)
    if not train_videos or not val_videos:
        raise VcapError(f"{config.labels}: need at least 2 videos with features to hold some out for validation")

    ensure_folder(out)  # a folder that cannot take the checkpoints fails now, not after the first epoch
    if ddp.is_main():  # one run at a time in OUT
        held.enter_context(hold_folder(out))
        _check_out(config, out)  # again, holding it: another run may have written there meanwhile
        remove_stale_temps(out, RUN_FILES)
    last_path, best_path = out / "last.pt", out / "best.pt"
    history: list[dict] = []
    step, start_epoch = 0, 0
    vocab = Vocab.build((c for _, caps, _ in train_videos for c in caps), config.min_count)
    ckpt = None
    if config.resume:
        ckpt = read_checkpoint(last_path, device)
        recorded = _recorded_config(ckpt, last_path)
        clashes = _architecture_clashes(dataclasses.asdict(config), recorded)
        if clashes:
            raise VcapError(f"{last_path}: holds a model with other settings than {', '.join(clashes)}; resume "
                            f"with its own settings (vcap train --resume takes them from the checkpoint)")
        if ckpt["feature_dim"] != shape[1]:
            raise VcapError(f"{last_path}: was trained on {ckpt['feature_dim']}-d features, {config.feats} has "
                            f"{shape[1]}-d ones")
        model, saved_vocab = model_from_checkpoint(ckpt, device)
        if saved_vocab.words != vocab.words:
            raise VcapError(f"{config.labels}: its captions give another vocabulary ({len(vocab)} words) than the "
                            f"run in {out} was trained with ({len(saved_vocab)}); resume on the same labels")
        history, step, start_epoch = ckpt["history"], ckpt["step"], ckpt["epoch"]
    else:
        model = build_model(config.captioner, feature_dim=shape[1], vocab_size=len(vocab), hidden=config.hidden,
                            embed_dim=config.embed_dim, dropout=config.dropout, frame_stride=config.frame_stride)
        if config.embeddings:
            with torch.no_grad():
                found = load_word_vectors(config.embeddings, vocab, model.embed.weight)
            print(f"vcap: {found} of {len(vocab) - len(SPECIALS)} words initialised from {config.embeddings}",
                  file=sys.stderr)
        model.to(device)

    if config.compile:  # fuses each decoder step's small ops; the first batch waits for the compiler
        model.advance = compile_quietly(model.advance)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        for group in opt.param_groups:  # the config's (possibly changed) rates, not the saved ones
            group["lr"], group["weight_decay"] = config.lr, config.weight_decay
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
    # Gradients are averaged across ranks by the wrapper; `model` itself is what gets saved and decoded.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed else model

    bank = FeatureBank([p for _, _, p in train_videos], cache=config.cache_features)
    val_bank = FeatureBank([p for _, _, p in val_videos], cache=config.cache_features)
    dataset = CaptionDataset(train_videos, vocab, bank, config.max_words)
    val_dataset = CaptionDataset(val_videos, vocab, val_bank, config.max_words)
    feature_config = load_feature_config(config.feats)
    train_config = dataclasses.asdict(config)
    val_ids = [vid for vid, _, _ in val_videos]
    resolved = {**train_config, "device": str(device), "precision": precision,
                "train_videos": len(train_videos), "val_videos": val_ids}

    best = max((_selection_score(h, config.select_on) for h in history), default=-math.inf)
    resumable = config.resume  # OUT/last.pt is this run's: --resume continues it
    try:
        for epoch in range(start_epoch, config.epochs):
            if config.patience and history and epoch - _best_epoch(history, config.select_on) >= config.patience:
                break
            t0 = time.perf_counter()
            # Every rank walks the same global batches and takes its part of each (a batch too small to give
            # every rank a sample is skipped by all), so K ranks follow one process's path.
            batches = epoch_batches(dataset, config.batch_size, config.captions_per_video, config.seed * 100003 + epoch)
            batches = [ddp.my_part(b) for b in batches if len(b) >= ddp.world_size()]
            loader = batch_loader(dataset, batches, pin_memory=device.type == "cuda")
            train_loss, step = train_epoch(net, loader, opt, device, precision, scaler, schedule, step,
                                           config.grad_clip,
                                           desc=f"epoch {epoch + 1}/{config.epochs}", progress=config.progress,
                                           label_smoothing=config.label_smoothing)
            val_loss, val_bleu1 = validate(model, vocab, val_videos, val_bank, val_dataset, device, precision,
                                           config.batch_size, config.max_words)
            if not math.isfinite(train_loss + val_loss):  # stop before saving: last.pt keeps the last good epoch
                kept = f"{last_path} keeps epoch {epoch}" if epoch else "no checkpoint was written"
                raise VcapError(f"epoch {epoch + 1}: the loss is no longer a number (training {train_loss:.4g}, "
                                f"validation {val_loss:.4g}); {kept}; try a lower --lr")
            history.append({"epoch": epoch + 1, "step": step, "train_loss": round(train_loss, 6),
                            "val_loss": round(val_loss, 6), "val_bleu1": round(val_bleu1, 6),
                            "teacher_prob": round(schedule(step), 6), "seconds": round(time.perf_counter() - t0, 3)})
            improved = _selection_score(history[-1], config.select_on) > best
            best = max(best, _selection_score(history[-1], config.select_on))
            if not ddp.is_main():
                continue  # the history is the same on every rank; one writes it
            print(f"vcap: epoch {epoch + 1}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                  f"val BLEU@1 {val_bleu1:.4f}", file=sys.stderr)
            metrics = {k: history[-1][k] for k in ("train_loss", "val_loss", "val_bleu1")}
            base = make_checkpoint(model, vocab, feature_config, shape[0], train_config, epoch=epoch + 1,
                                   metrics=metrics)
            resume_state = {"optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "step": step,
                            "history": history, "rng": _rng_state()}
            writers = {"last.pt": lambda p: write_checkpoint(p, {**base, **resume_state}),
                       "history.csv": lambda p: write_history_csv(p, history),
                       "history.png": lambda p: write_history_png(p, history)}
            if improved:
                writers["best.pt"] = lambda p: write_checkpoint(p, base)
            if epoch == start_epoch:  # once, beside the run's first checkpoint: it does not change between epochs
                writers["config.json"] = lambda p: p.write_text(json.dumps(resolved, indent=1) + "\n")
            # One change of the folder: a run replaced (--overwrite) is whole until this run's first epoch is
            with signals_deferred():  # a Ctrl-C held by the write arrives after `resumable` says what it left
                write_together(out, writers, remove=RUN_FILES if epoch == start_epoch and not config.resume else ())
                resumable = True
    except KeyboardInterrupt:
        raise Interrupted(resumable) from None
    ddp.barrier()  # no rank leaves (and no caller reads best.pt) before rank 0 has written it

    best_epoch = _best_epoch(history, config.select_on) if history else 0
    best_row = next((h for h in history if h["epoch"] == best_epoch), {})
    return {"best_checkpoint": str(best_path), "last_checkpoint": str(last_path), "best_epoch": best_epoch,
            "best_val_bleu1": best_row.get("val_bleu1", -1.0), "best_val_loss": best_row.get("val_loss", math.inf),
            "select_on": config.select_on, "epochs_run": len(history), "steps": step,
            "stopped_early": len(history) < config.epochs, "train_videos": len(train_videos),
            "val_videos": val_ids, "vocab_size": len(vocab), "history": history}


def _selection_score(h: dict, select_on: str) -> float:
    """Higher is better: validation BLEU@1, or minus the validation loss."""
    return h["val_bleu1"] if select_on == "bleu1" else -h["val_loss"]


def _best_epoch(history: list[dict], select_on: str = "bleu1") -> int:
    """First epoch reaching the best selection score (the one best.pt holds)."""
    best = max(_selection_score(h, select_on) for h in history)
    return next(h["epoch"] for h in history if _selection_score(h, select_on) == best)
