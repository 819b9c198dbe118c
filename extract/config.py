"""What `vcap extract` takes: its settings and choices (no torch here; backbones: `vcap.extract.backbones`,
decoders: `vcap.extract.decoders`)."""
from __future__ import annotations

from dataclasses import dataclass

from vcap.config import PRECISIONS, check, check_choice, check_int
from vcap.errors import VcapError
from vcap.extract.backbones import BACKBONES
from vcap.extract.decoders import NAMES as DECODER_NAMES

FEATURE_DTYPES = ("float32", "float16")
DECODERS = ("auto", *DECODER_NAMES)  # --decoder's choices
# --compile unset: compile the backbone on the CPU once an extractor's frames, done and ahead, reach this:
# the compile is a one-off cost that faster passes repay only over a few thousand frames (docs/benchmarks.md).
COMPILE_MIN_FRAMES = 2000


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
    # The type the .npy files store: float16 halves the disk and the reads of training (fc7 and pooled features
    # are ReLU outputs, far inside its range), but scored a little lower on every caption metric, within the
    # seed noise (docs/results.md): float32 stays the default until a larger measurement says otherwise.
    dtype: str = "float32"
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
        check_choice(self, "dtype", FEATURE_DTYPES)
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
