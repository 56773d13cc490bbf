"""Multi-process training through torchrun + DistributedDataParallel (no home-made launcher).

``torchrun --nproc_per_node N -m vagan train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
a plain run is a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device_kind: str) -> World:
    """Join the process group when launched by torchrun; otherwise a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """Whether ``flag`` holds on any process: a decision every rank must take together (a stage's
    time budget runs out at slightly different moments on each)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DDP-wrap a module in a multi-process run; return it unchanged otherwise."""
    if not world.distributed:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
