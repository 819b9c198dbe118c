"""`vcap export`: a trained checkpoint as one shareable file, <name>-<sha256[:8]>.safetensors (weights, and the
captioner config, vocabulary and feature settings as JSON text: nothing to unpickle), with a README.md model
card beside it. The hash prefix in the name is what `load_model` checks a downloaded copy against."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from pathlib import Path

from vcap.config import flag
from vcap.files import atomic_write, ensure_folder

from vcap.captioner.checkpoint import read_checkpoint, to_safetensors
from vcap.captioner.config import TrainConfig

# TrainConfig fields that say where a run read and wrote, or how it ran, not what it trained
NOT_SETTINGS = ("feats", "labels", "out", "device", "precision", "cache_features", "compile", "resume",
                "overwrite", "progress")


def export_model(checkpoint: str | Path, out_dir: str | Path, name: str | None = None) -> Path:
    """Write OUT_DIR/<name>-<sha8>.safetensors and OUT_DIR/README.md; returns the model file's path.
    `name` defaults to vcap-<captioner>."""
    ckpt = read_checkpoint(checkpoint)
    data = to_safetensors(ckpt)
    digest = hashlib.sha256(data).hexdigest()
    out = ensure_folder(out_dir)
    path = out / f"{name or 'vcap-' + ckpt['model']}-{digest[:8]}.safetensors"
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    with atomic_write(out / "README.md") as tmp:
        tmp.write_text(model_card(ckpt, Path(checkpoint), path, digest), encoding="utf-8")
    return path


def model_card(ckpt: dict, checkpoint: Path, path: Path, digest: str) -> str:
    """What a user of the file needs: what it is, its data and split, its scores, its feature settings, and
    the commands that made it."""
    train = ckpt.get("train_config") or {}
    config = ckpt["model_config"]
    lines = [f"# {path.stem}", "",
             f"A vcap video captioner ({ckpt['model']}: hidden {config['hidden']}, word embeddings "
             f"{config['embed_dim']}, vocabulary {config['vocab_size']} words) on {ckpt['frames']} frames of "
             f"{ckpt['feature_dim']}-d features a video.", "",
             f"- File: `{path.name}`, sha256 `{digest}`",
             f"- Use: `vcap caption VIDEO --model {path.name}` (or an http(s) URL to it: downloaded once into "
             "$VCAP_HOME, default ~/.cache/vcap, and checked against the hash in its name)", "",
             "## Data", ""]
    if train:
        lines += [f"- Labels: `{train.get('labels')}` ({train.get('labels_format', 'auto')}), split "
                  f"{train.get('split', 'all')} where the file has splits",
                  f"- Validation: `{train['val_labels']}`" if train.get("val_labels") else
                  f"- Validation: its {train.get('val_split', 'val')} split where it has one, else a "
                  f"{train.get('val_fraction')} share of the training videos (seed {train.get('seed')})"]
    lines += ["", "## Metrics", "", "| metric | value | on |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {'training' if k.startswith('train') else 'validation'}, epoch {ckpt.get('epoch')} |"
              for k, v in (ckpt.get("metrics") or {}).items() if isinstance(v, (int, float))]
    for scored in _evaluations(checkpoint):
        where = f"{scored['videos']} videos of {scored.get('labels')} (split {scored.get('split')})"
        lines += [f"| {k} | {scored[k]:.4f} | {where} |" for k in ("MLDS-BLEU@1", "BLEU-4", "METEOR", "ROUGE-L",
                                                                    "CIDEr") if k in scored]
    lines += ["", "## Feature settings", "", "```json", json.dumps(ckpt.get("feature_config"), indent=1), "```",
              "", "Captioning extracts features with these settings itself; `vcap extract` with them makes "
              "features for `vcap evaluate`.", "", "## How it was made", "", "```"]
    if train:
        lines.append(train_command(train))
    lines += [shlex.join(["vcap", "export", str(checkpoint), str(path.parent)]), "```", ""]
    return "\n".join(lines)


def train_command(train: dict) -> str:
    """The `vcap train` line of a recorded TrainConfig: its folders and the settings that differ from the
    defaults."""
    words = ["vcap", "train", str(train.get("feats")), str(train.get("labels")), "--out", str(train.get("out"))]
    for field in dataclasses.fields(TrainConfig):
        value = train.get(field.name, field.default)
        if field.name in NOT_SETTINGS or value == field.default or value is None:
            continue
        words += [flag(field.name)] if value is True else [flag(field.name), str(value)]
    return shlex.join(words)


def _evaluations(checkpoint: Path) -> list[dict]:
    """The metrics.json files of `vcap evaluate` / `vcap run` that scored this checkpoint."""
    found = []
    run_eval = checkpoint.parent.parent / "eval" / "metrics.json"  # vcap run's OUT/eval beside OUT/model
    for metrics in [run_eval, *sorted(checkpoint.parent.glob("eval*/metrics.json"))]:
        try:
            scored = json.loads(metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if Path(str(scored.get("model"))).resolve() == checkpoint.resolve():
            found.append(scored)
    return found
