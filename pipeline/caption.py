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
from vcap.pipeline.config import CaptionConfig
from vcap.files import ensure_folder
from vcap.pipeline.explain import explain_video
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
                         frame_batch=config.frame_batch, workers=config.workers, decoder=config.decoder)


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
        if config.explain:
            ensure_folder(Path(config.explain))  # fails now, not after the first video

    def caption(self, paths: Sequence[Path]) -> Iterator[tuple[Path, str | None, str | None]]:
        """Yield (video, caption, None) or (video, None, error) per video; decoded in workers, captioned in
        batches of `videos_per_batch`."""
        pending: list[tuple[Path, torch.Tensor]] = []
        for path, feats, error in self.extractor.features(list(paths)):
            if error is not None:
                yield path, None, error
                continue
            pending.append((path, torch.from_numpy(feats)))
            if len(pending) == self.config.videos_per_batch:
                yield from self._caption(pending)
                pending = []
        yield from self._caption(pending)

    def _caption(self, pending: list[tuple[Path, torch.Tensor]]):
        if not pending:
            return
        feats = torch.stack([f for _, f in pending]).to(self.device)  # (B, T, D)
        captions = caption_features(self.model, self.vocab, feats, self.config.decode, self.info["max_words"])
        for (path, video_feats), caption in zip(pending, captions):
            if self.config.explain:
                explain_video(path, Path(self.config.explain), self.model, self.vocab, video_feats.to(self.device),
                              caption, self.info["feature_config"], self.config.decoder)
            yield path, caption, None


def caption_videos(inputs: Sequence[str | os.PathLike], config: CaptionConfig) -> Iterator[tuple[Path, str | None, str | None]]:
    """`vcap caption`: yield (video, caption, None) or (video, None, error) for each input file or folder."""
    paths = expand_inputs(inputs)
    yield from VideoCaptioner(config).caption(paths)
