"""`vcap serve`'s captioning thread: it owns the loaded captioner and captions the waiting requests in rounds,
each round's videos shared fairly among the requests (`share`), so a short request never waits for a long one.
The HTTP side (pipeline/serve.py) only submits requests and awaits their futures."""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vcap.errors import VcapError
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.results import VideoResult

log = logging.getLogger(__name__)


@dataclass
class _Job:
    paths: list[Path]
    names: list[str]  # what the answer calls each video: the name uploaded or the path as given
    every: float | None = None  # timed captions: windows of this many seconds
    explain: Path | None = None  # a folder for the frames/attention PNG of each video
    done: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    results: list[VideoResult] = field(default_factory=list)  # of paths[:len(results)], in order

    @property
    def left(self) -> int:
        """Videos still to caption; none once answered (a failed request is answered with its error)."""
        return 0 if self.done.done() else len(self.paths) - len(self.results)

    @property
    def alone(self) -> bool:
        """Windows, or pictures into the request's own folder: captioned apart from other requests' videos."""
        return bool(self.every or self.explain)


class CaptionWorker:
    """A thread that owns the captioner: requests queue here and are captioned in rounds. Each round takes up to
    `videos_per_batch` videos shared fairly among the requests waiting (the same number from each, the rest
    in arrival order), so concurrent requests share forward passes and a request of a few videos is answered
    within a round or two even while one of thousands is being worked through."""

    def __init__(self, captioner: VideoCaptioner):
        self.captioner = captioner
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches = self.videos = self.requests = 0  # rounds captioned, videos in them, requests answered
        self._thread = threading.Thread(target=self._run, name="vcap-captioner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.put(None)
        self._thread.join()

    def submit(self, paths: list[Path], names: list[str], every: float | None = None,
               explain: Path | None = None) -> concurrent.futures.Future:
        """A future of [VideoResult] in the order of `paths`, as VideoCaptioner.caption_each gives them."""
        job = _Job(paths, names, every, explain)
        if not paths:
            job.done.set_result([])
        else:
            self.jobs.put(job)
        return job.done

    def _run(self) -> None:
        active: list[_Job] = []  # requests with videos left, in arrival order
        while True:
            try:  # wait for work when idle; otherwise take whatever has arrived since the last round
                while (job := self.jobs.get(block=not active)) is not None:
                    active.append(job)
                break  # None: stop
            except queue.Empty:
                pass
            self._round(active)
            active = [job for job in active if job.left]
        for job in active:
            job.done.set_exception(VcapError("the server is stopping"))

    def _round(self, active: list[_Job]) -> None:
        """Caption one fair share of the waiting videos: a batch of whole-video requests, then one video of
        each request that needs windows or pictures."""
        plain = [job for job in active if not job.alone]
        taken = share(self.captioner.config.videos_per_batch, [job.left for job in plain])
        if plain:
            self._caption([(job, n) for job, n in zip(plain, taken) if n])
        for job in active:
            if job.alone:
                self._caption([(job, 1)], job.every, job.explain)

    def _caption(self, parts: list[tuple[_Job, int]], every: float | None = None,
                 explain: Path | None = None) -> None:
        """Caption the next `n` videos of each (job, n); a job whose videos are all done gets its answer."""
        spans = [(job, len(job.results), len(job.results) + n) for job, n in parts]
        paths = [p for job, a, b in spans for p in job.paths[a:b]]
        names = [name for job, a, b in spans for name in job.names[a:b]]
        try:
            results = list(self.captioner.caption_each(paths, names, every, explain))
        except Exception as exc:  # a bug, or a request the captioner refuses whole: fail these requests, not the server
            if not isinstance(exc, VcapError):
                log.exception("captioning a batch failed")
            for job, _, _ in spans:
                job.done.set_exception(exc)
            self.requests += len(spans)
            return
        self.batches += 1
        self.videos += len(paths)
        at = 0
        for job, a, b in spans:
            job.results += results[at : at + b - a]
            at += b - a
            if not job.left:
                job.done.set_result(job.results)
                self.requests += 1


def share(limit: int, wanted: list[int]) -> list[int]:
    """How many of its `wanted` videos each request gets in a round of `limit`: an equal share each (at least
    one, so no request waits for a round), the rest of the round to the earliest requests that want more."""
    if not wanted:
        return []
    each = max(1, limit // len(wanted))
    taken = [min(w, each) for w in wanted]
    room = limit - sum(taken)
    for i, w in enumerate(wanted):
        extra = min(w - taken[i], max(room, 0))
        taken[i] += extra
        room -= extra
    return taken
