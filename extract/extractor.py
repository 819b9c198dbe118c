"""Videos -> features in memory (`FeatureExtractor`): decode in DataLoader workers while the backbone runs, and
batch the frames of several videos per forward pass. `vcap extract`'s files: extract/folder.py."""
from __future__ import annotations

import copy
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vcap.extract.backbone import FrameEncoder, load_backbone, weights_id
from vcap.extract.config import BACKBONES, COMPILE_MIN_FRAMES, ExtractConfig
from vcap.extract.decoders import NAMES as DECODER_NAMES, decoder
from vcap.extract.sampler import read_frames, sample_indices
from vcap.device import compile_quietly, dtype_of, resolve_device, resolve_precision
from vcap.errors import VcapError, library_text
from vcap.stages import StageTimes, timed


Span = tuple[float, float]  # seconds within a video: a timed sample's part of it


def span_plan(path: Path, span: Span, n: int):
    """A `read_frames` plan taking n frames of the [start, end) seconds of a video as `read_frames` takes them
    of a whole one, so a span's features are those of the video cut to it. A zero-length span is its frame."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    if not fps > 0:
        raise VcapError(f"{path}: its header gives no frame rate, so a time span of it cannot be found")

    def plan(total: int) -> np.ndarray:
        first = min(round(span[0] * fps), total - 1)
        last = min(max(round(span[1] * fps), first + 1), total)
        return first + sample_indices(last - first, n)
    return plan


class _DecodedVideos(Dataset):
    """Item i: (i, frames uint8 (N, S, S, 3) or None, error message or None, seconds decoding took). Runs in
    worker processes. With `spans`, item i holds the frames of spans[i] of its video (None: the whole video)."""

    def __init__(self, paths: Sequence[Path], frames: int, size: int, decoder: str,
                 spans: Sequence[Span | None] | None = None):
        self.paths, self.frames, self.size, self.decoder = list(paths), frames, size, decoder
        self.spans = list(spans) if spans is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        start = time.perf_counter()
        frames, error = self._read(i)
        return i, frames, error, time.perf_counter() - start

    def _read(self, i: int) -> tuple[torch.Tensor | None, str | None]:
        try:
            plan = span_plan(self.paths[i], self.spans[i], self.frames) if self.spans[i] is not None else None
            return torch.from_numpy(read_frames(self.paths[i], self.frames, self.size, self.decoder, plan=plan)), None
        except VcapError as exc:
            return None, str(exc)
        except Exception as exc:  # a decoder bug on one odd file must not end a long run
            return None, f"{self.paths[i]}: cannot decode ({type(exc).__name__}: {library_text(exc, 160)})"


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the workers already run in parallel; nested thread pools only fight


class FeatureExtractor:
    """A loaded backbone on a device, turning lists of videos into (N, D) float32 arrays."""

    def __init__(self, config: ExtractConfig, encoder: FrameEncoder | None = None, times: StageTimes | None = None):
        self.config = config
        self.times = times or StageTimes()  # decode_wait, decode and backbone add up here
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        # The network itself is cast to bf16/fp16 rather than run under autocast, which would cast the
        # 120M fc6/fc7 weights again on every batch (measured ~10% slower on VGG16 here).
        dtype = dtype_of(self.precision)
        encoder = copy.deepcopy(encoder) if encoder is not None else load_backbone(config.backbone, config.weights)
        self.encoder = encoder.to(self.device, dtype, memory_format=torch.channels_last).eval()
        cuda = self.device.type == "cuda"
        self.frame_batch = config.frame_batch or (256 if cuda else 32)
        spare = max(1, (os.cpu_count() or 2) - 1)
        self.workers = config.workers if config.workers is not None else min(spare, 8)
        if self.workers:  # the decoders' libraries, imported here once, come with every forked worker, which would
            # otherwise import them itself: a server forks its workers anew for every round of requests
            for name in DECODER_NAMES if config.decoder == "auto" else [config.decoder]:
                decoder(name)
        self.frames_done = 0
        self._compiled = None  # made on the first full pass of a job that compiles; kept for later jobs
        self._compile_failed = False

    def compiles(self, frames_ahead: int) -> bool:
        """Whether a job of `frames_ahead` frames runs its full passes through the compiled network. Unset,
        on the CPU: once this extractor's frames, done and ahead, reach COMPILE_MIN_FRAMES, so that many
        small jobs of one extractor (a long `--every` video in passes, a server's requests) compile too."""
        if self._compile_failed:
            return False
        if self.config.compile is not None:
            return self.config.compile
        return self.device.type == "cpu" and self.frames_done + frames_ahead >= COMPILE_MIN_FRAMES

    def _network(self, batch: torch.Tensor, compiled: bool) -> torch.Tensor:
        """The backbone on one pass -> (B, D) float32 on the CPU, its seconds added to `times.backbone`."""
        began = time.perf_counter()
        with torch.inference_mode():
            out = self._forward(batch, compiled).cpu()
        self.times.backbone += time.perf_counter() - began
        return out

    def _forward(self, batch: torch.Tensor, compiled: bool) -> torch.Tensor:
        """Full passes of a compiling job go through one compiled graph of a fixed shape (freezing: weights
        prepacked for oneDNN, ReLUs and pooling fused in); a shorter last pass runs uncompiled rather than
        compiling a second graph."""
        if compiled and len(batch) == self.frame_batch and not self._compile_failed:
            if self._compiled is None:
                self._compiled = compile_quietly(self.encoder, dynamic=False, options={"freezing": True})
            try:
                return self._compiled(batch)
            except Exception as exc:  # no C++ compiler, an unsupported op: the uncompiled network still works
                print(f"vcap: warning: torch.compile failed ({type(exc).__name__}: {library_text(exc, 120)}); "
                      f"running the backbone uncompiled", file=sys.stderr)
                self._compile_failed = True
        return self.encoder(batch)

    def settings(self) -> dict:
        """What makes two feature caches comparable; recorded in the manifest and in checkpoints."""
        return feature_settings(self.config)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 frames already decoded -> (N, D) float32, in passes of frame_batch."""
        parts, compiled = [], self.compiles(len(frames))
        for start in range(0, len(frames), self.frame_batch):
            batch = torch.from_numpy(frames[start : start + self.frame_batch]).to(self.device)
            parts.append(self._network(batch, compiled))
        self.frames_done += len(frames)
        return torch.cat(parts).numpy()

    def features(self, paths: Sequence[Path]) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
        """Yield (path, features (N, D) float32, None) or (path, None, error) per video, in input order
        for the successes. Frames of several videos share a forward pass; a leftover tail waits for
        the next video so that every pass but the last is full."""
        for i, feats, error in self.indexed_features(paths):
            yield paths[i], feats, error

    def indexed_features(self, paths: Sequence[Path], spans: Sequence[Span | None] | None = None
                         ) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """`features`, naming each result by its index in `paths`; with `spans`, result i is of spans[i] of
        paths[i] (None: the whole video), so one video may come several times."""
        workers = self.workers if len(paths) > 1 else 0  # one video: nothing to overlap, a process only costs
        loader = DataLoader(
            _DecodedVideos(paths, self.config.frames, self.config.size, self.config.decoder, spans),
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=4 if workers else None,
        )
        queue: deque[tuple[int, torch.Tensor]] = deque()  # (video index, its frames not yet encoded)
        done: dict[int, list[torch.Tensor]] = {}
        queued, compiled = 0, self.compiles(len(paths) * self.config.frames)
        for i, frames, error, seconds in timed(loader, self.times, "decode_wait"):
            self.times.decode += seconds
            if error is not None:
                yield i, None, error
                continue
            queue.append((i, frames))
            done[i] = []
            queued += len(frames)
            while queued >= self.frame_batch:
                queued -= self._encode_batch(queue, done, self.frame_batch, compiled)
                yield from self._finished(queue, done)
        while queued:
            queued -= self._encode_batch(queue, done, queued, compiled)
            yield from self._finished(queue, done)

    def _encode_batch(self, queue: deque, done: dict, size: int, compiled: bool) -> int:
        """Encode the first `size` queued frames, spread over as many videos as they take."""
        parts, owners, taken = [], [], 0
        for i, frames in queue:
            start = sum(len(f) for f in done[i])
            chunk = frames[start : start + size - taken]
            parts.append(chunk)
            owners.append((i, len(chunk)))
            taken += len(chunk)
            if taken == size:
                break
        # Each part is a slice of a pinned tensor: copy the parts and join them on the device, since
        # joining first would make a pageable copy whose transfer blocks.
        batch = torch.cat([part.to(self.device, non_blocking=True) for part in parts])
        out = self._network(batch, compiled)  # (size, D) float32
        for (i, n), feats in zip(owners, out.split([n for _, n in owners])):
            done[i].append(feats)
        self.frames_done += size
        return size

    def _finished(self, queue: deque, done: dict):
        while queue and sum(len(f) for f in done[queue[0][0]]) == len(queue[0][1]):
            i, _ = queue.popleft()
            yield i, torch.cat(done.pop(i)).numpy(), None


def feature_settings(config: ExtractConfig) -> dict:
    """What makes two feature caches the same. Not the precision: bf16 and fp32 features of one frame agree
    to cosine > 0.999 and caption alike (bench/precision.py), so machines of different hardware may share a folder;
    each run's precision is recorded in the manifest instead."""
    return {
        "backbone": config.backbone,
        "feature_dim": BACKBONES[config.backbone].feature_dim,
        "weights": weights_id(config.weights),
        "frames": config.frames,
        "size": config.size,
        "sampling": "uniform-segment-centres",
    }
