"""The machine's own limit, measured in the benchmark's process: the matmul throughput of one precision, and
the FLOPs a module costs, so a figure can say what fraction of the peak it reached (as nanoGPT's MFU)."""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vcap.device import dtype_of


def matmul_peak(precision: str, device: torch.device, n: int = 4096, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in `precision` on `device` (best of repeated timed runs after a warm-up)."""
    a, b = (torch.randn(n, n, device=device).to(dtype_of(precision)) for _ in range(2))
    a @ b  # warm-up: kernel choice, packing
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def peak_around(precision: str, device: torch.device, work):
    """(work(), the mean of a 1 s matmul probe taken just before and just after it): this VM's speed drifts by
    30% within minutes, so a fraction is only fair against the peak of the same minute."""
    before = matmul_peak(precision, device, seconds=1.0)
    result = work()
    return result, (before + matmul_peak(precision, device, seconds=1.0)) / 2


def flops(fn) -> float:
    """GFLOP that calling fn() costs (matmuls and convolutions, as torch's FLOP counter counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9
