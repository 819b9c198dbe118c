"""Frame -> feature networks: a registered backbone (`vcap.extract.backbones`) behind one module that takes raw
uint8 RGB frames, plus the weight-loading pieces every backbone shares."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from vcap.errors import VcapError, library_text
from vcap.files import sha256_of
from vcap.extract.backbones import BACKBONES

RANDOM_SEED = 0  # --weights none: the same random network on every machine


class FrameEncoder(nn.Module):
    """uint8 frames (B, H, W, 3) RGB -> float features (B, D).

    Normalisation lives inside the module so that every caller (extract, caption) feeds raw frames
    and cannot forget or double it.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()  # (B, 3, H, W), channels_last in memory already
        x = (x - self.mean.float()) / self.std.float()
        dtype = next(self.net.parameters()).dtype  # a bf16/fp16 network takes bf16/fp16 input
        return self.net(x.to(dtype).contiguous(memory_format=torch.channels_last)).float()


class PooledTrunk(nn.Module):
    """A network's convolutional trunk (the method `trunk` of `net`), global-average-pooled: (B, C)."""

    def __init__(self, net: nn.Module, trunk: str = "forward"):
        super().__init__()
        self.net, self.trunk = net, trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.trunk)(x).mean((2, 3))


def load_backbone(name: str = "vgg16", weights: str = "imagenet") -> FrameEncoder:
    """An eval-mode FrameEncoder. weights: "imagenet" (the genuine ImageNet weights), "none" (random,
    seeded) or the path of a state dict of the full model (loaded with weights_only=True)."""
    if name not in BACKBONES:
        raise VcapError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
    spec = BACKBONES[name]
    return FrameEncoder(spec.build(spec, weights), spec.mean, spec.std).eval()


@contextlib.contextmanager
def seeded():
    """Random initialisation that is the same on every machine, leaving the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        yield


def weights_id(weights: str) -> str:
    """A stable name for a weights choice, recorded in manifests and checkpoints."""
    if weights in ("imagenet", "none"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise VcapError(f"{weights}: no such weights file (use --weights imagenet, none, or a state-dict path)")
    return f"file:{path.name}:sha256:{sha256_of(path)[:16]}"


def load_state_dict_file(path: Path, first_key: str) -> dict:
    """A state dict from a file, never unpickling code; `first_key` tells this backbone's dicts from others'."""
    if not path.is_file():
        raise VcapError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VcapError(f"{path}: not a loadable state dict ({library_text(exc, 160)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or first_key not in state:
        raise VcapError(f"{path}: not a state dict of this backbone (no {first_key!r})")
    return state
