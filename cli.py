"""The `vcap` command line: parses options, builds a config, calls one library function per command."""
from __future__ import annotations

import sys

import click

from vcap.errors import VcapError


class _Group(click.Group):
    """Turn a VcapError anywhere below into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VcapError as exc:
            click.echo(f"vcap: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("vcap: interrupted; finished outputs are kept, run the same command again to resume", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(package_name="vcap")
def main() -> None:
    """Turn raw videos into English captions: extract features, train a captioner, caption videos."""


# ---- extract ---------------------------------------------------------------------------------------------

def feature_options(command):
    """Options shared by every command that turns videos into features (extract, caption, run)."""
    for option in reversed([
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help="auto: bf16/fp16 autocast on GPUs, bf16 on CPUs that support it."),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help="Frames per forward pass [default: 256 on a GPU, 32 on the CPU]."),
        click.option("--workers", type=click.IntRange(0), default=None,
                     help="Decoding processes [default: one per spare core, up to 8]."),
        click.option("--decoder", type=click.Choice(["auto", "pyav", "decord", "opencv"]), default="auto",
                     show_default=True, help="auto: decord, falling back to OpenCV per video."),
    ]):
        command = option(command)
    return command


def _parse_shard(ctx, param, value: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"{value!r}: expected 0 <= I < N")
    return index, count


def extraction_options(command):
    """What defines the features (recorded in the manifest): shared by extract and run."""
    for option in reversed([
        click.option("--frames", type=click.IntRange(1), default=80, show_default=True, help="Frames sampled per video."),
        click.option("--size", type=click.IntRange(32), default=224, show_default=True,
                     help="Frames are resized to SIZE x SIZE."),
        click.option("--backbone", type=click.Choice(["vgg16", "efficientnet-lite0"]), default="vgg16",
                     show_default=True, help="vgg16: fc7, 4096-d; efficientnet-lite0: pooled, 1280-d (vcap[lite])."),
        click.option("--weights", default="imagenet", show_default=True,
                     help="imagenet (genuine ImageNet weights), none (random, seeded), or a state-dict file."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("videos", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@extraction_options
@click.option("--overwrite", is_flag=True, help="Extract again even where OUT already has the .npy.")
@click.option("--shard", callback=_parse_shard, default="0/1", show_default=True, metavar="I/N",
              help="Take share I of N (0 <= I < N) of the videos, e.g. one per job of an array; "
                   "under torchrun each rank then takes its part of that share.")
@feature_options
def extract(videos, out, **options) -> None:
    """Turn every video in VIDEOS (a folder, searched recursively, or one file) into OUT/<file name>.npy,
    float32 of shape (frames, feature dim). Finished files are kept: run again to resume."""
    from vcap.extract.extractor import ExtractConfig, extract_folder

    summary = extract_folder(videos, out, ExtractConfig(**options))
    elsewhere = summary.failed_everywhere - len(summary.failed)
    click.echo(f"extract: {summary.done} done, {summary.skipped} already there, {len(summary.failed)} failed"
               + (f" ({elsewhere} more on other ranks)" if elsewhere else "")
               + (f" ({summary.frames_per_s:.1f} frames/s)" if summary.done else ""))
    if summary.failed_everywhere:
        sys.exit(1)


# ---- train / evaluate ------------------------------------------------------------------------------------

@main.command("train")
@click.argument("feats", type=click.Path(file_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for best.pt, last.pt, history.")
@click.option("--model", "model_name", type=click.Choice(["attention", "s2vt"]), default="attention", show_default=True)
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--embed-dim", type=int, default=300, show_default=True)
@click.option("--dropout", type=float, default=0.35, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--min-count", type=int, default=4, show_default=True, help="Rarer training words become <UNK>.")
@click.option("--max-words", type=int, default=20, show_default=True, help="Truncate captions to this many words.")
@click.option("--val-labels", type=click.Path(dir_okay=False), default=None, help="Held-out labels file.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Videos held out for validation when --val-labels is not given.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--patience", type=int, default=4, show_default=True, help="Early stopping; 0 disables.")
@click.option("--grad-clip", type=float, default=5.0, show_default=True)
@click.option("--teacher-forcing", default="inverse-sigmoid:1000", show_default=True,
              help="always | never | inverse-sigmoid:K (p = K/(K+exp(step/K))).")
@click.option("--embeddings", type=click.Path(dir_okay=False), default=None,
              help="word2vec/GloVe text file to initialise word embeddings.")
@click.option("--frame-stride", type=click.IntRange(min=1), default=4, show_default=True,
              help="Keep every k-th feature frame (also when captioning).")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True, help="AdamW decoupled weight decay.")
@click.option("--select-on", type=click.Choice(["bleu1", "loss"]), default="loss", show_default=True,
              help="best.pt: highest validation BLEU@1 (greedy) or lowest validation loss.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: bf16 autocast where supported, fp16 with loss scaling on GPUs without bf16.")
@click.option("--cache-features", is_flag=True, help="Hold all features in RAM instead of reading them lazily.")
@click.option("--compile", is_flag=True, help="torch.compile each decoder step: faster epochs after a one-off "
              "compile (20-40 s on 2 cores); see the README's figures.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
def train_cmd(feats, labels, out, model_name, **options) -> None:
    """Train a captioner on cached FEATS and an MLDS-format LABELS file."""
    from vcap.captioner.train import TrainConfig, train

    summary = train(TrainConfig(feats=feats, labels=labels, out=out, model=model_name, **options))
    click.echo(f"best val BLEU@1 {summary['best_val_bleu1']:.4f} at epoch {summary['best_epoch']} "
               f"({summary['epochs_run']} epochs run): {summary['best_checkpoint']}")


@main.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("feats", type=click.Path(file_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for predictions.txt/.json and metrics.json [default: eval-<LABELS stem> beside MODEL].")
@click.option("--beam", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--no-repeat-ngram", type=int, default=2, show_default=True, help="Block repeated n-grams; 0 disables.")
@click.option("--length-alpha", type=float, default=0.7, show_default=True, help="Beam length normalisation.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def evaluate_cmd(model, feats, labels, **options) -> None:
    """Caption the videos of LABELS with MODEL and print MLDS BLEU@1 and the COCO metrics."""
    from vcap.captioner.evaluate import evaluate

    metrics = evaluate(model, feats, labels, **options)
    click.echo(f"MLDS BLEU@1: {metrics['MLDS-BLEU@1']:.4f}  ({metrics['videos']} videos, beam {metrics['beam']})")
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        if name in metrics:
            click.echo(f"{name}: {metrics[name]:.4f}")
    click.echo(f"predictions: {metrics['out']}/predictions.txt")


# ---- caption / run ---------------------------------------------------------------------------------------

@main.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_path", envvar="VCAP_MODEL", type=click.Path(dir_okay=False),
              help="A checkpoint from `vcap train` (best.pt) [default: $VCAP_MODEL].")
@click.option("--beam", type=click.IntRange(1), default=1, show_default=True,
              help="Beam width (1: greedy, measured best on MSVD).")
@click.option("--weights", default=None,
              help="Backbone weights file, when the model was trained on features made from one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {video: caption} at the end.")
@feature_options
def caption(videos, model_path, as_json, **options) -> None:
    """Caption each video (files or folders): decode, extract features as the model was trained, caption.

    Prints `<file>: <caption>` per video; unreadable videos get one line each on stderr and exit code 1."""
    import json

    from vcap.pipeline.caption import CaptionConfig, caption_videos

    if not model_path:
        raise VcapError("no model: pass --model PATH (a best.pt from `vcap train`) or set VCAP_MODEL")
    captions, failed = {}, 0
    for path, text, error in caption_videos(videos, CaptionConfig(model=model_path, **options)):
        if error is not None:
            failed += 1
            click.echo(f"vcap: skipped {error}", err=True)
            continue
        captions[str(path)] = text
        if not as_json:
            click.echo(f"{path}: {text}")
    if as_json:
        click.echo(json.dumps(captions, indent=1))
    if failed:
        sys.exit(1)


@main.command()
@click.argument("videos", type=click.Path(exists=True))
@click.argument("labels", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for feats/, model/ and eval/.")
@click.option("--val-labels", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Held-out labels for validation and the final scores [default: a share of LABELS].")
@extraction_options
@click.option("--captioner", type=click.Choice(["attention", "s2vt"]), default="attention", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True)
@click.option("--hidden", type=click.IntRange(1), default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--min-count", type=click.IntRange(1), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--beam", type=click.IntRange(1), default=1, show_default=True)
@feature_options
def run(videos, labels, out, val_labels, captioner, epochs, hidden, lr, min_count, seed, beam, **options) -> None:
    """Extract (resumable), train and evaluate in one command, everything under OUT."""
    from vcap.extract.extractor import ExtractConfig
    from vcap.pipeline.run import RunConfig, run_all

    train = dict(model=captioner, epochs=epochs, hidden=hidden, lr=lr, min_count=min_count, seed=seed,
                 device=options["device"])
    result = run_all(RunConfig(videos=videos, labels=labels, out=out, val_labels=val_labels, beam=beam,
                               extract=ExtractConfig(**options), train=train))
    extracted, metrics = result["extract"], result["metrics"]
    if metrics is None:  # a torchrun rank other than 0: rank 0 reports
        return
    click.echo(f"extract: {extracted.done} done, {extracted.skipped} already there, {len(extracted.failed)} failed")
    click.echo(f"model: {result['train']['best_checkpoint']}")
    click.echo(" ".join(f"{k} {metrics[k]:.3f}" for k in ("MLDS-BLEU@1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
                        if k in metrics) + f" on {metrics['videos']} videos: {metrics['out']}")


if __name__ == "__main__":
    main()
