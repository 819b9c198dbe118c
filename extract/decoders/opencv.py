"""OpenCV's decoder, the last resort: it reads what FFmpeg builds into the OpenCV wheel can.

It reads sequentially: OpenCV's per-frame seeking is many times slower than reading in order on H.264."""
from __future__ import annotations

from pathlib import Path

import cv2

from vcap.extract.decoding import Decoder, Frames, resize_one


def decode(path: Path, wanted: set[int], last: int | None, size: int) -> Frames:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # upright, as the file says to show it
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    seen, end = 0, None
    try:
        while last is None or seen <= last:
            if not cap.grab():
                break
            end = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 + (1 / fps if fps > 0 else 0)
            if seen in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                yield seen, resize_one(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
            seen += 1
    finally:
        cap.release()
    return seen, end


ORDER = 30  # --decoder auto: the last resort
DECODER = Decoder("opencv", cv2, "pip install opencv-python-headless", decode)
