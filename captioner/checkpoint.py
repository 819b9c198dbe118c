"""One-file checkpoints (weights, model/feature/train config, vocabulary) safe for torch.load(weights_only=True),
their exported form (.safetensors: the weights, and the rest as JSON text in its metadata), and load_model,
which every command loads a model with: a .pt, a .safetensors or an http(s) URL to either."""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import torch

from vcap.config import BadValue
from vcap.errors import VcapError, library_text

from vcap.captioner import captioners
from vcap.captioner.captioners import CAPTIONERS
from vcap.captioner.models import Captioner, build_model
from vcap.captioner.vocab import SPECIALS, Vocab

FORMAT = "vcap-captioner"
VERSION = 2  # 2: train_config names the architecture "captioner"; last.pt holds the loss scaler
READS = (1, 2)  # versions that caption and evaluate; only VERSION resumes


def make_checkpoint(model: Captioner, vocab: Vocab, feature_config: dict | None, frames: int,
                    train_config: dict | None = None, **extra) -> dict:
    """Only tensors, dicts, lists, str, int, float, bool and None, so weights_only loading works."""
    return {"format": FORMAT, "version": VERSION, "model": model.name, "model_config": dict(model.config),
            "state_dict": model.state_dict(), "vocab": list(vocab.words), "feature_config": feature_config,
            "feature_dim": int(model.config["feature_dim"]), "frames": int(frames),
            "train_config": train_config, **extra}


def write_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write `checkpoint` to `path` as it is (a temp file of write_together). A write the OS
    refuses is an OSError, which write_together translates: torch's writer reports it as "unexpected pos" instead."""
    try:
        with open(path, "wb") as f:
            torch.save(checkpoint, f)
    except RuntimeError as exc:
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint dict; anything else is a VcapError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VcapError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise VcapError(f"{path}: not a vcap checkpoint (empty file)")
    return _check(path, _read_safetensors(path, device) if path.suffix == ".safetensors" else _read_pt(path, device))


def _read_pt(path: Path, device: str | torch.device) -> dict:
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign file's pickle protocol: ours says why
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        text = str(exc)
        if found := re.search(r"GLOBAL (\S+)", text):
            raise VcapError(f"{path}: not a vcap checkpoint: it holds Python objects ({found[1]}) beyond tensors "
                            "and plain data, which vcap refuses to load since loading them could run code") from None
        # Behind torch's advice about weights_only, the reason itself
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        raise VcapError(f"{path}: not a vcap checkpoint (torch.load: {library_text(detail[1] if detail else exc)})") \
            from None
    return ckpt


# What an exported model keeps beside its weights, each as JSON text in the safetensors metadata.
EXPORTED = ("format", "version", "model", "model_config", "vocab", "feature_config", "feature_dim", "frames",
            "train_config", "epoch", "metrics")


def to_safetensors(ckpt: dict) -> bytes:
    """A checkpoint as safetensors bytes: the state dict as tensors, EXPORTED as JSON strings."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt["state_dict"].items()}
    return save(tensors, metadata={k: json.dumps(ckpt.get(k)) for k in EXPORTED})


def _read_safetensors(path: Path, device: str | torch.device) -> dict:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        weights = load_file(str(path), device=str(device))
        ckpt = {k: json.loads(metadata[k]) for k in EXPORTED if k in metadata}
    except (SafetensorError, OSError, ValueError) as exc:  # json's errors are ValueErrors
        raise VcapError(f"{path}: not a vcap model file ({library_text(exc)})") from None
    return {**ckpt, "state_dict": weights}


def _check(path: Path, ckpt) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VcapError(f"{path}: not a vcap checkpoint (no '{FORMAT}' marker; train one with `vcap train`)")
    if ckpt.get("version") not in READS:
        raise VcapError(f"{path}: checkpoint format version {ckpt.get('version')}, but this vcap reads versions "
                        f"{', '.join(map(str, READS))}; use the vcap that wrote it, or train anew")
    if not isinstance(ckpt.get("model"), str) or ckpt["model"] not in CAPTIONERS:
        raise VcapError(f"{path}: a checkpoint of an unknown captioner {ckpt.get('model')!r} "
                        f"(this vcap knows {', '.join(CAPTIONERS)})")
    problem = inconsistency(ckpt)
    if problem:
        raise VcapError(f"{path}: an inconsistent checkpoint: {problem}; use one written by `vcap train`")
    return ckpt


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def inconsistency(ckpt: dict) -> str | None:
    """How a checkpoint disagrees with itself (vocabulary, config and weights), or None.

    model_config is checked by building the captioner's Config from it (its fields, their ranges), and the model
    on the meta device to learn the shapes its config makes: no memory, whatever it says."""
    for key, kind in (("model_config", dict), ("state_dict", dict), ("vocab", list)):
        if not isinstance(ckpt.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    config, vocab, weights = ckpt["model_config"], ckpt["vocab"], ckpt["state_dict"]
    config_class = captioners.spec(ckpt["model"]).config
    try:
        config_class(**config)
    except TypeError:  # a key missing, or one the captioner does not have
        fields = [f.name for f in dataclasses.fields(config_class)]
        return f"model_config has the keys {sorted(map(str, config))}, not those of {ckpt['model']}'s config " \
               f"({', '.join(fields)})"
    except BadValue as exc:
        return f"model_config {exc.field} is {exc.value!r}: {exc.rule}"
    if not all(isinstance(w, str) for w in vocab) or vocab[: len(SPECIALS)] != SPECIALS \
            or len(set(vocab)) != len(vocab):
        return f"its vocabulary is not {len(SPECIALS)} special tokens followed by distinct words"
    if len(vocab) != config["vocab_size"]:
        return f"its vocabulary has {len(vocab)} words but model_config says {config['vocab_size']}"
    if ckpt.get("feature_dim") != config["feature_dim"]:
        return f"feature_dim is {ckpt.get('feature_dim')!r} but model_config says {config['feature_dim']}"
    if not _whole(ckpt.get("frames")):
        return f"frames is {ckpt.get('frames')!r}, not a whole number >= 1"
    if not isinstance(ckpt.get("feature_config"), (dict, type(None))):
        return f"feature_config is a {type(ckpt['feature_config']).__name__}, not a dict or None"
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(ckpt["model"], **config).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError) as exc:  # sizes beyond what torch can even describe
        return f"model_config {config} makes no {ckpt['model']} model ({library_text(exc)})"
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(map(str, set(weights) - set(expected)))
        return f"weights {', '.join((missing or extra)[:3])} {'missing' if missing else 'unknown'} for the " \
               f"{ckpt['model']} model"
    for key, shape in expected.items():
        tensor = weights[key]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            return f"weight {key} is not a float tensor"
        if tuple(tensor.shape) != shape:
            return f"weight {key} is {tuple(tensor.shape)} but model_config makes it {shape}"
        if not torch.isfinite(tensor).all():
            return f"weight {key} holds NaN or infinite values"
    return None


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> tuple[Captioner, Vocab]:
    model = build_model(ckpt["model"], **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), Vocab(ckpt["vocab"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Captioner, Vocab, dict]:
    """-> (model in eval mode on `device`, vocabulary, info), from a .pt of `vcap train`, a .safetensors of
    `vcap export`, or an http(s) URL to either (downloaded once, hash-checked: vcap.hub).

    info: "model" (name), "feature_config" (dict or None: how FEATS were extracted), "feature_dim",
    "frames" (T seen in training), "model_config", "train_config", "epoch", "metrics", "max_words",
    "path" (the local file).
    """
    from vcap.hub import fetch, is_url

    path = fetch(str(path)) if is_url(path) else Path(path)
    ckpt = read_checkpoint(path, device)
    model, vocab = model_from_checkpoint(ckpt, device)
    info = {k: ckpt.get(k) for k in ("model", "feature_config", "feature_dim", "frames", "model_config",
                                     "train_config", "epoch", "metrics")}
    info["max_words"] = (ckpt.get("train_config") or {}).get("max_words")  # captions decode up to this length
    info["path"] = str(path)
    return model, vocab, info
