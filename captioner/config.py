"""What `vcap train`, `evaluate` and `caption` take: the training run and the decoding (no torch here: `vcap
--help` reads these); the captioners, with their hyperparameters, are in vcap.captioner.captioners."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from vcap.config import PRECISIONS, check, check_choice, check_float, check_int
from vcap.errors import VcapError

from vcap.captioner.captioners import CAPTIONERS, check_shared
from vcap.captioner.datasets import FORMATS, SPLITS

SELECT_ON = ("loss", "bleu1")
# What a model is: fixed by the checkpoint when resuming (a different value is refused, not silently ignored).
ARCHITECTURE = ("captioner", "captioner_options", "hidden", "embed_dim", "dropout", "frame_stride", "min_count",
                "max_words")


@dataclass(frozen=True)
class DecodeConfig:
    """How features become words; one config for validation, `vcap evaluate` and `vcap caption`.

    Greedy decoding (beam 1) measured better CIDEr and BLEU@1 than beam 3/5 on MSVD (bench/quality.py)."""

    beam: int = 1
    max_words: int | None = None  # None: the length the model was trained with
    no_repeat_ngram: int = 2  # block repeated n-grams ("a a a"); 0 disables
    length_alpha: float = 0.7  # beam length normalisation: score / length ** alpha

    def __post_init__(self):
        check_int(self, "beam", 1, 100)
        check_int(self, "max_words", 1, 1000, optional=True)
        check_int(self, "no_repeat_ngram", 0, 10)
        check_float(self, "length_alpha", 0.0, 5.0)

    def max_len(self, trained_max_words: int | None) -> int:
        """Tokens to decode: the words plus the closing <EOS>."""
        return (self.max_words or trained_max_words or TrainConfig.max_words) + 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved inside every checkpoint and as OUT/config.json."""

    feats: str
    labels: str
    out: str
    captioner: str = "attention"  # a name of vcap.captioner.captioners.CAPTIONERS
    # the captioner's own hyperparameters (fields of its Config beyond ModelConfig's); the rest are below
    captioner_options: dict = field(default_factory=dict)
    # Defaults that bench/quality.py measures best on MSVD (5-fold, 64 training videos a fold; docs/results.md).
    hidden: int = 256
    embed_dim: int = 300
    dropout: float = 0.35
    lr: float = 1e-3
    batch_size: int = 64  # (video, caption) samples a step, across all ranks
    captions_per_video: int = 4  # a batch holds this many captions of each of its videos, each video encoded once
    epochs: int = 15
    min_count: int = 4  # rarer training words become <UNK>
    max_words: int = 20  # training captions are cut to this many words; captions decode up to it
    val_labels: str | None = None
    # videos held out for validation when neither val_labels nor a val split gives them; 0: none (best.pt = last)
    val_fraction: float = 0.1
    labels_format: str = "auto"  # a layout of vcap.captioner.datasets.READERS; auto: told by the file's structure
    split: str = "train"  # the samples of LABELS to train on, where its layout has splits (without: all of them)
    val_split: str = "val"  # validation samples of LABELS (or val_labels) where it has this split
    video_pattern: str | None = None  # a sample's video file, e.g. "{video}.mp4"; None: the dataset's video name
    seed: int = 0
    patience: int = 4  # epochs without a better validation score before stopping; 0 = never stop early
    grad_clip: float = 5.0  # 0 disables
    teacher_forcing: str = "inverse-sigmoid:1000"  # "always", "never" or "inverse-sigmoid:K"
    embeddings: str | None = None  # word2vec/GloVe text file to initialise the word embeddings
    frame_stride: int = 4  # keep every k-th feature frame (in the model, so decoding does the same)
    label_smoothing: float = 0.0
    weight_decay: float = 0.01  # decoupled (AdamW); 0 is plain Adam
    select_on: str = "loss"  # best.pt = lowest validation "loss" or best greedy validation "bleu1"
    device: str = "auto"
    precision: str = "auto"  # "fp32", "bf16", "fp16" (GPU only, with loss scaling) or "auto"
    cache_features: bool = False
    compile: bool = False
    resume: bool = False  # continue OUT/last.pt
    overwrite: bool = False  # replace the run already in OUT
    progress: bool = True

    def __post_init__(self):
        check_choice(self, "captioner", tuple(CAPTIONERS))
        options = self.captioner_options
        # plain values, which checkpoints and config.json keep as they are (so --resume compares them equal)
        check(isinstance(options, dict) and all(isinstance(k, str) and isinstance(v, (bool, int, float, str))
                                                for k, v in options.items()),
              "captioner_options", options, "must map option names to numbers, text or true/false")
        check_shared(self)  # hidden, embed_dim, dropout, frame_stride: what every captioner takes
        check(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 10, "lr", self.lr,
              "must be a finite number > 0 and <= 10")
        check_int(self, "batch_size", 1)
        check_int(self, "captions_per_video", 1)
        check_int(self, "epochs", 1)
        check_int(self, "min_count", 1)
        check_int(self, "max_words", 1, 1000)
        check_float(self, "val_fraction", 0.0, 1.0, high_open=True)
        check_labels(self)
        check_choice(self, "val_split", SPLITS)
        check_int(self, "seed", 0)
        check_int(self, "patience", 0)
        check_float(self, "grad_clip", 0.0)
        teacher_schedule_k(self.teacher_forcing)
        check_float(self, "label_smoothing", 0.0, 1.0, high_open=True)
        check_float(self, "weight_decay", 0.0, 10.0)
        check_choice(self, "select_on", SELECT_ON)
        check_choice(self, "precision", PRECISIONS)
        if self.resume and self.overwrite:
            raise VcapError("--resume continues the run in OUT and --overwrite replaces it: choose one")


def check_labels(config) -> None:
    """The labels options train, evaluate and run share."""
    check_choice(config, "labels_format", FORMATS)
    if config.split is not None:
        check_choice(config, "split", SPLITS)
    check(config.video_pattern is None or ("{video}" in config.video_pattern or "{id}" in config.video_pattern),
          "video_pattern", config.video_pattern, 'must hold {video} or {id}, e.g. "{video}.mp4"')


def train_config(**options) -> TrainConfig:
    """The TrainConfig of the options a user set; with resume, the run's own settings from OUT/last.pt first
    (`vcap.captioner.runfolder.resumed_config`, which reads the checkpoint and so imports torch)."""
    if options.get("resume"):
        from vcap.captioner.runfolder import resumed_config

        return resumed_config(options["out"], **options)
    return TrainConfig(**options)


def teacher_schedule_k(spec: str) -> float | None:
    """The K of "inverse-sigmoid:K" (None for "always" / "never"); anything else is a VcapError."""
    if spec in ("always", "never"):
        return None
    name, _, k = str(spec).partition(":")
    try:
        value = float(k)
    except ValueError:
        value = -1.0
    if name != "inverse-sigmoid" or not (math.isfinite(value) and value >= 1):
        raise VcapError(f"--teacher-forcing {spec}: expected always, never or inverse-sigmoid:K with K >= 1")
    return value


@dataclass(frozen=True)
class EvalConfig:
    """`vcap evaluate`: caption the videos of LABELS from their cached features and score them."""

    model: str
    feats: str
    labels: str
    out: str | None = None  # None: eval-<labels file stem>/ beside the model
    decode: DecodeConfig = DecodeConfig()
    videos_per_batch: int = 64  # videos captioned together
    device: str = "auto"
    coco: bool = True  # pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L, CIDEr beside MLDS BLEU@1
    only: tuple[str, ...] | None = None  # score only these video ids of LABELS (vcap run: its held-out share)
    labels_format: str = TrainConfig.labels_format
    split: str | None = "test"  # the samples of LABELS scored, where its layout has splits; None: all of them
    video_pattern: str | None = TrainConfig.video_pattern
    progress: bool = True

    def __post_init__(self):
        check_int(self, "videos_per_batch", 1)
        check_labels(self)
