"""The `vcap` command line: parses options, builds a config, calls one library function per command."""
from __future__ import annotations

import sys

import click

from vcap_shared import VcapError


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
        click.option("--decoder", type=click.Choice(["auto", "decord", "opencv"]), default="auto",
                     show_default=True, help="auto: decord, falling back to OpenCV per video."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("videos", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--frames", type=click.IntRange(1), default=80, show_default=True, help="Frames sampled per video.")
@click.option("--size", type=click.IntRange(32), default=224, show_default=True, help="Frames are resized to SIZE x SIZE.")
@click.option("--backbone", default="vgg16", show_default=True, help="Feature network (vgg16: fc7, 4096-d).")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (torchvision download/cache), none (random, seeded), or a state-dict file.")
@click.option("--overwrite", is_flag=True, help="Extract again even where OUT already has the .npy.")
@feature_options
def extract(videos, out, **options) -> None:
    """Turn every video in VIDEOS (a folder, searched recursively, or one file) into OUT/<file name>.npy,
    float32 of shape (frames, feature dim). Finished files are kept: run again to resume."""
    from extract.extractor import ExtractConfig, extract_folder

    summary = extract_folder(videos, out, ExtractConfig(**options))
    click.echo(f"extract: {summary.done} done, {summary.skipped} already there, {len(summary.failed)} failed"
               + (f" ({summary.frames_per_s:.1f} frames/s)" if summary.done else ""))
    if summary.failed:
        sys.exit(1)


# ---- train / evaluate ------------------------------------------------------------------------------------

# ---- caption / run ---------------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
