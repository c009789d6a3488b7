"""DistributedDataParallel plumbing: one process per device under torchrun, or a single process.

Under ``torchrun --nproc_per_node=N`` the environment carries RANK, WORLD_SIZE and LOCAL_RANK;
without them everything here degrades to a world of one, so the same code path runs both ways.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and its device."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.size > 1


def start(device: str = "auto") -> World:
    """Join the process group when launched by torchrun (nccl on GPUs, gloo on CPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if size == 1:
        return World(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def stop() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process (a no-op for a single process)."""
    if world.distributed:
        dist.barrier()


def sum_across(world: World, values: list[float]) -> list[float]:
    """Sum a few numbers over all processes (each process gets the totals)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(world: World, flag: bool) -> bool:
    """The main process's flag, seen by all (used to stop every process on a rank-0 decision)."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], device=world.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())
