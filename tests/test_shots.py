"""Windows that follow the video: --every shots cuts where the picture changes, not by the clock."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcap.extract.sampler import read_windows
from vcap.extract.shots import shot_windows

av = pytest.importorskip("av")
FPS = 25


def clip_frames(kind: int, count: int, size: tuple[int, int] = (160, 96)) -> list[np.ndarray]:
    """Three unlike scenes, each with motion inside it: a square crossing a flat colour, scrolling stripes,
    a gradient with a bouncing bar."""
    w, h = size
    frames = []
    for i in range(count):
        img = np.zeros((h, w, 3), np.uint8)
        if kind == 0:
            img[:] = (30, 60, 160)
            x = (i * 4) % (w - 24)
            img[30:54, x : x + 24] = (250, 250, 200)
        elif kind == 1:
            stripes = ((np.arange(w) + 2 * i) // 8 % 2 * 180 + 40).astype(np.uint8)
            img[:] = stripes[None, :, None] * np.array([0.3, 1.0, 0.4])
        else:
            img[:] = np.linspace(120, 250, w, dtype=np.uint8)[None, :, None] * np.array([1.0, 0.3, 0.2])
            y = abs((i * 3) % (2 * (h - 10)) - (h - 10))
            img[y : y + 10] = (20, 20, 20)
        frames.append(img)
    return frames


def joined_video(path: Path, seconds: list[float]) -> list[float]:
    """One H.264 file of the clips back to back; -> the times of the joins."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for k, length in enumerate(seconds):
            for img in clip_frames(k % 3, round(length * FPS)):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return np.cumsum(seconds)[:-1].tolist()


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_shot_windows_start_within_half_a_second_of_the_joins(tmp_path, backend):
    joins = joined_video(tmp_path / "joined.mp4", [3.2, 2.4, 4.0, 2.8])
    spans = [span for taken, _ in read_windows(tmp_path / "joined.mp4", 4, "shots", size=32, backend=backend)
             for span in taken]
    starts = [start for start, _ in spans[1:]]
    assert len(starts) == len(joins), spans
    assert all(abs(start - join) <= 0.5 for start, join in zip(starts, joins)), (starts, joins)
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(12.4, abs=0.1)


def test_short_shots_join_the_next_and_long_ones_are_split():
    fps = 10
    # shots start at 0, 5 (a 0.5 s shot follows), 55, and the video ends at 100: min 2 s, max 3 s
    starts = shot_windows([50, 55], 100, fps, min_seconds=2.0, max_seconds=3.0)
    lengths = np.diff(starts + [100])
    assert 50 in starts and 55 not in starts
    assert lengths.max() <= 30 and lengths.min() >= 20
