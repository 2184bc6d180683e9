"""Our Adam: torch.optim.Adam's steps bit for bit, its state interchangeable, without
importing torch._dynamo; nonsense settings refused by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from latentpath.adam import Adam


def _net(seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net


def _train(net: torch.nn.Module, opt, steps: range, rates: list[float]) -> None:
    gen = torch.Generator().manual_seed(0)
    for step in range(steps.stop):
        if step < steps.start:  # the batches an earlier call trained on
            torch.randn(32, 6, generator=gen)
            continue
        x = torch.randn(32, 6, generator=gen)
        if isinstance(opt, Adam):
            opt.lr = rates[step]
        else:
            opt.param_groups[0]["lr"] = rates[step]
        opt.zero_grad()
        ((net(x) - x[:, :3]) ** 2).mean().backward()
        opt.step()


RATES = [1e-2 * 0.9 ** k for k in range(40)]


def test_steps_equal_torch_adam_bit_for_bit_under_a_changing_rate():
    ours, theirs = _net(0), _net(0)
    _train(ours, Adam(ours.parameters(), lr=RATES[0]), range(40), RATES)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=RATES[0]), range(40), RATES)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_moves_between_torch_adam_and_ours_without_a_difference():
    straight = _net(1)
    _train(straight, torch.optim.Adam(straight.parameters(), lr=RATES[0]), range(40), RATES)
    # half with torch's Adam, the rest with ours from its state
    net = _net(1)
    theirs = torch.optim.Adam(net.parameters(), lr=RATES[0])
    _train(net, theirs, range(20), RATES)
    ours = Adam(net.parameters(), lr=RATES[20])
    for p in net.parameters():
        ours.state[p] = {k: v.clone() for k, v in theirs.state[p].items()}
    _train(net, ours, range(20, 40), RATES)
    for a, b in zip(net.parameters(), straight.parameters(), strict=True):
        assert torch.equal(a, b)
    assert set(ours.state[next(net.parameters())]) == {"step", "exp_avg", "exp_avg_sq"}


def test_parameters_without_a_gradient_are_left_alone():
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Adam([used, unused], lr=0.5)
    used.sum().backward()
    opt.step()
    assert torch.equal(unused, torch.ones(2)) and unused not in opt.state
    assert torch.allclose(used, torch.full((2,), 0.5))
    opt.zero_grad()
    assert used.grad is None


def test_training_does_not_import_torch_dynamo():
    # the import costs 1.2-1.4 s of a small job (docs/benchmarks.md)
    code = ("import sys, torch; from latentpath.adam import Adam\n"
            "w = torch.nn.Parameter(torch.ones(3)); opt = Adam([w])\n"
            "(w ** 2).sum().backward(); opt.step()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0}, "lr must be a finite number > 0"), ({"lr": float("nan")}, "lr must be"),
    ({"lr": True}, "lr must be"), ({"betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
    ({"betas": (-0.1, 0.9)}, "betas must be"), ({"betas": 0.9}, "betas must be"),
    ({"eps": -1e-8}, "eps must be a finite number > 0")])
def test_nonsense_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam([torch.nn.Parameter(torch.ones(1))], **kwargs)


def test_one_tensor_instead_of_an_iterable_is_refused_and_numpy_numbers_taken():
    with pytest.raises(TypeError, match="not one tensor"):
        Adam(torch.nn.Parameter(torch.ones(3)))
    w = torch.nn.Parameter(torch.ones(2))
    opt = Adam([w], lr=np.float32(0.5), betas=(np.float64(0.9), 0.999))
    w.sum().backward()
    opt.step()
    assert torch.allclose(w, torch.full((2,), 0.5))


def test_no_parameters_is_refused():
    with pytest.raises(ValueError, match="params is empty"):
        Adam([])
