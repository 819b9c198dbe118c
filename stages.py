"""Where captioning's time goes: cumulative seconds per stage, kept by the extractor and the captioner and
shown by `vcap serve`'s /health, so a client diffs two readings to split a request's latency; what the stages
do not account for is HTTP, uploads and queueing. perf_counter around calls that take milliseconds each."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@dataclass
class StageTimes:
    """Seconds so far. `decode_wait` is the main thread waiting for decoded frames (all of decoding when it
    decodes itself, with --workers 0; else worker start-up and what the workers could not decode ahead);
    `decode` is the decoders' own seconds, summed over the processes that decode."""

    decode_wait: float = 0.0
    decode: float = 0.0
    backbone: float = 0.0
    captioner: float = 0.0


def timed(items: Iterable[T], times: StageTimes, stage: str) -> Iterator[T]:
    """`items`, the seconds spent waiting for each (not what the caller does with it) added to `times.<stage>`."""
    items = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            setattr(times, stage, getattr(times, stage) + time.perf_counter() - start)
        yield item
