"""`vcap extract`: a folder of videos -> a folder of per-video feature caches. Which videos (ids, this process's
share), which finished files a resumed run keeps, each `<video file name>.npy` written atomically, the manifest."""
from __future__ import annotations

import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vcap.extract.config import FEATURE_DTYPES, ExtractConfig
from vcap.extract.extractor import FeatureExtractor, Span, feature_settings
from vcap.extract.manifest import check_settings, claim_folder, record_results
from vcap.extract.sampler import VIDEO_EXTENSIONS
from vcap.device import resolve_device
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
