"""Videos -> per-video feature caches: decode in DataLoader workers while the backbone runs, batch the
frames of several videos per forward pass, write each `<video file name>.npy` atomically, resume."""
from __future__ import annotations

import copy
import os
import sys
import zlib
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vcap.extract.backbone import FrameEncoder, load_backbone, weights_id
from vcap.extract.config import BACKBONES, COMPILE_MIN_FRAMES, FEATURE_DTYPES, ExtractConfig
from vcap.extract.manifest import check_settings, claim_folder, record_results
from vcap.extract.sampler import VIDEO_EXTENSIONS, read_frames, sample_indices
from vcap.device import compile_quietly, dtype_of, resolve_device, resolve_precision
from vcap.distributed import my_share, patient_group, sum_over_ranks
from vcap.errors import VcapError, library_text
from vcap.files import atomic_write, ensure_folder

@dataclass
class ExtractSummary:
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    frames_per_s: float = 0.0
    failed_everywhere: int = 0  # failures of all torchrun ranks together


def in_share(video: str, share: tuple[int, int]) -> bool:
    """A hash of the id, not a position in the list: shares stay disjoint and stable on every machine
    even if their folder listings differ in order or a video is added."""
    return zlib.crc32(video.encode()) % share[1] == share[0]


def video_id(path: Path) -> str:
    """MSVD/MLDS naming: the file name with its extension (abc_5_15.avi -> features abc_5_15.avi.npy)."""
    return path.name


def find_videos(source: str | os.PathLike, unique_ids: bool = True) -> list[Path]:
    """One file, or every video below a folder (recursively, sorted); ids must be unique where a file is
    written per id (extract), not where nothing is (caption: `unique_ids=False`)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise VcapError(f"{source}: no such file or folder")
    videos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise VcapError(f"{source}: no videos found (looked for {', '.join(VIDEO_EXTENSIONS)})")
    seen: dict[str, Path] = {}
    for path in videos if unique_ids else ():
        if video_id(path) in seen:
            raise VcapError(f"{source}: two videos share the id {video_id(path)!r}: {seen[video_id(path)]} and {path}")
        seen[video_id(path)] = path
    return videos


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
    """Item i: (i, frames uint8 (N, S, S, 3) or None, error message or None). Runs in worker processes.
    With `spans`, item i holds the frames of spans[i] of its video (None: the whole video)."""

    def __init__(self, paths: Sequence[Path], frames: int, size: int, decoder: str,
                 spans: Sequence[Span | None] | None = None):
        self.paths, self.frames, self.size, self.decoder = list(paths), frames, size, decoder
        self.spans = list(spans) if spans is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            plan = span_plan(self.paths[i], self.spans[i], self.frames) if self.spans[i] is not None else None
            frames = read_frames(self.paths[i], self.frames, self.size, self.decoder, plan=plan)
            return i, torch.from_numpy(frames), None
        except VcapError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a decoder bug on one odd file must not end a long run
            return i, None, f"{self.paths[i]}: cannot decode ({type(exc).__name__}: {library_text(exc, 160)})"


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the workers already run in parallel; nested thread pools only fight


class FeatureExtractor:
    """A loaded backbone on a device, turning lists of videos into (N, D) float32 arrays."""

    def __init__(self, config: ExtractConfig, encoder: FrameEncoder | None = None):
        self.config = config
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
        """The backbone on one pass. Full passes of a compiling job go through one compiled graph of a fixed
        shape (freezing: weights prepacked for oneDNN, ReLUs and pooling fused in); a shorter last pass runs
        uncompiled rather than compiling a second graph."""
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
        with torch.inference_mode():
            for start in range(0, len(frames), self.frame_batch):
                batch = torch.from_numpy(frames[start : start + self.frame_batch]).to(self.device)
                parts.append(self._network(batch, compiled).cpu())
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
        loader = DataLoader(
            _DecodedVideos(paths, self.config.frames, self.config.size, self.config.decoder, spans),
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if self.workers else None,
            prefetch_factor=4 if self.workers else None,
        )
        queue: deque[tuple[int, torch.Tensor]] = deque()  # (video index, its frames not yet encoded)
        done: dict[int, list[torch.Tensor]] = {}
        queued, compiled = 0, self.compiles(len(paths) * self.config.frames)
        for i, frames, error in loader:
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
        with torch.inference_mode():
            out = self._network(batch, compiled).cpu()  # (size, D) float32
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


def features_problem(path: Path, frames: int) -> str | None:
    """Why a features file that a resumed extraction finds is not whole, or None: its header, shape and size,
    read without loading it (a file from another program, or cut short outside vcap's writer)."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            header_end = f.tell()
    except (OSError, ValueError) as exc:
        return f"not a .npy file ({library_text(exc)})"
    if dtype.name not in FEATURE_DTYPES or len(shape) != 2 or shape[0] != frames or shape[1] < 1:
        return f"holds {dtype} {shape}, not {' or '.join(FEATURE_DTYPES)} ({frames}, feature dim)"
    size = header_end + shape[0] * shape[1] * dtype.itemsize
    if path.stat().st_size != size:
        return f"is {path.stat().st_size} bytes, not the {size} its header says"
    return None


def _kept(path: Path, frames: int) -> bool:
    """Whether a resumed extraction keeps `path`: there and whole; one that is not is made again, said so."""
    if not path.exists():
        return False
    problem = features_problem(path, frames)
    if problem:
        print(f"vcap: {path}: {problem}; extracting it again", file=sys.stderr)
    return problem is None


def extract_folder(source: str | os.PathLike, out: str | os.PathLike, config: ExtractConfig,
                   only: set[str] | None = None, spans: dict[str, list[tuple[str, Span]]] | None = None
                   ) -> ExtractSummary:
    """`vcap extract`: one `<video id>.npy` per video in `out`; finished files are kept (resume).

    `only`: the video ids to take (vcap run: those its labels name). `spans`: video id -> [(name, (start, end))]
    for timed datasets: such a video gets one `<name>.npy` per span, of that span's frames only. Under
    torchrun or with --shard, this process takes only its share of the videos."""
    ranks = patient_group(resolve_device(config.device))
    summary = _extract_share(source, out, config, only, spans or {})
    summary.failed_everywhere = sum_over_ranks(len(summary.failed), ranks)
    return summary


def _extract_share(source: str | os.PathLike, out: str | os.PathLike, config: ExtractConfig,
                   only: set[str] | None, spans: dict[str, list[tuple[str, Span]]]) -> ExtractSummary:
    videos, out = find_videos(source), Path(out)
    share = my_share(config.shard)
    videos = [v for v in videos if in_share(video_id(v), share)
              and (only is None or video_id(v) in only or video_id(v) in spans)]
    ensure_folder(out)
    settings = feature_settings(config)
    check_settings(out, settings)
    summary = ExtractSummary()
    jobs = [(v, span, name) for v in videos for name, span in spans.get(video_id(v), [(video_id(v), None)])]
    todo = [job for job in jobs if config.overwrite or not _kept(out / f"{job[2]}.npy", config.frames)]
    summary.skipped = len(jobs) - len(todo)
    if not todo:
        return summary
    extractor = FeatureExtractor(config)  # loads the weights: fails here, before anything is written
    claim_folder(out, settings, {"device": str(extractor.device), "precision": extractor.precision,
                                 "dtype": config.dtype,
                                 "frame_batch": extractor.frame_batch,
                                 "compiled": extractor.compiles(len(todo) * config.frames),
                                 "workers": extractor.workers, "share": f"{share[0]}/{share[1]}"})
    succeeded: list[str] = []
    start = time.perf_counter()
    desc = "extract" if share[1] == 1 else f"extract {share[0]}/{share[1]}"
    bar = tqdm(total=len(todo), unit="video", desc=desc, file=sys.stderr, dynamic_ncols=True,
               disable=None)  # off when stderr is no terminal (a log file): the summary line says it
    stopped = True  # by an error or Ctrl-C: the manifest update then must not hide why
    try:
        for i, feats, error in extractor.indexed_features([p for p, _, _ in todo], [s for _, s, _ in todo]):
            name = todo[i][2]
            with np.errstate(over="ignore"):  # an overflow is reported as this video's failure below
                stored = None if error is not None else feats.astype(config.dtype, copy=False)
            if stored is not None and not np.isfinite(stored).all():
                error = f"{todo[i][0]}: features beyond {config.dtype}'s range; extract with --dtype float32"
            if error is not None:
                summary.failed[name] = error
                bar.write(f"vcap: skipped {error}", file=sys.stderr)
            else:
                with atomic_write(out / f"{name}.npy", suffix=".npy") as tmp:
                    np.save(tmp, stored)
                succeeded.append(name)
                summary.done += 1
            bar.update()
            bar.set_postfix(frames_per_s=f"{extractor.frames_done / (time.perf_counter() - start):.1f}")
        stopped = False
    finally:
        if bar.disable and share[1] > 1:  # a log file: one line per share instead of a bar
            print(f"vcap: {desc}: {summary.done} done, {len(summary.failed)} failed", file=sys.stderr)
        bar.close()
        summary.frames_per_s = extractor.frames_done / max(time.perf_counter() - start, 1e-9)
        try:
            record_results(out, summary.failed, succeeded)
        except VcapError:
            if not stopped:
                raise
    return summary
