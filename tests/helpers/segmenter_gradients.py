"""One training step of the atom U-Net in float64, run alone or under torchrun: each
process takes its share of the batch (batch norm over the whole batch, gradients
averaged by DistributedDataParallel); rank 0 saves the gradients to the file named by
the first argument."""

import sys

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from latentpath.atoms.model import AtomNetConfig, AtomUNet
from latentpath.atoms.training import loss_function
from latentpath.distributed import process_group, sync_batch_norm


def main() -> None:
    """Inside a function, so that nothing holds the process group once it returns."""
    group = process_group(torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AtomUNet(AtomNetConfig()).double().train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 32, 32, generator=gen, dtype=torch.float64)
    y = torch.randint(0, model.config.n_classes, (5, 32, 32), generator=gen)
    weights = torch.linspace(0.5, 2.0, model.config.n_classes, dtype=torch.float64)
    net = model
    if group.world > 1:
        net = DistributedDataParallel(sync_batch_norm(model, torch.device("cpu")))
    mine = torch.from_numpy(group.shard(np.arange(5)))  # 3 rows and 2: unequal shares
    value = loss_function("ce", weights)(net(x[mine]), y[mine], y)
    (value * group.world).backward()
    if group.main:
        np.savez(sys.argv[1], **{n: p.grad.numpy() for n, p in model.named_parameters()})


if __name__ == "__main__":
    main()
