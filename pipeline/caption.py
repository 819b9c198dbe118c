"""Videos -> captions in one pass: the sampler and backbone exactly as the model's features were made,
then the captioner; both models loaded once, videos decoded in workers and captioned in batches."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import torch

from vcap.captioner.checkpoint import load_model
from vcap.captioner.decode import caption_features
from vcap.extract.backbone import weights_id
from vcap.extract.config import ExtractConfig
from vcap.extract.extractor import FeatureExtractor, find_videos
from vcap.extract.sampler import read_windows
from vcap.pipeline.config import CaptionConfig
from vcap.files import ensure_folder
from vcap.pipeline.explain import explain_video, explain_window
from vcap.pipeline.subtitles import write_subtitles
from vcap.device import resolve_device
from vcap.errors import VcapError


def extract_config_for(info: dict, config: CaptionConfig, model_path: str) -> ExtractConfig:
    """The ExtractConfig that reproduces the model's training features, or a VcapError saying why not."""
    settings = info.get("feature_config")
    if not settings:
        raise VcapError(f"{model_path}: trained on features without a vcap manifest, so how they were made is "
                        f"unknown; caption needs a model trained on `vcap extract` features")
    if not (all(isinstance(settings.get(k), str) for k in ("backbone", "weights"))
            and all(isinstance(settings.get(k), int) for k in ("feature_dim", "frames", "size"))):
        raise VcapError(f"{model_path}: its feature_config {settings} lacks how the features were made "
                        f"(backbone, weights, feature_dim, frames, size); train on `vcap extract` features")
    recorded = settings["weights"]
    if recorded.startswith("file:"):
        if config.weights is None:
            raise VcapError(f"{model_path}: its features came from the backbone weights file "
                            f"{recorded.split(':')[1]}; pass it with --weights PATH")
        weights = config.weights
    else:
        weights = config.weights or recorded
    if weights_id(weights) != recorded:
        raise VcapError(f"{model_path}: trained on features from weights {recorded!r}, "
                        f"but --weights gives {weights_id(weights)!r}")
    if settings["feature_dim"] != info["feature_dim"]:
        raise VcapError(f"{model_path}: feature size {info['feature_dim']} does not match its manifest's "
                        f"{settings['feature_dim']}")
    return ExtractConfig(frames=settings["frames"], size=settings["size"], backbone=settings["backbone"],
                         weights=weights, device=config.device, precision=config.precision,
                         frame_batch=config.frame_batch, workers=config.workers, decoder=config.decoder,
                         compile=config.compile)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given (a missing one still fails later, on its own line), folders searched for videos."""
    paths: list[Path] = []
    for item in inputs:
        paths.extend(find_videos(item) if Path(item).is_dir() else [Path(item)])
    return paths


class VideoCaptioner:
    """The captioner and its backbone, loaded once, captioning any number of videos (caption, serve)."""

    def __init__(self, config: CaptionConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.model, self.vocab, self.info = load_model(config.model, self.device)
        self.extractor = FeatureExtractor(extract_config_for(self.info, config, config.model))
        self.explain = ensure_folder(Path(config.explain)) if config.explain else None  # fails now, not later

    def caption(self, paths: Sequence[Path], explain: Path | None = None) -> Iterator[tuple[Path, str | None, str | None]]:
        """Yield (video, caption, None) or (video, None, error) per video; decoded in workers, captioned in
        batches of `videos_per_batch`. `explain` (default: config.explain) gets one PNG per video."""
        explain = explain or self.explain
        pending: list[tuple[Path, torch.Tensor]] = []
        for path, feats, error in self.extractor.features(list(paths)):
            if error is not None:
                yield path, None, error
                continue
            pending.append((path, torch.from_numpy(feats)))
            if len(pending) == self.config.videos_per_batch:
                yield from self._caption(pending, explain)
                pending = []
        yield from self._caption(pending, explain)

    def _caption(self, pending: list[tuple[Path, torch.Tensor]], explain: Path | None):
        if not pending:
            return
        feats = torch.stack([f for _, f in pending]).to(self.device)  # (B, T, D)
        captions = caption_features(self.model, self.vocab, feats, self.config.decode, self.info["max_words"])
        for (path, video_feats), caption in zip(pending, captions):
            if explain:
                explain_video(path, explain, self.model, self.vocab, video_feats.to(self.device), caption,
                              self.info["feature_config"], self.config.decoder)
            yield path, caption, None


    def caption_windows(self, path: Path, every: float) -> list[tuple[float, float, str]]:
        """Timed captions: (start, end, caption) per consecutive `every`-second window, each window sampled
        with the model's frame count and captioned in batches; neighbours with the same caption merge.
        With config.explain, one picture per window."""
        settings = self.info["feature_config"]
        spans: list[tuple[float, float, str]] = []
        for taken, frames in read_windows(path, settings["frames"], every, settings["size"], self.config.decoder):
            feats = self.extractor.encode(frames.reshape(-1, *frames.shape[2:]))  # (windows * n, D)
            feats = torch.from_numpy(feats).view(len(taken), frames.shape[1], -1)
            for start in range(0, len(taken), self.config.videos_per_batch):
                chunk = feats[start : start + self.config.videos_per_batch].to(self.device)
                captions = caption_features(self.model, self.vocab, chunk, self.config.decode, self.info["max_words"])
                spans.extend((t0, t1, c) for (t0, t1), c in zip(taken[start:], captions))
                if self.explain:
                    for i, caption in enumerate(captions):
                        (t0, t1), window = taken[start + i], start + i
                        explain_window(path, self.explain, t0, t1, self.model, self.vocab, chunk[i], caption,
                                       frames[window])
        return merge_spans(spans)


def merge_spans(spans: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Consecutive windows with the same caption become one span."""
    merged: list[tuple[float, float, str]] = []
    for start, end, caption in spans:
        if merged and merged[-1][2] == caption:
            merged[-1] = (merged[-1][0], end, caption)
        else:
            merged.append((start, end, caption))
    return merged


def caption_videos(inputs: Sequence[str | os.PathLike], config: CaptionConfig) -> Iterator[tuple[Path, str | None, str | None]]:
    """`vcap caption`: yield (video, caption, None) or (video, None, error) for each input file or folder."""
    paths = expand_inputs(inputs)
    yield from VideoCaptioner(config).caption(paths)


def caption_timed(inputs: Sequence[str | os.PathLike], config: CaptionConfig) -> Iterator[tuple[Path, list | None, str | None]]:
    """`vcap caption --every S`: yield (video, [(start, end, caption), ...], None) or (video, None, error);
    with config.srt / config.vtt (one video), also write its subtitles."""
    paths = expand_inputs(inputs)
    if (config.srt or config.vtt) and len(paths) != 1:
        raise VcapError(f"--srt and --vtt write the subtitles of one video; {len(paths)} were given")
    captioner = VideoCaptioner(config)
    for path in paths:
        try:
            spans = captioner.caption_windows(path, config.every)
        except VcapError as exc:
            yield path, None, str(exc)
            continue
        for target in (config.srt, config.vtt):
            if target:
                write_subtitles(target, spans)
        yield path, spans, None
