"""Everything vcap does under torchrun, in one place: joining the process group, each rank's share of the
videos to extract, and the collectives of data-parallel training.

Extraction needs no communication but a final count: each rank takes a hash-chosen share of the videos. Training
is data-parallel: every rank walks the same seeded order of samples, each global batch is split among the ranks
and DistributedDataParallel averages the gradients, so K ranks with a per-rank batch of B/K follow the path of
one process with batch B. Only rank 0 writes files.
"""
from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist


def join_torchrun(device: torch.device) -> bool:
    """Under torchrun (WORLD_SIZE > 1), join its process group, once per process; False when running alone.

    The group is kept for the life of the process, never destroyed and made again: a second group reads
    the first one's stale addresses from torchrun's store and times out when rank 0 arrives late. It is
    destroyed at exit: gloo groups left to the interpreter's teardown abort the process now and then
    ("terminate called without an active exception"), and torchrun then fails a run whose work was done."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if not dist.is_initialized():  # gloo carries CPU tensors (loss tallies, captions) beside NCCL's CUDA ones
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's own buffers go to this rank's GPU, not all to cuda:0
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave_torchrun)
    return True


def _leave_torchrun() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def my_share(shard: tuple[int, int]) -> tuple[int, int]:
    """(index, count) of this process's share of the videos: the job's --shard I/N, split again among the
    torchrun ranks (read from the environment: no process group is needed to know them)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return shard[0] * world + rank, shard[1] * world


def patient_group(device: torch.device):
    """Under torchrun, a gloo group of all ranks whose collectives wait up to a week: one rank's share of an
    extraction can take hours longer than another's. Made before the work, while the ranks start together;
    None alone."""
    if not join_torchrun(device):
        return None
    return dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7))


def sum_over_ranks(count: int, group) -> int:
    """Wait for every rank of `group` and add up their counts (None: alone). Waiting matters: torchrun stops all
    ranks as soon as one exits non-zero, so a rank that met a bad video must not exit before the others."""
    if group is None:
        return count
    total = torch.tensor([count])
    dist.all_reduce(total, group=group)
    return int(total)


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
