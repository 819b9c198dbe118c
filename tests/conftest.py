"""Fixtures shared by every test: tiny generated videos, and the real data folder when it is there."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_video(path: Path, frames: int = 24, size: tuple[int, int] = (96, 72), fps: float = 12.0,
                fourcc: str = "mp4v", seed: int = 0) -> Path:
    """A small video whose frames all differ: a moving square on a per-video colour, plus the frame number.
    pip's OpenCV cannot write H.264, so the codecs are mp4v / XVID / MJPG."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    w, h = size
    for i in range(frames):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = base
        x = int((w - 20) * i / max(frames - 1, 1))
        img[h // 3 : h // 3 + 20, x : x + 20] = 255 - base
        cv2.putText(img, str(i), (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def make_video(tmp_path):
    def make(name: str = "clip.mp4", **kwargs) -> Path:
        path = tmp_path / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, **kwargs)

    return make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    return SHARED_DATA
