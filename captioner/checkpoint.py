"""One-file checkpoints (weights, model/feature/train config, vocabulary) safe for torch.load(weights_only=True)."""
from __future__ import annotations

from pathlib import Path

import torch

from vcap.errors import VcapError

from vcap.files import atomic_write

from .models import MODELS, Captioner, build_model
from .vocab import Vocab

FORMAT = "vcap-captioner"
VERSION = 1


def make_checkpoint(model: Captioner, vocab: Vocab, feature_config: dict | None, frames: int,
                    train_config: dict | None = None, **extra) -> dict:
    """Only tensors, dicts, lists, str, int, float, bool and None, so weights_only loading works."""
    return {"format": FORMAT, "version": VERSION, "model": model.name, "model_config": dict(model.config),
            "state_dict": model.state_dict(), "vocab": list(vocab.words), "feature_config": feature_config,
            "feature_dim": int(model.config["feature_dim"]), "frames": int(frames),
            "train_config": train_config, **extra}


def save_checkpoint(path: str | Path, checkpoint: dict) -> None:
    # Through a Python file: torch's own writer turns a full disk into "unexpected pos ..." RuntimeErrors.
    with atomic_write(path, suffix=".pt") as tmp, tmp.open("wb") as f:
        torch.save(checkpoint, f)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint dict; anything else is a VcapError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VcapError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VcapError(f"{path}: not a vcap checkpoint ({reason[:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VcapError(f"{path}: not a vcap checkpoint (no '{FORMAT}' marker; train one with `vcap train`)")
    if ckpt.get("version") != VERSION or ckpt.get("model") not in MODELS:
        raise VcapError(f"{path}: not a vcap checkpoint (unsupported version {ckpt.get('version')} "
                        f"or model {ckpt.get('model')!r})")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> tuple[Captioner, Vocab]:
    model = build_model(ckpt["model"], **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), Vocab(ckpt["vocab"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Captioner, Vocab, dict]:
    """-> (model in eval mode on `device`, vocabulary, info).

    info: "model" (name), "feature_config" (dict or None: how FEATS were extracted), "feature_dim",
    "frames" (T seen in training), "model_config", "train_config", "epoch", "metrics".
    """
    ckpt = read_checkpoint(path, device)
    model, vocab = model_from_checkpoint(ckpt, device)
    info = {k: ckpt.get(k) for k in ("model", "feature_config", "feature_dim", "frames", "model_config",
                                     "train_config", "epoch", "metrics")}
    return model, vocab, info
