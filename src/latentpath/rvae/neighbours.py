"""A neighbour-keeping term for the skip-rVAE's content latents.

The reconstruction asks the two content latents for what explains most of a window's
pixels, which on atom windows is holes, edges and brightness; the ring structures the
windows also hold (10 principal components keep them) are left to share one part of the
plane. This term asks the plane to keep each window beside its nearest windows, as
parametric t-SNE and VAE-SNE do (van der Maaten 2009; Graving & Couzin 2020), without
labels: each window's ``k`` nearest windows are found once, in a principal-component
summary of the windows, and every step pulls sampled pairs of neighbours together in the
plane while all windows of the step push apart under t-SNE's Student-t kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

#: principal components the windows' neighbours are found in
GRAPH_COMPONENTS = 32
#: training windows the neighbour graph is built on, at most (evenly spread over them):
#: finding neighbours costs the square of their number
GRAPH_WINDOWS = 40_000
#: validation windows the term's validation value is read on, at most
VALIDATION_ANCHORS = 1024
#: distances held at once when the neighbours are found (200 MB of float32)
GRAPH_CHUNK_DISTANCES = 50_000_000


def neighbour_graph(windows: torch.Tensor, k: int = 10,
                    components: int = GRAPH_COMPONENTS) -> torch.Tensor:
    """The ``k`` nearest other windows (N, k) of each of ``windows`` (N, ...), by the
    Euclidean distance of their first ``components`` principal-component scores.

    Examples
    --------
    >>> x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1]])
    >>> neighbour_graph(x, k=1).ravel().tolist()
    [1, 0, 3, 2]
    """
    if not 1 <= k < len(windows):
        raise ValueError(f"k must be from 1 to {len(windows) - 1} (windows - 1), got {k}")
    flat = windows.flatten(1).double()
    flat = flat - flat.mean(0)
    _, vectors = torch.linalg.eigh(flat.T @ flat)
    scores = (flat @ vectors[:, -components:]).float()
    squared = scores.square().sum(1)
    nearest = []
    chunk = max(1, GRAPH_CHUNK_DISTANCES // len(scores))
    for start in range(0, len(scores), chunk):
        part = scores[start:start + chunk]
        d2 = squared[start:start + chunk, None] - 2 * part @ scores.T + squared[None]
        d2[torch.arange(len(part)), torch.arange(start, start + len(part))] = float("inf")
        nearest.append(d2.topk(k, dim=1, largest=False).indices)
    return torch.cat(nearest)


def neighbour_loss(anchors: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """t-SNE's KL(P || Q) on a batch of anchor latents (B, k) and one neighbour's each
    (B, k): P puts equal weight on the B anchor-neighbour pairs, Q is the Student-t
    kernel over every pair of the 2B latents. 0 when each pair coincides and all pairs
    lie infinitely far apart.

    Examples
    --------
    >>> near = neighbour_loss(torch.tensor([[0.0, 0.0], [9.0, 0.0]]),
    ...                       torch.tensor([[0.1, 0.0], [9.0, 0.1]]))
    >>> far = neighbour_loss(torch.tensor([[0.0, 0.0], [9.0, 0.0]]),
    ...                      torch.tensor([[9.0, 0.1], [0.1, 0.0]]))
    >>> bool(near < far)
    True
    """
    z = torch.cat([anchors, neighbours])
    pairs = (anchors - neighbours).square().sum(1)
    return _LogRepulsion.apply(z) - math.log(len(z)) + torch.log1p(pairs).mean()


class _LogRepulsion(torch.autograd.Function):
    """log of the Student-t kernel summed over every pair of points z (n, k), i != j,
    with its gradient written out: autograd's pass over the n x n intermediates costs
    three times the forward pass."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        squared = z.square().sum(1)
        d2 = (squared[:, None] + squared[None]).sub_(2 * z @ z.T).clamp_(min=0)
        kernel = d2.add_(1).reciprocal_()
        # the diagonal's kernel is 1 (d = 0): the n of it leave the sum over pairs
        norm = kernel.sum() - len(z)
        ctx.save_for_backward(z, kernel, norm)
        return torch.log(norm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        z, kernel, norm = ctx.saved_tensors
        # d log Z / d z_i = -4 / Z * sum_j K_ij^2 (z_i - z_j)
        k2 = kernel.square()
        return grad * (-4 / norm) * (z * k2.sum(1, keepdim=True) - k2 @ z)


@dataclass
class NeighbourTerm:
    """The neighbour term of one training: its weight, the training windows' neighbour
    graph, and fixed pairs of validation windows (each with its nearest validation
    window) that the term's validation value is read on, so that the best epoch is the
    best by the whole loss that training lowers.

    ``rows`` (n,) are the training windows' rows of the data, sorted; ``graph`` (n, k)
    holds each one's nearest training windows as positions in ``rows``.
    """

    weight: float
    batch: int
    rows: np.ndarray
    graph: torch.Tensor
    val_anchors: np.ndarray
    val_neighbours: np.ndarray

    @classmethod
    def build(cls, weight: float, batch: int, k: int, windows: Callable[[np.ndarray],
              torch.Tensor], train_idx: np.ndarray, val_idx: np.ndarray
              ) -> NeighbourTerm | None:
        """The term for windows read as normalised tensors by ``windows(rows)``; None
        where it has no weight or too few windows."""
        if weight == 0 or len(train_idx) < 2:
            return None
        rows = _spread(np.sort(train_idx), GRAPH_WINDOWS)
        graph = neighbour_graph(windows(rows), min(k, len(rows) - 1)).cpu()
        val = _spread(np.sort(val_idx), VALIDATION_ANCHORS)
        if len(val) < 2:
            anchors = near = np.zeros(0, int)
        else:
            anchors, near = val, val[neighbour_graph(windows(val), 1)[:, 0].cpu().numpy()]
        return cls(float(weight), batch, rows, graph, anchors, near)

    def step(self, content: Callable[[np.ndarray], torch.Tensor], drawn: np.ndarray,
             generator: torch.Generator) -> torch.Tensor:
        """The weighted term on up to ``batch`` of the epoch's ``drawn`` rows, each with
        one of its neighbours; ``content(rows)`` gives their content latents' means."""
        pick = torch.randperm(len(drawn), generator=generator,
                              device=generator.device)[:self.batch].cpu().numpy()
        anchors = np.unique(drawn[pick])
        local = np.searchsorted(self.rows, anchors).clip(max=len(self.rows) - 1)
        # where the graph holds a share of the training windows, the anchors it holds
        local = local[self.rows[local] == anchors]
        anchors = self.rows[local]
        if len(anchors) == 0:
            return torch.zeros((), device=generator.device)
        which = torch.randint(self.graph.shape[1], (len(local),), generator=generator,
                              device=generator.device).cpu()
        near = self.rows[self.graph[torch.from_numpy(local), which].numpy()]
        z = content(np.concatenate([anchors, near]))
        return self.weight * neighbour_loss(z[:len(anchors)], z[len(anchors):])

    def validation(self, content: Callable[[np.ndarray], torch.Tensor]) -> float:
        """The weighted term on the fixed validation pairs (0 without them)."""
        if len(self.val_anchors) == 0:
            return 0.0
        with torch.no_grad():
            z = content(np.concatenate([self.val_anchors, self.val_neighbours]))
            half = len(self.val_anchors)
            return self.weight * float(neighbour_loss(z[:half], z[half:]))


def _spread(rows: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` of the sorted ``rows``, evenly spread over them."""
    if len(rows) <= most:
        return rows
    return rows[np.linspace(0, len(rows) - 1, most).round().astype(int)]
