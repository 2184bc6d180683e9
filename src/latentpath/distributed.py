"""Training on several processes with PyTorch's DistributedDataParallel.

Start any training command with ``torchrun`` (one process per GPU, on one machine or
several) and each process takes its share of every batch::

    torchrun --nproc_per_node 4 -m latentpath rvae windows.npy --out model/
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-endpoint HOST:29500 \\
        -m latentpath rvae windows.npy --out model/

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`process_group`
reads them and joins the group: NCCL between GPUs, gloo on CPUs. Without them (a plain
``latentpath rvae``) training runs in one process, unchanged.

A global batch is split by position after sorting: rank r takes rows r, r + W, ... of
the batch, W the number of processes, with the sampling noise the single process would
draw for those rows. Each rank's loss is weighted by its share of the batch, so the
gradients DistributedDataParallel averages are those of the whole batch: training on W
processes gives the single process's result up to floating-point noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes.

    Attributes
    ----------
    rank, world : int
        This process's number and the number of processes (0 and 1 alone).
    local_rank : int
        Its number on its machine: the GPU it uses.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints progress."""
        return self.rank == 0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """Positions of a global batch (``rows`` long) this rank takes: r, r + W, ..."""
        return np.arange(self.rank, len(rows), self.world)

    def all_sum(self, values: np.ndarray | list[float], device: torch.device) -> np.ndarray:
        """Element-wise sum over all processes (the values themselves alone)."""
        values = np.asarray(values, dtype=np.float64)
        if self.world == 1:
            return values
        tensor = torch.as_tensor(values, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def barrier(self) -> None:
        """Wait for every process (for example until the main one wrote a file)."""
        if self.world > 1:
            dist.barrier()


def process_group(device: torch.device) -> Group:
    """Join the process group ``torchrun`` describes in the environment, once per
    process; a lone process (no ``WORLD_SIZE``, or 1) gets ``Group()``.

    Parameters
    ----------
    device : torch.device
        The device the caller trains on: NCCL for CUDA, gloo otherwise.

    Raises
    ------
    ValueError
        A malformed ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err})") from None
    if world <= 1:
        return Group()
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(rank=rank, world=world, local_rank=local_rank)


def is_main_process() -> bool:
    """Whether this process prints a command's summary: the only one, or rank 0 of
    those ``torchrun`` started."""
    return os.environ.get("RANK", "0") == "0"


def local_device(device: torch.device, group: Group) -> torch.device:
    """The GPU of this process (``cuda:LOCAL_RANK``) when training on CUDA with
    several processes; ``device`` otherwise."""
    if device.type == "cuda" and group.world > 1 and device.index is None:
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    return device
