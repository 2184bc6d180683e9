"""Adam, the optimiser both trainings use, without ``torch.optim``'s start-up cost.

``torch.optim.Adam`` imports ``torch._dynamo`` at its first step (to mark graph breaks
for ``torch.compile``), which takes 1.2-1.4 s on the 2-core development CPU: a tenth
of a small ``latentpath rvae`` job as the user meets it (docs/benchmarks.md). This is
the same algorithm (Kingma & Ba 2015, as ``torch.optim.Adam`` computes it one tensor at
a time, without weight decay or amsgrad), in plain tensor operations. On the CPU its
steps equal ``torch.optim.Adam``'s bit for bit, and its state has the same names
(``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints written by either resume
under the other.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch


class Adam:
    """Adam over ``params`` with learning rate ``lr``, read at every step.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        The tensors to optimise; each keeps its state in ``state[param]`` from its
        first step with a gradient on.
    lr : float
        Learning rate (> 0). Set ``optimizer.lr`` between steps for a schedule.
    betas : (float, float)
        Decay rates of the running mean of the gradient and of its square, in [0, 1).
    eps : float
        Added to the root of the running square (> 0).

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = Adam([w], lr=0.1)
    >>> (w ** 2).sum().backward()
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9000, -1.9000])
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of tensors (model.parameters()), "
                            "not one tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError("params is empty: Adam needs at least one tensor to optimise")
        self.lr = _positive("lr", lr)
        self.eps = _positive("eps", eps)
        if (not isinstance(betas, tuple | list) or len(betas) != 2
                or not all(isinstance(b, numbers.Real) and not isinstance(b, bool)
                           and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.state: dict[torch.nn.Parameter, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop every gradient, so that the next backward pass writes them afresh."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        for p in self.params:
            if p.grad is None:
                continue
            grad = p.grad
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            state["step"] += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            # the same order of operations as torch.optim.Adam, so that steps agree exactly
            step = state["step"].item()
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-self.lr / (1 - beta1 ** step))


def _positive(name: str, value: float) -> float:
    # latentpath.checks sits beside this module in the module map, not below it
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
