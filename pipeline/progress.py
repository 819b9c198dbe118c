"""Where long captioning work is, on stderr: a tqdm bar on a terminal, a plain line every `step` items on a
pipe or in a log (a bar's carriage returns would fill a log file)."""
from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """Count `unit`s of `desc`; `total` may be unknown (None). `enabled=False` shows nothing."""

    def __init__(self, desc: str, unit: str, total: int | None = None, step: int = 10, enabled: bool = True,
                 file: TextIO | None = None):
        self.desc, self.unit, self.total, self.step, self.done = desc, unit, total, step, 0
        self.file = file or sys.stderr
        self.bar = None
        self.enabled = enabled
        if enabled and self.file.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False, file=self.file)

    def update(self, count: int = 1) -> None:
        before, self.done = self.done, self.done + count
        if self.bar is not None:
            self.bar.update(count)
        elif self.enabled and self.done // self.step > before // self.step:
            self._line()

    def close(self) -> None:
        """The last line on a pipe says the whole count, so a log shows that the work finished."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done % self.step:
            self._line()

    def _line(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        print(f"vcap: {self.desc}: {self.done}{of} {self.unit}", file=self.file, flush=True)
