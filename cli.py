"""The `vcap` command line: parses options, builds a config, calls one library function per command.

Every option defaults to None and only what the user set is passed on (timm's rule), so each default lives
once, in its stage's dataclass, and the help shows it from there. No torch is imported before a command runs.
It is one module past 300 lines because most of it is the option table every command draws on: each command, a
few lines, reads beside the options it shares.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading

import click

from vcap.captioner.captioners import CAPTIONERS
from vcap.captioner.config import SELECT_ON, DecodeConfig, EvalConfig, TrainConfig, train_config
from vcap.captioner.datasets import FORMATS, SPLITS
from vcap.config import PRECISIONS, default_of, flag
from vcap.errors import VcapError
from vcap.extract.config import BACKBONES, COMPILE_MIN_FRAMES, DECODERS, FEATURE_DTYPES, ExtractConfig, parse_shard
from vcap.pipeline.config import SHOTS, CaptionConfig, RunConfig, ServeConfig
from vcap.pipeline.writers import WRITERS


def _resume_hint(argv: list[str]) -> str:
    """The command line that continues an interrupted run: the same words, --resume instead of --overwrite."""
    words = [w for w in argv if w != "--overwrite"]
    return shlex.join(["vcap", *words] + ([] if "--resume" in words else ["--resume"]))


def _trained(argv: list[str], resumable: bool | None, kept: str) -> str:
    """Advice after a training run stopped: --resume once OUT/last.pt is this run's, else the same command
    (a run that --overwrite was replacing is still whole there)."""
    if resumable:
        return f"{kept}; continue with: {_resume_hint(argv)}"
    return f"no epoch of this run was written; start it again with: {shlex.join(['vcap', *argv])}"


INTERRUPTED = {  # what a Ctrl-C leaves, per command; `resumable`: what the training run's folder holds
    "extract": lambda argv, resumable: "finished .npy files are kept; run the same command again to resume",
    "train": lambda argv, resumable: _trained(argv, resumable, "last.pt holds the last finished epoch"),
    "run": lambda argv, resumable: _trained(argv, resumable, "finished features and epochs are kept")
    if resumable else f"finished features are kept; continue with: {shlex.join(['vcap', *argv])}",
    "evaluate": lambda argv, resumable: "nothing was written",
    "caption": lambda argv, resumable: "captions printed so far are complete",
    "serve": lambda argv, resumable: "the server stopped",
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that files are closed, temp files removed and worker processes ended."""


def _terminate(signum, frame):
    raise _Terminated


class _Group(click.Group):
    """Turn a VcapError anywhere below into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):
        argv = list(ctx.args)  # the command's own words, for the resume hint
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return super().invoke(ctx)
        except VcapError as exc:
            click.echo(f"vcap: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            advice = INTERRUPTED.get(ctx.invoked_subcommand or "", lambda argv, resumable: "")
            hint = advice([ctx.invoked_subcommand, *argv], getattr(exc, "resumable", None))
            terminated = isinstance(exc, _Terminated) or isinstance(exc.__context__, _Terminated)
            click.echo(f"vcap: {'terminated' if terminated else 'interrupted'}; {hint}", err=True)
            sys.exit(143 if terminated else 130)
        except EOFError as exc:  # click would print a bare "Aborted!"; a file that ended early, unchecked, is a bug
            raise RuntimeError(f"unexpected end of a file: {exc}") from exc
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=_Group)
@click.version_option(package_name="vcap")
def main() -> None:
    """Turn raw videos into English captions: extract features, train a captioner, caption videos."""
    # Before torch loads: its OpenMP threads then sleep as soon as they wait instead of spinning, so they leave
    # the cores to the decoders beside them and to the machine's other processes; spinning threads made a small
    # network such as efficientnet-lite0 several times slower whenever anything else ran (docs/decoding.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# ---- options: one definition each, shared by every command that takes it -------------------------------

class SecondsOrShots(click.ParamType):
    """--every: a number of seconds, or `shots`."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if value == SHOTS or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number of seconds nor {SHOTS}", param, ctx)


def _key_values(ctx, param, pairs: tuple[str, ...]) -> dict | None:
    """Repeated KEY=VALUE -> {KEY: VALUE}, each VALUE read as JSON where it is one (2, 0.5, true, [1, 2]), else
    as text; None when none is given, so the dataclass default stays in effect."""
    values = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", ctx, param)
        try:
            values[key] = json.loads(text)
        except ValueError:
            values[key] = text
    return values or None


def _option(cls, name: str, help: str, **kwargs):
    """--NAME for field NAME of `cls`: default None (unset), help ending in the dataclass's default."""
    default = default_of(cls, name)
    if kwargs.get("is_flag"):
        return click.option(flag(name), name, default=None, help=help, **kwargs)
    shown = f" [default: {default}]" if default is not None and "[default:" not in help else ""
    return click.option(flag(name), name, default=None, help=help + shown, **kwargs)


# One --split for the commands that read LABELS: the samples of that split where the layout has splits
SPLIT_HELP = (f"The split of LABELS to work on where its layout has splits (a file without: all of it): train and "
              f"run train on it [default: {default_of(TrainConfig, 'split')}], evaluate scores it "
              f"[default: {default_of(EvalConfig, 'split')}].")

OPTIONS = {  # name -> click option; a name means the same thing in every command that has it
    # what defines the features (recorded in the manifest)
    "frames": _option(ExtractConfig, "frames", "Frames sampled per video.", type=int),
    "size": _option(ExtractConfig, "size", "Frames are resized to SIZE x SIZE.", type=int),
    "dtype": _option(ExtractConfig, "dtype", "The type the .npy features are stored in: float16 halves the disk and "
                     "the reads of training; its caption quality is measured in docs/results.md.",
                     type=click.Choice(FEATURE_DTYPES)),
    "backbone": _option(ExtractConfig, "backbone", "; ".join(f"{s.name}: {s.summary}"
                                                             + (f" (vcap[{s.extra}])" if s.extra else "")
                                                             for s in BACKBONES.values()) + ".",
                        type=click.Choice(list(BACKBONES))),
    "weights": _option(ExtractConfig, "weights", "Backbone weights: imagenet (genuine ImageNet weights), none "
                       "(random, seeded), or a state-dict file."),
    # how the networks run
    "device": _option(ExtractConfig, "device", "auto, cpu, cuda or cuda:N (auto and cuda: under torchrun, the "
                      "rank's own GPU)."),
    "precision": _option(ExtractConfig, "precision", "The type the networks compute in. auto: bf16 on GPUs (fp16 "
                         "without bf16; training then scales the loss) and on CPUs with AVX512-BF16/AMX, else fp32.",
                         type=click.Choice(PRECISIONS)),
    "frame_batch": _option(ExtractConfig, "frame_batch", "Frames per backbone pass (several videos share one) "
                           "[default: 256 on a GPU, 32 on the CPU].", type=int),
    "workers": _option(ExtractConfig, "workers", "Decoding processes [default: one per spare core, up to 8].",
                       type=int),
    "decoder": _option(ExtractConfig, "decoder", "auto: the fastest exact decoder here, falling back per video.",
                       type=click.Choice(DECODERS)),
    # training
    "captioner": _option(TrainConfig, "captioner", "; ".join(f"{k}: {v}" for k, v in CAPTIONERS.items()) + ".",
                         type=click.Choice(list(CAPTIONERS))),
    "captioner_options": click.option(
        "--captioner-option", "captioner_options", multiple=True, callback=_key_values, metavar="KEY=VALUE",
        help="A hyperparameter of the captioner's own, repeatable: KEY is a field of its Config "
        "(vcap.captioner.captioners.<captioner>) beyond those every captioner takes; VALUE is read as JSON, else "
        "as text [default: its Config's]."),
    "hidden": _option(TrainConfig, "hidden", "LSTM size.", type=int),
    "embed_dim": _option(TrainConfig, "embed_dim", "Word embedding size.", type=int),
    "dropout": _option(TrainConfig, "dropout", "Dropout probability.", type=float),
    "lr": _option(TrainConfig, "lr", "AdamW learning rate.", type=float),
    "batch_size": _option(TrainConfig, "batch_size", "Training (video, caption) samples a step, across all ranks.",
                          type=int),
    "captions_per_video": _option(TrainConfig, "captions_per_video", "Captions of one video in a batch, which "
                                  "encodes the video once for them (1: every sample a random video).", type=int),
    "epochs": _option(TrainConfig, "epochs", "Training epochs (a resumed run counts the ones done).", type=int),
    "min_count": _option(TrainConfig, "min_count", "Rarer training words become <UNK>.", type=int),
    "max_words": _option(TrainConfig, "max_words", "Words in a caption: training captions are cut to it and "
                         "decoding stops at it (decoding: the model's own by default).", type=int),
    "val_labels": _option(TrainConfig, "val_labels", "Held-out labels file for validation.",
                          type=click.Path(dir_okay=False)),
    "val_fraction": _option(TrainConfig, "val_fraction", "Share of LABELS' videos held out for validation when "
                            "--val-labels is not given.", type=float),
    # labels: which layout, which split, which video file a sample is (docs/datasets.md)
    "labels_format": _option(TrainConfig, "labels_format", "The layout of LABELS (and --val-labels); auto: told by "
                             "the file's structure.", type=click.Choice(FORMATS)),
    "split": _option(TrainConfig, "split", SPLIT_HELP, type=click.Choice(SPLITS)),
    "val_split": _option(TrainConfig, "val_split", "Validation samples: this split of LABELS (or --val-labels) "
                         "where it has one, else a --val-fraction share.", type=click.Choice(SPLITS)),
    "video_pattern": _option(TrainConfig, "video_pattern", "A sample's video file, e.g. \"{video}.mp4\" ({video}: "
                             "the dataset's video name, {id}: the sample's id) [default: the file of that name, "
                             "with any video extension, in any subfolder].", metavar="PATTERN"),
    "seed": _option(TrainConfig, "seed", "Seed of the split, the initialisation and the sample order.", type=int),
    "patience": _option(TrainConfig, "patience", "Stop after this many epochs without a better best.pt; 0 never.",
                        type=int),
    "grad_clip": _option(TrainConfig, "grad_clip", "Gradient norm clip; 0 disables.", type=float),
    "teacher_forcing": _option(TrainConfig, "teacher_forcing", "always | never | inverse-sigmoid:K "
                               "(p(ground truth) = K/(K+exp(step/K))).", metavar="SPEC"),
    "embeddings": _option(TrainConfig, "embeddings", "word2vec/GloVe text file to initialise word embeddings.",
                          type=click.Path(dir_okay=False)),
    "frame_stride": _option(TrainConfig, "frame_stride", "Keep every k-th feature frame (also when captioning).",
                            type=int),
    "label_smoothing": _option(TrainConfig, "label_smoothing", "Cross-entropy label smoothing.", type=float),
    "weight_decay": _option(TrainConfig, "weight_decay", "AdamW decoupled weight decay.", type=float),
    "select_on": _option(TrainConfig, "select_on", "best.pt: lowest validation loss, or highest greedy validation "
                         "BLEU@1.", type=click.Choice(SELECT_ON)),
    "cache_features": _option(TrainConfig, "cache_features", "Hold all features in RAM instead of reading them "
                              "lazily.", is_flag=True),
    "compile": click.option("--compile/--no-compile", "compile", default=None, help=(
        "torch.compile the networks: a one-off compile, then faster passes. The backbone (extract, caption, serve, "
        f"run) compiles by default on the CPU once a job reaches {COMPILE_MIN_FRAMES:,} frames; the training step "
        "(train, run) only with --compile, which pays on GPUs more than on CPUs. Figures: docs/benchmarks.md.")),
    "resume": _option(TrainConfig, "resume", "Continue the run in OUT (its model settings come from last.pt).",
                      is_flag=True),
    "overwrite": _option(TrainConfig, "overwrite", "Replace what OUT already holds (.npy files, a training run) "
                         "instead of keeping it.", is_flag=True),
    # decoding
    "beam": _option(DecodeConfig, "beam", "Beam width (1: greedy, measured best on MSVD).", type=int),
    "no_repeat_ngram": _option(DecodeConfig, "no_repeat_ngram", "Block repeated n-grams; 0 disables.", type=int),
    "length_alpha": _option(DecodeConfig, "length_alpha", "Beam length normalisation (score / length^alpha).",
                            type=float),
    "videos_per_batch": _option(EvalConfig, "videos_per_batch", "Videos captioned together.", type=int),
    "every": _option(CaptionConfig, "every", "Caption consecutive windows of this many seconds, one line each "
                     "(`<file> 00:00:00-00:00:10 <caption>`), or `shots`: one window per shot of the video, cut "
                     "where the picture changes (2-30 s each). Neighbours with the same caption merge.",
                     type=SecondsOrShots(), metavar="SECONDS|shots"),
    "srt": _option(CaptionConfig, "srt", "With --every: write the one video's timed captions to FILE as SubRip, "
                   "whatever FILE's suffix (the srt writer of --output-format).", type=click.Path(dir_okay=False),
                   metavar="FILE"),
    "vtt": _option(CaptionConfig, "vtt", "With --every: write them to FILE as WebVTT, whatever FILE's suffix.",
                   type=click.Path(dir_okay=False), metavar="FILE"),
    "output_dir": _option(CaptionConfig, "output_dir", "Write the results to files in DIR: captions.<format> for "
                          "the run (structured ones with an entry for each failure too), <video stem>.<format> "
                          "per video for subtitles.", type=click.Path(file_okay=False), metavar="DIR"),
    "output_format": _option(CaptionConfig, "output_format", "The formats --output-dir gets, comma-separated: "
                             f"{', '.join(WRITERS)} ({', '.join(n for n, w in WRITERS.items() if w.timed)} need "
                             "--every), or all [default: all that apply].", metavar="FORMATS"),
    "explain": _option(CaptionConfig, "explain", "Write DIR/<file name>.png per video: the frames the model saw "
                       "and its attention over them for each word.", type=click.Path(file_okay=False), metavar="DIR"),
}
FEATURES = ("frames", "size", "backbone", "weights", "dtype")
RUNTIME = ("device", "precision", "frame_batch", "workers", "decoder", "compile")
TRAINING = ("captioner", "captioner_options", "hidden", "embed_dim", "dropout", "lr", "batch_size",
            "captions_per_video", "epochs", "min_count", "max_words", "val_labels", "val_fraction", "labels_format",
            "split", "val_split", "video_pattern", "seed", "patience", "grad_clip", "teacher_forcing", "embeddings",
            "frame_stride", "label_smoothing", "weight_decay", "select_on", "device", "precision", "cache_features",
            "compile", "resume")
DECODING = ("beam", "max_words", "no_repeat_ngram", "length_alpha")


def options(*groups: tuple[str, ...]):
    """Decorate a command with the named options, each once, in order."""
    names = list(dict.fromkeys(name for group in groups for name in group))

    def decorate(command):
        for name in reversed(names):
            command = OPTIONS[name](command)
        return command
    return decorate


def given(values: dict) -> dict:
    """The options the user set: unset ones (None, also an absent flag) leave the dataclass default in effect."""
    return {k: v for k, v in values.items() if v is not None}


def given_with_decode(values: dict) -> tuple[dict, DecodeConfig]:
    """The options the user set, less the decoding ones, which make the command's DecodeConfig."""
    values = given(values)
    return values, DecodeConfig(**{k: values.pop(k) for k in DECODING if k in values})


# ---- extract ---------------------------------------------------------------------------------------------

@main.command()
@click.argument("videos", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@options(FEATURES, RUNTIME, ("overwrite",))
@click.option("--shard", default=None, metavar="I/N", help="Take share I of N (0 <= I < N) of the videos, e.g. "
              "one per job of an array; under torchrun each rank then takes its part of that share.")
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="Extract only the videos LABELS "
              "names; a timed dataset's (ActivityNet, YouCook2) as one OUT/<video>@<start>-<end>.npy per span.")
@options(("labels_format", "video_pattern"))
def extract(videos, out, shard, labels, labels_format, video_pattern, **values) -> None:
    """Turn every video in VIDEOS (a folder, searched recursively, or one file) into OUT/<file name>.npy,
    float32 of shape (frames, feature dim). Finished files are kept: run again to resume."""
    from vcap.extract.folder import extract_folder

    config = ExtractConfig(**given(values), **({"shard": parse_shard(shard)} if shard else {}))
    if labels is None:
        summary = extract_folder(videos, out, config)
    else:
        from vcap.captioner.datasets import read_labels
        from vcap.pipeline.datasets import extract_labelled

        summary, resolved = extract_labelled(videos, out, config, read_labels(labels, labels_format or "auto"),
                                             video_pattern)
        if resolved.missing:
            click.echo(f"vcap: {resolved.report(videos)}", err=True)
    elsewhere = summary.failed_everywhere - len(summary.failed)
    click.echo(f"extract: {summary.done} done, {summary.skipped} already there, {len(summary.failed)} failed"
               + (f" ({elsewhere} more on other ranks)" if elsewhere else "")
               + (f" ({summary.frames_per_s:.1f} frames/s)" if summary.done else ""))
    if summary.failed_everywhere:
        sys.exit(1)


# ---- train / evaluate ------------------------------------------------------------------------------------

def _best_line(result) -> str:
    """The line a training run ends with (`result`: a vcap.captioner.train.TrainResult)."""
    if result.best_rule.startswith("the last epoch"):
        return f"best.pt: {result.best_rule}, epoch {result.epochs_run}: {result.best_checkpoint}"
    return (f"best.pt: epoch {result.best_epoch} of {result.epochs_run} run, {result.best_rule} "
            f"(val loss {result.best_val_loss:.4f}, val BLEU@1 {result.best_val_bleu1:.4f}): {result.best_checkpoint}")


@main.command("train")
@click.argument("feats", type=click.Path(file_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for best.pt, last.pt, history.csv/png and config.json.")
@options(TRAINING, ("overwrite",))
def train_cmd(feats, labels, out, **values) -> None:
    """Train a captioner on cached FEATS and a LABELS file of any layout --labels-format reads (its --split)."""
    from vcap.captioner.train import train

    click.echo(_best_line(train(train_config(**given(values), feats=feats, labels=labels, out=out))))


@main.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("feats", type=click.Path(file_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for predictions.txt/.json and metrics.json [default: eval-<LABELS stem> beside MODEL].")
@options(DECODING, ("videos_per_batch", "device", "labels_format", "video_pattern"))
@_option(EvalConfig, "split", SPLIT_HELP, type=click.Choice(SPLITS))
def evaluate_cmd(model, feats, labels, out, **values) -> None:
    """Caption the videos of LABELS with MODEL and print MLDS BLEU@1 and the COCO metrics; OUT also gets
    coco_results.json ([{"image_id", "caption"}], what COCO tools read)."""
    from vcap.captioner.evaluate import evaluate

    values, decode = given_with_decode(values)
    metrics = evaluate(EvalConfig(model=model, feats=feats, labels=labels, out=out, decode=decode, **values))
    _print_metrics(metrics, f"{metrics['videos']} videos of {labels}"
                   + (f" (split {metrics['split']} where it has splits)" if metrics.get("split") else ""))


def _print_metrics(metrics: dict, scored_on: str) -> None:
    if not metrics:
        click.echo(f"scores: {scored_on}")
        return
    click.echo(f"MLDS BLEU@1: {metrics['MLDS-BLEU@1']:.4f}  (beam {metrics['beam']}, on {scored_on})")
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        if name in metrics:
            click.echo(f"{name}: {metrics[name]:.4f}")
    click.echo(f"predictions: {metrics['out']}/predictions.txt, coco_results.json")


# ---- caption / serve / run -------------------------------------------------------------------------------

MODEL = click.option("--model", envvar="VCAP_MODEL", type=click.Path(),
                     help="A checkpoint from `vcap train` (best.pt) or its run folder, a .safetensors from `vcap "
                     "export`, or an http(s) URL to either, downloaded once and hash-checked [default: $VCAP_MODEL].")

@main.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@MODEL
@options(DECODING, ("weights",), RUNTIME, ("videos_per_batch", "every", "output_dir", "output_format", "srt", "vtt",
                                           "explain"))
@click.option("--json", "as_json", is_flag=True, help="Print the results as the json format of --output-format "
              "(failures included) at the end, instead of a line each.")
def caption(videos, model, as_json, **values) -> None:
    """Caption each video (files or folders): decode, extract features as the model was trained, caption.

    Prints `<file>: <caption>` per video as it is captioned (with --every, `<file> 00:00:00-00:00:10
    <caption>` per window as soon as that window is); progress goes to stderr; unreadable videos get one
    line each on stderr and exit code 1."""
    from vcap.pipeline.caption import caption_videos
    from vcap.pipeline.writers import TXT, get_writer, printable

    values, decode = given_with_decode(values)
    config = CaptionConfig(model=model or "", decode=decode, **values)
    text = TXT()
    on_span = None if as_json else lambda name, span: click.echo(text.span_line(name, span))
    results, failed = [], 0
    for result in caption_videos(videos, config, on_span=on_span, progress=True):
        results.append(result)
        if result.error is not None:
            failed += 1
            click.echo(f"vcap: skipped {printable(result.error)}", err=True)
        elif not as_json and result.spans is None:
            for line in text.lines(result):
                click.echo(line)
    if as_json:
        click.echo(get_writer("json").render(results), nl=False)
    if failed:
        sys.exit(1)


@main.command()
@MODEL
@_option(ServeConfig, "host", "Address to listen on (loopback: this machine only; any other prints a warning).")
@_option(ServeConfig, "port", "Port to listen on.", type=int)
@_option(ServeConfig, "allow_dir", "Folder whose videos POST /caption {\"paths\": [...]} may name [default: none, "
         "uploads only].", type=click.Path(file_okay=False))
@_option(ServeConfig, "max_upload_mb", "Largest request body in MB (413 past it).", type=int)
@_option(ServeConfig, "max_files", "Most videos in one request (413 past it).", type=int)
@options(DECODING, ("weights",), RUNTIME, ("videos_per_batch",))
def serve(model, **values) -> None:
    """Caption videos as a local web service: the model loads once; POST /caption (uploads, or JSON paths
    under --allow-dir), GET / (a page to drop a video on), GET /health, GET /info."""
    from vcap.pipeline.serve import exposure_warning, serve as run_server

    values, decode = given_with_decode(values)
    config = ServeConfig(model=model or "", decode=decode, **values)
    warning = exposure_warning(config)
    if warning:
        click.echo(f"vcap: {warning}", err=True)
    run_server(config)


@main.command()
@click.argument("videos", type=click.Path(exists=True))
@click.argument("labels", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for feats/, model/ and eval/.")
@options(FEATURES, RUNTIME, TRAINING, DECODING, ("overwrite",))
@click.option("--all-videos", is_flag=True, default=None,
              help="Extract every video in VIDEOS, not only those LABELS names.")
@_option(RunConfig, "test_split", "The split of LABELS scored, where its layout has it; otherwise the videos "
         "that chose best.pt are scored.", type=click.Choice(SPLITS))
def run(videos, labels, out, **values) -> None:
    """Extract (resumable), train and evaluate in one command, everything under OUT; the scores are on
    videos held out of training (LABELS' --test-split, else --val-labels, else its validation videos)."""
    from vcap.pipeline.config import run_config
    from vcap.pipeline.run import run_all

    config: RunConfig = run_config(videos, labels, out, **given(values))
    result = run_all(config)
    extracted, metrics = result.extract, result.metrics
    if metrics is None:  # a torchrun rank other than 0: rank 0 reports
        sys.exit(1 if extracted.failed_everywhere else 0)
    click.echo(f"extract: {extracted.done} done, {extracted.skipped} already there, {len(extracted.failed)} failed")
    if result.missing:
        click.echo(f"vcap: {result.missing}", err=True)
    click.echo("labels: " + "; ".join(_split_line(name, counts) for name, counts in result.splits.items()))
    click.echo(_best_line(result.train))
    _print_metrics(metrics, result.scored_on)
    scored = metrics["scored"]
    more = ", ..." if len(scored) > SHOWN_IDS else ""
    click.echo(f"held out ({len(scored)}): {', '.join(scored[:SHOWN_IDS])}{more}")
    if extracted.failed_everywhere:  # the rest was trained and scored, but this run did not do all it was asked
        click.echo(f"vcap: {extracted.failed_everywhere} of the videos could not be extracted (listed in "
                   f"{out}/feats/manifest.json); the model was trained and scored without them", err=True)
        sys.exit(1)


SHOWN_IDS = 10  # held-out ids printed by run; predictions.txt has them all


def _split_line(name: str, counts: tuple[int, int, int]) -> str:
    videos, samples, captions = counts
    return f"{name} {videos:,} videos" + (f", {samples:,} segments" if samples != videos else "") + \
        f", {captions:,} captions"


# ---- export ----------------------------------------------------------------------------------------------

@main.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--name", default=None, help="The file's name before its hash [default: vcap-<captioner>].")
def export_cmd(checkpoint, out_dir, name) -> None:
    """Write CHECKPOINT (a best.pt) as OUT_DIR/<name>-<sha256[:8]>.safetensors, a file anyone can load by
    path or URL (--model), and a README.md model card beside it."""
    from vcap.captioner.export import export_model

    path = export_model(checkpoint, out_dir, name)
    click.echo(f"model: {path}")
    click.echo(f"card: {path.parent / 'README.md'}")


# ---- data ------------------------------------------------------------------------------------------------

@main.command()
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--videos", type=click.Path(file_okay=False), default=None,
              help="A folder of videos: report which of LABELS' videos it lacks.")
@options(("labels_format", "video_pattern"))
def data(labels, videos, labels_format, video_pattern) -> None:
    """Print the layout LABELS has, its videos and captions per split, and (with --videos) the missing videos."""
    from vcap.pipeline.datasets import describe

    summary = describe(labels, labels_format or "auto", videos, video_pattern)
    click.echo(f"format: {summary['format']}" + (" (timed segments: one sample a span)" if summary["timed"] else ""))
    for name, counts in summary["splits"].items():
        click.echo(_split_line(name, counts))
    resolved = summary["resolved"]
    if resolved is not None:
        click.echo(f"videos: {len(resolved.found):,} of {len(resolved.found) + len(resolved.missing):,} in {videos}")
        if resolved.missing:
            click.echo(f"missing: {resolved.report(videos)}")


if __name__ == "__main__":
    main()
