"""`vcap caption --explain DIR`: one PNG per video of what the model looked at: the frames it saw as a strip
of thumbnails and, under it, for each word it said, its attention over those frames as a heat map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcap.captioner.vocab import BOS, Vocab
from vcap.extract.sampler import read_frames, resize_rgb
from vcap.files import atomic_write
from vcap.pipeline.writers import clock

THUMB = 96  # pixels a side


@torch.inference_mode()
def attention_weights(model, feats: torch.Tensor, tokens: list[int]) -> np.ndarray | None:
    """feats (1, T, D), the caption's token ids -> (words, T') weights over the encoded frames the decoder
    used to predict each token; None for a captioner without attention (S2VT)."""
    if not hasattr(model, "attend"):
        return None
    model.eval()
    state = model.encode(feats.float())
    previous = torch.tensor([BOS], device=feats.device)
    rows = []
    for token in tokens:  # advance(previous) attends with the state that predicts `token`
        rows.append(model.attend(state)[1][0].float().cpu().numpy())
        _, state = model.advance(previous, state)
        previous = torch.tensor([token], device=feats.device)
    return np.stack(rows) if rows else np.zeros((0, model.frames(feats).shape[1]))


def explain_video(path: Path, out_dir: Path, model, vocab: Vocab, feats: torch.Tensor, caption: str,
                  settings: dict, decoder: str = "auto", name: str | None = None) -> Path:
    """Write OUT_DIR/<video file name>.png for one captioned video, titled `name` (default: the file name,
    which for an upload is a temp name); returns its path."""
    frames = read_frames(path, settings["frames"], THUMB, decoder)  # the frames its features came from
    return explain(Path(out_dir) / f"{path.name}.png", model, vocab, feats, caption, frames, name or path.name)


def explain_window(path: Path, out_dir: Path, start: float, end: float, model, vocab: Vocab, feats: torch.Tensor,
                   caption: str, frames: np.ndarray, name: str | None = None) -> Path:
    """OUT_DIR/<video file name>.<HHMMSS>.png for the window of `path` from `start` to `end` seconds,
    titled with `name` (default: the file name)."""
    small = resize_rgb(frames, THUMB)
    target = Path(out_dir) / f"{path.name}.{clock(start).replace(':', '')}.png"
    return explain(target, model, vocab, feats, caption, small, f"{name or path.name} {clock(start)}-{clock(end)}")


def explain(target: Path, model, vocab: Vocab, feats: torch.Tensor, caption: str, frames: np.ndarray,
            name: str) -> Path:
    """Write the picture of one captioned clip: `frames` (N, S, S, 3) are those `feats` (N, D) came from."""
    words = caption.split()
    weights = attention_weights(model, feats[None], [vocab.index[w] for w in words])
    with atomic_write(target, suffix=".png") as tmp:
        render(tmp, frames[:: model.frame_stride], words, weights, f"{name}: {caption}")  # what the model saw
    return target


def render(target: Path, frames: np.ndarray, words: list[str], weights: np.ndarray | None, title: str) -> None:
    """frames (T', S, S, 3) uint8; weights (len(words), T') or None."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    count = len(frames)
    rows = len(words) if weights is not None else 0
    fig = Figure(figsize=(max(6.0, 0.55 * count + 1.5), 1.6 + 0.28 * rows + 0.6), layout="constrained")
    heights = [1.0, max(0.28 * rows, 0.01)] if rows else [1.0]
    axes = fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    axes[0].imshow(np.concatenate(list(frames), axis=1), aspect="auto")  # fills the width, as the map does
    axes[0].set_xticks([(i + 0.5) * frames.shape[2] for i in range(count)], [str(i) for i in range(count)],
                       fontsize=6)
    axes[0].set_yticks([])
    axes[0].set_title(title, fontsize=9, loc="left")
    if weights is None:
        axes[0].set_xlabel("S2VT has no attention: the frames it saw and its caption only", fontsize=8)
    elif rows:
        image = axes[1].imshow(weights, aspect="auto", cmap="magma", vmin=0.0, interpolation="nearest")
        axes[1].set_yticks(range(rows), words, fontsize=7)
        axes[1].set_xticks(range(count), [str(i) for i in range(count)], fontsize=6)
        axes[1].set_xlabel("frame the model saw (attention while saying each word)", fontsize=8)
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)  # shrinks both: columns stay aligned
    fig.savefig(target, format="png", dpi=110)
