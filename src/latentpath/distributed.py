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

import atexit
import gc
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


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
        atexit.register(_leave_group)
    return Group(rank=rank, world=world, local_rank=local_rank)


def _leave_group() -> None:
    """Leave the process group :func:`process_group` joined, unless the caller did.

    gloo's worker threads free finished collectives, which takes the GIL; left running
    into the interpreter's shutdown they abort the process now and then ("terminate
    called without an active exception"). Destroying the group while Python is alive
    joins them, once nothing else holds it: the collector first frees the models
    (DistributedDataParallel holds the group) their training left behind. No
    barrier: a process leaving on an error must not wait for the others.
    """
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


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


class _SumOverProcesses(torch.autograd.Function):
    """Sum a tensor over the processes; the gradient is summed the same way, so each
    process's backward pass receives every process's dependence on the sum."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are those of the whole batch, summed over the
    processes (torch's ``SyncBatchNorm`` needs GPUs; this one works on CPUs too).

    The sums go through an all-reduce whose gradient is all-reduced too, so each
    process's backward pass carries the other processes' share of the gradient through
    the statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        shape = (1, channels, 1, 1)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype,
                             device=x.device)
        sums = _SumOverProcesses.apply(torch.cat([x.sum((0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:channels] / n
        # two passes, as BatchNorm2d: the variance from E[x^2] - mean^2 loses the digits
        # its gradient needs when the mean is large against the spread
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * n / (n - 1), momentum)
        y = centred / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm2d computing the whole batch's statistics across
    the processes: torch's ``SyncBatchNorm`` on GPUs, :class:`GroupBatchNorm2d` on CPUs.
    :func:`plain_batch_norm` turns them back."""
    kind = nn.SyncBatchNorm if device.type == "cuda" else GroupBatchNorm2d
    return _replace_norms(model, nn.BatchNorm2d, kind)


def plain_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with the layers :func:`sync_batch_norm` made BatchNorm2d again."""
    model = _replace_norms(model, nn.SyncBatchNorm, nn.BatchNorm2d)
    return _replace_norms(model, GroupBatchNorm2d, nn.BatchNorm2d)


def _replace_norms(model: nn.Module, old: type, new: type) -> nn.Module:
    """Every ``old`` layer of ``model`` (exactly that type) replaced, in place, by a
    ``new`` one with the same settings, parameters and running statistics."""
    for name, child in model.named_children():
        if type(child) is old:
            like = child.running_mean if child.track_running_stats else child.weight
            swapped = new(child.num_features, child.eps, child.momentum, child.affine,
                          child.track_running_stats).to(device=like.device, dtype=like.dtype)
            swapped.load_state_dict(child.state_dict())
            swapped.train(child.training)
            setattr(model, name, swapped)
        else:
            _replace_norms(child, old, new)
    return model
