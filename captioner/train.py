"""Training loop: scheduled sampling, per-epoch validation, best/last checkpoints, resume, early stopping.

The run folder's files, resume rules and TrainResult live in runfolder.py; the videos and vocabulary a run
trains on in data.py."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vcap.device import autocast, compile_quietly, resolve_device, resolve_precision
from vcap.errors import Interrupted, VcapError
from vcap.files import signals_deferred

from vcap import distributed as ddp
from vcap.captioner.config import DecodeConfig, TrainConfig, teacher_schedule_k
from vcap.captioner.checkpoint import make_checkpoint, model_from_checkpoint, read_checkpoint
from vcap.captioner.captioners import model_config
from vcap.captioner.data import (CaptionDataset, FeatureBank, TrainingData, batch_loader, load_feature_config,
                                  training_data)
from vcap.captioner.decode import caption_in_batches
from vcap.captioner.embeddings import load_word_vectors
from vcap.captioner.metrics import degenerate, mlds_bleu1_corpus
from vcap.captioner.models import Captioner, build_model
from vcap.captioner.runfolder import (TrainResult, best_epoch, check_out, chooses_best, resume_checkpoint, run_result,
                                      save_epoch, take_folder)
from vcap.captioner.vocab import PAD, SPECIALS, Vocab


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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclasses.dataclass
class _State:
    """What an epoch changes: the model and what continues its training, and the run's history so far."""

    model: Captioner
    net: nn.Module  # `model`, or its data-parallel wrapper under torchrun
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    history: list[dict]
    step: int
    start_epoch: int


def train(config: TrainConfig) -> TrainResult:
    """Train a captioner on cached features.

    Writes OUT/best.pt, last.pt (with optimizer, loss scaler and RNG state), history.csv/png and
    config.json (the resolved config) after every epoch, as one change of OUT (see runfolder.save_epoch)."""
    out = Path(config.out)
    check_out(config, out)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    distributed = ddp.join_torchrun(device)  # under torchrun: one rank of a data-parallel run
    torch.manual_seed(config.seed)
    data = training_data(config)
    new_model = None if config.resume else model_config(  # a bad --captioner-option fails before OUT is touched
        config.captioner, config.captioner_options, feature_dim=data.shape[1], vocab_size=len(data.vocab),
        hidden=config.hidden, embed_dim=config.embed_dim, dropout=config.dropout, frame_stride=config.frame_stride)
    with contextlib.ExitStack() as held:
        take_folder(config, out, held)
        state = _setup(config, data, new_model, device, precision, distributed)
        _epochs(config, data, state, out, device, precision)
        ddp.barrier()  # no rank leaves (and no caller reads best.pt) before rank 0 has written it
        if ddp.is_main():
            _warn_if_degenerate(out / "best.pt", data.val_videos, device, config.batch_size)
    return run_result(config, out, state.history, state.step, len(data.train_videos),
                      [vid for vid, _, _ in data.val_videos], len(data.vocab))


def _setup(config: TrainConfig, data: TrainingData, new_model: dict | None, device: torch.device, precision: str,
           distributed: bool) -> _State:
    """A new model of model_config `new_model`, or the run of OUT/last.pt continued (its resume rules checked once,
    in resume_checkpoint)."""
    ckpt, history, step, start_epoch = None, [], 0, 0
    if config.resume:
        last = Path(config.out) / "last.pt"
        ckpt, _ = resume_checkpoint(config.out, dataclasses.asdict(config), device)
        if ckpt["feature_dim"] != data.shape[1]:
            raise VcapError(f"{last}: was trained on {ckpt['feature_dim']}-d features, {config.feats} has "
                            f"{data.shape[1]}-d ones")
        model, saved_vocab = model_from_checkpoint(ckpt, device)
        if saved_vocab.words != data.vocab.words:
            raise VcapError(f"{config.labels}: its captions give another vocabulary ({len(data.vocab)} words) than "
                            f"the run in {config.out} was trained with ({len(saved_vocab)}); resume on the same labels")
        history, step, start_epoch = ckpt["history"], ckpt["step"], ckpt["epoch"]
    else:
        model = build_model(config.captioner, **new_model)
        if config.embeddings:
            with torch.no_grad():
                found = load_word_vectors(config.embeddings, data.vocab, model.embed.weight)
            print(f"vcap: {found} of {len(data.vocab) - len(SPECIALS)} words initialised from {config.embeddings}",
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
    return _State(model, net, opt, scaler, history, step, start_epoch)


def _epochs(config: TrainConfig, data: TrainingData, state: _State, out: Path, device: torch.device,
            precision: str) -> None:
    """Train, validate and save epoch after epoch. A Ctrl-C (or SIGTERM) ends it as an Interrupted that knows
    whether OUT/last.pt is this run's, so the advice printed is the command that works."""
    schedule = teacher_schedule(config.teacher_forcing)
    model, vocab = state.model, data.vocab
    bank = FeatureBank([p for _, _, p in data.train_videos], cache=config.cache_features)
    val_bank = FeatureBank([p for _, _, p in data.val_videos], cache=config.cache_features)
    dataset = CaptionDataset(data.train_videos, vocab, bank, config.max_words)
    val_dataset = CaptionDataset(data.val_videos, vocab, val_bank, config.max_words)
    feature_config = load_feature_config(config.feats)
    train_config = dataclasses.asdict(config)
    resolved = {**train_config, "device": str(device), "precision": precision,
                "train_videos": len(data.train_videos), "val_videos": [vid for vid, _, _ in data.val_videos]}
    chooses = chooses_best(len(data.val_videos))
    resumable = config.resume  # OUT/last.pt is this run's: --resume continues it
    try:
        for epoch in range(state.start_epoch, config.epochs):
            history = state.history
            if config.patience and chooses and history \
                    and epoch - best_epoch(history, config.select_on, chooses, config.epochs) >= config.patience:
                break
            t0 = time.perf_counter()
            # Every rank walks the same global batches and takes its part of each (a batch too small to give
            # every rank a sample is skipped by all), so K ranks follow one process's path.
            batches = epoch_batches(dataset, config.batch_size, config.captions_per_video,
                                    config.seed * 100003 + epoch)
            batches = [ddp.my_part(b) for b in batches if len(b) >= ddp.world_size()]
            loader = batch_loader(dataset, batches, pin_memory=device.type == "cuda")
            train_loss, state.step = train_epoch(state.net, loader, state.opt, device, precision, state.scaler,
                                                 schedule, state.step, config.grad_clip,
                                                 desc=f"epoch {epoch + 1}/{config.epochs}",
                                                 progress=config.progress, label_smoothing=config.label_smoothing)
            val_loss, val_bleu1 = validate(model, vocab, data.val_videos, val_bank, val_dataset, device, precision,
                                           config.batch_size, config.max_words) if data.val_videos \
                else (math.nan, math.nan)
            if not math.isfinite(train_loss) or (data.val_videos and not math.isfinite(val_loss)):
                # stop before saving: last.pt keeps the last good epoch
                kept = f"{out / 'last.pt'} keeps epoch {epoch}" if epoch else "no checkpoint was written"
                raise VcapError(f"epoch {epoch + 1}: the loss is no longer a number (training {train_loss:.4g}, "
                                f"validation {val_loss:.4g}); {kept}; try a lower --lr")
            history.append({"epoch": epoch + 1, "step": state.step, "train_loss": round(train_loss, 6),
                            "val_loss": round(val_loss, 6), "val_bleu1": round(val_bleu1, 6),
                            "teacher_prob": round(schedule(state.step), 6),
                            "seconds": round(time.perf_counter() - t0, 3)})
            if not ddp.is_main():
                continue  # the history is the same on every rank; one writes it
            held_out = f"  val loss {val_loss:.4f}  val BLEU@1 {val_bleu1:.4f}" if data.val_videos else ""
            print(f"vcap: epoch {epoch + 1}: train loss {train_loss:.4f}{held_out}", file=sys.stderr)
            metrics = {k: history[-1][k] for k in ("train_loss", "val_loss", "val_bleu1")}
            checkpoint = make_checkpoint(model, vocab, feature_config, data.shape[0], train_config,
                                         epoch=epoch + 1, metrics=metrics)
            resume_state = {"optimizer": state.opt.state_dict(), "scaler": state.scaler.state_dict(),
                            "step": state.step, "history": history, "rng": _rng_state()}
            best = best_epoch(history, config.select_on, chooses, config.epochs) == epoch + 1
            first = epoch == state.start_epoch
            with signals_deferred():  # a Ctrl-C held by the write arrives after `resumable` says what it left
                save_epoch(out, checkpoint, resume_state, history, resolved, best, first,
                           new_run=first and not config.resume)
                resumable = True
    except KeyboardInterrupt:
        raise Interrupted(resumable) from None


def _warn_if_degenerate(best_path: Path, val_videos: list, device: torch.device, batch_size: int) -> None:
    """Say so when best.pt's captions of the held-out videos say nothing about them (one for all, stop words)."""
    if not val_videos or not best_path.exists():
        return
    model, vocab = model_from_checkpoint(read_checkpoint(best_path, device), device)
    bank = FeatureBank([p for _, _, p in val_videos])
    batches = caption_in_batches(model, vocab, bank.batch, range(len(val_videos)), batch_size, DecodeConfig(),
                                 None, device)
    why = degenerate([caption for _, captions in batches for caption in captions])
    if why:
        print(f"vcap: warning: {best_path}: its captions of the {len(val_videos)} held-out videos are degenerate "
              f"({why}); train longer or on more videos", file=sys.stderr)
