"""Iterating in a background thread, a bounded number of items ahead of the consumer: decoding windows ahead of
the backbone, reading training batches ahead of the step. FFmpeg, NumPy copies and torch release the GIL, so
the thread's work overlaps the consumer's."""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Ahead(Iterable[T]):
    """`items`, produced in a thread named `name` up to `depth` ahead. An exception in the thread is raised in
    the consumer; a consumer that stops early (an error, Ctrl-C) stops the thread. `items.close()`, where it has
    one, runs in the thread that used it (a decoder's file)."""

    def __init__(self, items: Iterable[T], depth: int, name: str = "vcap-ahead"):
        self.items, self.depth, self.name = items, depth, name

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[T]:
        ready: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        end = object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def produce() -> None:
            try:
                for item in self.items:
                    if not put((item, None)):
                        return
                put((end, None))
            except BaseException as exc:  # handed to the consumer, raised there
                put((end, exc))
            finally:
                close = getattr(self.items, "close", None)
                if close is not None:
                    close()

        worker = threading.Thread(target=produce, name=self.name, daemon=True)
        worker.start()
        try:
            while True:
                item, error = ready.get()
                if error is not None:
                    raise error
                if item is end:
                    return
                yield item
        finally:
            stop.set()
            worker.join()
