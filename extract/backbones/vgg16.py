"""torchvision's ImageNet VGG16 cut after the fc7 ReLU: the 4096-d features of the video captioning literature."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from vcap.extract.backbones import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec
from vcap.errors import VcapError, library_text


def build(spec: BackboneSpec, weights: str):
    """features -> avgpool -> flatten -> fc6 -> ReLU -> dropout (identity in eval) -> fc7 -> ReLU."""
    import torch
    import torchvision
    from torch import nn

    from vcap.extract.backbone import load_state_dict_file, seeded

    if weights == "none":
        with seeded():
            vgg = torchvision.models.vgg16(weights=None)
    else:
        with torch.device("meta"):  # no random init of the 138M weights that the file replaces
            vgg = torchvision.models.vgg16(weights=None)
        if weights == "imagenet":
            vgg.load_state_dict(_download_imagenet(spec), assign=True)
        else:
            _load_into(vgg, load_state_dict_file(Path(weights), "features.0.weight"), Path(weights))
    return nn.Sequential(OrderedDict(features=vgg.features, avgpool=vgg.avgpool, flatten=nn.Flatten(1),
                              fc67=vgg.classifier[:5]))


def _download_imagenet(spec: BackboneSpec) -> dict:
    import urllib.error

    import torch
    import torchvision

    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except (urllib.error.URLError, OSError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        raise VcapError(
            f"cannot download the ImageNet {spec.name} weights ({getattr(exc, 'reason', exc)}); on a machine with "
            f"network get {weights.url} and put it at {cache}, "
            f"or pass --weights /path/to/{spec.weights_file} (or --weights none for random features)"
        ) from None


def _load_into(vgg, state: dict, path: Path) -> None:
    """A full VGG16 state dict, or one already cut after fc7 (no classifier.6, which fc7 features drop)."""
    try:
        missing, unexpected = vgg.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatch: another architecture
        raise VcapError(f"{path}: does not fit VGG16 ({library_text(exc, 160, line=-1)})") from None
    missing = [k for k in missing if not k.startswith("classifier.6.")]
    if missing or unexpected:
        raise VcapError(f"{path}: does not fit VGG16 (missing {missing[:3]}, unexpected {unexpected[:3]})")


SPEC = BackboneSpec("vgg16", 4096, IMAGENET_MEAN, IMAGENET_STD, "torchvision's VGG16 cut after the fc7 ReLU, 4096-d",
                    build, weights_file="vgg16-397923af.pth")
