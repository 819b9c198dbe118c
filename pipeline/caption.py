"""Videos -> captions in one pass: the sampler and backbone exactly as the model's features were made,
then the captioner; both models loaded once, videos decoded in workers and captioned in batches."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from vcap.captioner.checkpoint import load_model
from vcap.captioner.decode import caption_in_batches
from vcap.device import resolve_device
from vcap.errors import VcapError
from vcap.extract.backbone import weights_id
from vcap.extract.config import ExtractConfig
from vcap.extract.extractor import FeatureExtractor
from vcap.extract.folder import find_videos
from vcap.extract.sampler import read_windows
from vcap.files import ensure_folder
from vcap.pipeline.config import CaptionConfig
from vcap.pipeline.explain import explain_video, explain_window
from vcap.pipeline.progress import Progress
from vcap.pipeline.results import Picture, Span, VideoResult, check_unique, merge_spans
from vcap.pipeline.writers import Outputs, parse_formats
from vcap.stages import timed


MAX_PASS_FRAMES = 640  # frames of windows through the backbone a pass, once the first lines are out


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
    """Files as given (a missing one still fails later, on its own line), folders searched for videos; two
    videos may share a file name (camera folders do), since captioning keys nothing by it."""
    paths: list[Path] = []
    for item in inputs:
        if "://" in str(item):
            raise VcapError(f"{item}: a URL; vcap captions video files and folders of them on this machine: "
                            f"download it first (e.g. curl -LO URL) and pass the file")
        paths.extend(find_videos(item, unique_ids=False) if Path(item).is_dir() else [Path(item)])
    return paths


def model_file(given: str) -> str:
    """A checkpoint file as given, or the best.pt inside a run folder from `vcap train`."""
    if Path(given).is_dir():
        best = Path(given) / "best.pt"
        if not best.is_file():
            raise VcapError(f"{given}: a folder without best.pt; pass a checkpoint from `vcap train`")
        return str(best)
    return given


class VideoCaptioner:
    """The captioner and its backbone, loaded once, captioning any number of videos (caption, serve, the API)."""

    def __init__(self, config: CaptionConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.model, self.vocab, self.info = load_model(model_file(config.model), self.device)
        self.extractor = FeatureExtractor(extract_config_for(self.info, config, config.model))
        self.times = self.extractor.times  # seconds per stage, the captioner's added here (serve's /health)
        self.explain = ensure_folder(Path(config.explain)) if config.explain else None  # fails now, not later

    def caption_each(self, paths: Sequence[Path], names: Sequence[str] | None = None, every: float | None = None,
                     explain: Path | None = None, on_span: Callable[[str, Span], None] | None = None,
                     progress: bool = False) -> Iterator[VideoResult]:
        """The one captioning path: a VideoResult per video, in input order, each as soon as it is made.

        Whole videos are decoded in workers and captioned `videos_per_batch` at a time; with `every`, each
        video is cut into windows of that many seconds, each window captioned as a whole video would be and
        handed to `on_span(name, span)` as soon as it is. `explain` (default: config.explain) gets a picture
        per video or window. `names` (default: the paths) are what results and their errors call the videos."""
        paths = list(paths)
        names = list(names) if names is not None else [str(p) for p in paths]
        explain = ensure_folder(explain) if explain else self.explain
        if explain:
            check_unique(paths, "--explain")
        if every is None:
            bar = Progress("captioning", "videos", len(paths), enabled=progress)
            for result in self._whole(paths, names, explain):
                bar.update()
                yield result
            bar.close()
        else:
            for path, name in zip(paths, names):
                yield self._timed(path, name, every, explain, on_span, progress)

    def _whole(self, paths: list[Path], names: list[str], explain: Path | None) -> Iterator[VideoResult]:
        ready: dict[int, VideoResult] = {}  # made, waiting for the videos before it
        pending: list[tuple[int, torch.Tensor]] = []  # features waiting for a full batch
        released = 0

        def release():
            nonlocal released
            while released in ready:
                yield ready.pop(released)
                released += 1

        def caption_pending():
            for indices, captions in timed(caption_in_batches(
                    self.model, self.vocab, lambda idx: torch.stack([pending[i][1] for i in idx]),
                    range(len(pending)), self.config.videos_per_batch, self.config.decode, self.info["max_words"],
                    self.device), self.times, "captioner"):
                for i, caption in zip(indices, captions):
                    k, feats = pending[i]
                    pictures = [Picture(explain_video(paths[k], explain, self.model, self.vocab, feats.to(self.device),
                                                      caption, self.info["feature_config"], self.config.decoder,
                                                      Path(names[k]).name))] if explain else []
                    ready[k] = VideoResult(paths[k], names[k], caption=caption, explain=pictures)
            pending.clear()

        for k, feats, error in self.extractor.indexed_features(paths):  # by index: two paths may be one file
            if error is not None:
                ready[k] = failed(paths[k], names[k], error)
            else:
                pending.append((k, torch.from_numpy(feats)))
                if len(pending) == self.config.videos_per_batch:
                    caption_pending()
            yield from release()
        caption_pending()
        yield from release()

    def _passes(self, path: Path, n: int, every: float, size: int) -> Iterator[tuple[list, np.ndarray]]:
        """read_windows' windows in passes that grow from four backbone batches to MAX_PASS_FRAMES: the
        first lines come out soon after the first windows are decoded, later passes do fewer, larger steps."""
        target, taken, frames = 4 * self.extractor.frame_batch, [], []
        windows = read_windows(path, n, every, size, self.config.decoder, frames_per_pass=n)
        for spans, window in timed(windows, self.times, "decode_wait"):
            taken += spans
            frames.append(window)
            if len(taken) * n >= target:
                yield taken, np.concatenate(frames)
                target, taken, frames = max(target, MAX_PASS_FRAMES), [], []
        if taken:
            yield taken, np.concatenate(frames)

    def _timed(self, path: Path, name: str, every: float, explain: Path | None,
               on_span: Callable[[str, Span], None] | None, progress: bool) -> VideoResult:
        settings = self.info["feature_config"]
        windows: list[Span] = []
        pictures: list[Picture] = []
        bar = Progress(Path(name).name, "windows", enabled=progress)
        try:
            for taken, frames in self._passes(path, settings["frames"], every, settings["size"]):
                for span, picture in self._caption_windows(path, name, taken, frames, explain):
                    windows.append(span)
                    pictures += [picture] if picture else []
                    if on_span is not None:
                        on_span(name, span)
                    bar.update()
        except VcapError as exc:
            return failed(path, name, str(exc))
        finally:
            bar.close()
        return VideoResult(path, name, spans=merge_spans(windows), explain=pictures)

    def _caption_windows(self, path: Path, name: str, taken: list[tuple[float, float]], frames: np.ndarray,
                         explain: Path | None) -> Iterator[tuple[Span, Picture | None]]:
        """(span, its picture or None) for each window of one pass: frames (windows, n, S, S, 3)."""
        feats = self.extractor.encode(frames.reshape(-1, *frames.shape[2:]))  # (windows * n, D)
        feats = torch.from_numpy(feats).view(len(taken), frames.shape[1], -1)
        for indices, captions in timed(caption_in_batches(
                self.model, self.vocab, lambda idx: feats[idx], range(len(taken)), self.config.videos_per_batch,
                self.config.decode, self.info["max_words"], self.device), self.times, "captioner"):
            for i, caption in zip(indices, captions):
                start, end = taken[i]
                picture = None
                if explain:
                    picture = Picture(explain_window(path, explain, start, end, self.model, self.vocab,
                                                     feats[i].to(self.device), caption, frames[i],
                                                     Path(name).name), start, end)
                yield (start, end, caption), picture


def failed(path: Path, name: str, error: str) -> VideoResult:
    """A video that could not be captioned; its error calls it by the name the user knows."""
    return VideoResult(path, name, error=error.replace(str(path), name) if name != str(path) else error)


def caption_videos(inputs: Sequence[str | os.PathLike], config: CaptionConfig,
                   on_span: Callable[[str, Span], None] | None = None, progress: bool = False) -> Iterator[VideoResult]:
    """`vcap caption`: a VideoResult per video of the input files and folders, whole or in windows of
    config.every seconds, each as soon as it is made; the files config asks for (--output-dir, --srt,
    --vtt) are written per video as it comes and for the run at the end."""
    paths = expand_inputs(inputs)
    outputs = Outputs(paths, config.output_dir, parse_formats(config.output_format, config.every is not None),
                      {"srt": config.srt, "vtt": config.vtt})
    for result in VideoCaptioner(config).caption_each(paths, every=config.every, on_span=on_span, progress=progress):
        outputs.add(result)
        yield result
    outputs.close()
