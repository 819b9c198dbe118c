"""What `vcap caption`, `vcap serve` and `vcap run` take (no torch here). Their extraction and training options
are those of `vcap extract` and `vcap train`, with the same names and the defaults those stages write."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vcap.captioner.config import DecodeConfig, EvalConfig, TrainConfig, train_config
from vcap.config import NUMBER_LIMIT, check, check_float, check_int, field_names, pick
from vcap.errors import VcapError
from vcap.extract.config import ExtractConfig
from vcap.pipeline.writers import parse_formats


SHOTS = "shots"  # --every shots: windows that follow the video's cuts (extract/shots.py)
MIN_EVERY = 0.1  # seconds: the shortest window of timed captions (vcap caption --every, serve ?every=)
MAX_EVERY = NUMBER_LIMIT  # the longest: seconds times frames per second must still make a frame index


@dataclass(frozen=True)
class CaptionConfig:
    model: str  # a checkpoint from `vcap train`
    decode: DecodeConfig = DecodeConfig()
    weights: str | None = None  # the backbone weights file, when the model's features came from one
    device: str = ExtractConfig.device
    precision: str = ExtractConfig.precision
    frame_batch: int | None = ExtractConfig.frame_batch
    workers: int | None = ExtractConfig.workers
    decoder: str = ExtractConfig.decoder
    compile: bool | None = ExtractConfig.compile
    videos_per_batch: int = EvalConfig.videos_per_batch
    explain: str | None = None  # a folder for one PNG per video: the frames seen and the attention per word
    # seconds: caption consecutive windows of this length instead of whole videos; "shots": one window per shot
    every: float | str | None = None
    srt: str | None = None  # with `every`: write the timed captions of the one video as SubRip
    vtt: str | None = None  # ... or as WebVTT
    output_dir: str | None = None  # a folder for the output files; None: print only
    output_format: str | None = None  # the formats written to output_dir, comma-separated; None: all that apply

    def __post_init__(self):
        if not self.model:
            raise VcapError("no model: pass --model PATH (a best.pt from `vcap train`) or set VCAP_MODEL")
        check_int(self, "videos_per_batch", 1)
        if self.every is not None and self.every != SHOTS:
            check_float(self, "every", MIN_EVERY, MAX_EVERY)
        if (self.srt or self.vtt) and self.every is None:
            raise VcapError("--srt and --vtt write timed captions: give --every SECONDS too")
        if self.output_format is not None and self.output_dir is None:
            raise VcapError(f"--output-format {self.output_format} names what --output-dir gets: give --output-dir "
                            f"DIR too")
        parse_formats(self.output_format, self.every is not None)  # a bad name fails before the model loads


@dataclass(frozen=True)
class ServeConfig(CaptionConfig):
    """`vcap serve`: one loaded captioner behind a local web service; the model, decoding and runtime
    fields are `vcap caption`'s, so --beam or --device mean the same in both."""

    host: str = "127.0.0.1"  # loopback: only this machine can connect
    port: int = 8000
    allow_dir: str | None = None  # POST /caption {"paths": [...]} reads only below it; None: uploads only
    max_upload_mb: int = 512  # a request body past this is refused (413) while it streams
    max_files: int = 64  # videos one request may hold (413 past it), so one request cannot hold the queue

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.host, str) and bool(self.host.strip()), "host", self.host, "expected an address "
              "to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        check_int(self, "port", 1, 65535)
        check(self.allow_dir is None or Path(self.allow_dir).is_dir(), "allow_dir", self.allow_dir,
              "not a folder")
        check_int(self, "max_upload_mb", 1, 1_000_000)
        check_int(self, "max_files", 1, 100_000)


@dataclass(frozen=True)
class RunConfig:
    """`vcap run`: OUT/feats from VIDEOS, OUT/model trained on LABELS, OUT/eval scored on held-out videos."""

    videos: str
    labels: str
    out: str
    extract: ExtractConfig
    train: TrainConfig  # its feats, labels and out point into OUT
    decode: DecodeConfig = DecodeConfig()
    all_videos: bool = False  # extract every video in VIDEOS, not only those LABELS names
    test_split: str | None = EvalConfig.split  # the split of LABELS scored, where its layout has one


def run_config(videos: str, labels: str, out: str, **options) -> RunConfig:
    """Share one command's options among the stages by name: --device, --precision and --overwrite go to
    both extraction and training, --max-words to training and decoding."""
    known = field_names(ExtractConfig) | field_names(TrainConfig) | field_names(DecodeConfig) | {"all_videos",
                                                                                                 "test_split"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"run_config: unknown options {sorted(unknown)}")
    root = Path(out)
    train = train_config(**pick(options, TrainConfig), feats=str(root / "feats"), labels=str(labels),
                         out=str(root / "model"))  # resumed: the model's settings from OUT/model/last.pt
    return RunConfig(videos=str(videos), labels=str(labels), out=str(out),
                     extract=ExtractConfig(**pick(options, ExtractConfig)), train=train,
                     decode=DecodeConfig(**pick(options, DecodeConfig)),
                     all_videos=bool(options.get("all_videos", False)),
                     **({"test_split": options["test_split"]} if "test_split" in options else {}))
