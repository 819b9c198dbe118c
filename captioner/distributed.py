"""Data-parallel training under torchrun: one process per GPU (NCCL), or per CPU slot (gloo).

Every rank walks the same seeded order of samples; each global batch is split among the ranks and
DistributedDataParallel averages the gradients, so K ranks with a per-rank batch of B/K follow the path
of one process with batch B. Only rank 0 writes files.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def my_part(indices: list[int]) -> list[int]:
    """This rank's contiguous part of `indices`: sizes differ by at most one, none is empty when there
    are at least as many indices as ranks."""
    size, extra = divmod(len(indices), world_size())
    start = rank() * size + min(rank(), extra)
    return indices[start : start + size + (rank() < extra)]


def weighted_mean(total: float, count: float) -> float:
    """sum(total) / sum(count) over the ranks."""
    if not dist.is_initialized():
        return total / max(count, 1)
    both = torch.tensor([total, count], dtype=torch.float64)
    dist.all_reduce(both)
    return float(both[0] / max(float(both[1]), 1))


def merged(part: dict) -> dict:
    """The union of every rank's dict (e.g. predictions for its share of the validation videos)."""
    if not dist.is_initialized():
        return part
    parts: list[dict] = [{} for _ in range(world_size())]
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
