"""The Python API, two lines a user types from memory:

    model = vcap.load("best.pt")          # a checkpoint, the folder `vcap train` wrote, or a URL
    model.caption("clip.mp4")             # -> "a man is playing a guitar"

The CLI's `vcap caption` goes through the same VideoCaptioner.caption_each, so the two never drift."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from vcap.errors import VcapError
from vcap.pipeline.caption import VideoCaptioner, expand_inputs
from vcap.pipeline.config import CaptionConfig
from vcap.pipeline.results import Span, VideoResult


class Model:
    """A loaded captioner and its backbone; caption as many videos as you like with it."""

    def __init__(self, captioner: VideoCaptioner):
        self.captioner = captioner

    def caption(self, videos: str | os.PathLike | Sequence[str | os.PathLike], every: float | None = None,
                explain: str | os.PathLike | None = None) -> str | list[Span] | list[VideoResult]:
        """One video file -> its caption (with `every`: its [(start, end, caption)] spans), or a VcapError
        saying why not. A list of files or folders -> a VideoResult per video, failures included
        (`result.error`). `every`: caption windows of this many seconds; `explain`: a folder for pictures
        of what the model looked at."""
        one = isinstance(videos, (str, os.PathLike)) and not Path(videos).is_dir()
        paths = expand_inputs([videos] if isinstance(videos, (str, os.PathLike)) else list(videos))
        results = list(self.captioner.caption_each(paths, every=every, explain=Path(explain) if explain else None))
        if not one:
            return results
        (result,) = results
        if result.error is not None:
            raise VcapError(result.error)
        return result.caption if every is None else result.spans

    def __repr__(self) -> str:
        info = self.captioner.info
        return f"vcap.Model({self.captioner.config.model!r}, {info['model']} captioner on {self.captioner.device})"


def load(model: str | os.PathLike, device: str = CaptionConfig.device, **options) -> Model:
    """Load a captioner once: a best.pt, its run folder, or a URL; `options` are `vcap caption`'s
    (beam=3, workers=0, weights=..., videos_per_batch=...), checked as the CLI checks them."""
    from vcap.captioner.config import DecodeConfig
    from vcap.config import pick

    decode = DecodeConfig(**pick(options, DecodeConfig))
    rest = {k: v for k, v in options.items() if k not in pick(options, DecodeConfig)}
    return Model(VideoCaptioner(CaptionConfig(model=str(model), device=device, decode=decode, **rest)))
