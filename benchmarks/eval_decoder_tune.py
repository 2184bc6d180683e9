"""The atom decoders of finished STEM runs trained on alone, the encoder held: what more
decoder training adds to the chemical-space map.

    python benchmarks/eval_decoder_tune.py RUN [RUN ...] [--steps 2000] [--lr 3e-3]
        [--noise 0] [--seed 0]

A run's atom model is loaded and its decoder trained for ``--steps`` more steps (Adam
at a constant ``--lr``, batches of 32 drawn as the run drew them, balanced by
structure) on each window's posterior mean, or on samples of its posterior with
``--noise 1`` (as the training itself draws them). The encoder, and so every window's
latents, stay as they were; only the map read off the decoder changes. Printed per run:
the map's accuracy on the three commonest true structures (as ``latentpath evaluate``
scores it) before and after, and the seconds the extra training took (float32, eager,
both threads of the dev CPU). Issue 20's twentieth stop (docs/chemical-space.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.adam import Adam
from latentpath.evaluate import score_chemical_space
from latentpath.pipeline import StemRun
from latentpath.pipeline.stem import latents_and_map, structure_weights
from latentpath.rvae import SkipRVAE, load_rvae
from latentpath.synth import read_synth_stem

BATCH = 32


def map_accuracy(run: StemRun, model: SkipRVAE, windows: np.ndarray, truth) -> str:
    """The run's atom map read off ``model``, scored against its synthetic ``truth``
    on the three commonest structures."""
    table = run.kinds["atom"].latents[["atom", "frame", "y", "x", "kind"]]
    latents, space = latents_and_map(model, windows, run.settings, "atom", table=table)
    atom = dataclasses.replace(run.kinds["atom"], latents=latents, map=space)
    scores = score_chemical_space(dataclasses.replace(run, kinds={**run.kinds, "atom": atom}),
                                  truth.atoms, truth.rings, pixel_size_A=truth.pixel_size_A)
    return ", ".join(f"{scores[f'atom_top{k}_structure']} "
                     f"{scores[f'atom_top{k}_map_accuracy']:.3f}" for k in (1, 2, 3))


def tune_decoder(model: SkipRVAE, windows: np.ndarray, weights: np.ndarray | None, *,
                 steps: int, lr: float, noise: float, seed: int) -> None:
    """Train ``model``'s decoder in place on the windows' posterior means (plus
    ``noise`` times their posterior spread), drawn with ``weights``."""
    x = model.normalize(torch.from_numpy(np.asarray(windows, np.float32)))
    with torch.no_grad():
        mu, logvar = model.encode(x)
    spread = noise * torch.exp(0.5 * logvar)
    draw = torch.ones(len(x)) if weights is None else torch.from_numpy(weights)
    gen = torch.Generator().manual_seed(seed)
    optimizer = Adam([p for name, p in model.named_parameters()
                      if not name.startswith("encoder")], lr=lr)
    for _ in range(steps):
        rows = torch.multinomial(draw, BATCH, replacement=True, generator=gen)
        z = mu[rows] + spread[rows] * torch.randn(mu[rows].shape, generator=gen)
        recon = model.decode(z[:, 3:], z[:, 0], z[:, 1:3] * model.config.translation_prior)
        loss = 0.5 * (recon - x[rows]).square().flatten(1).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", type=float, default=0.0,
                        help="posterior spread added to the means (1: the training's draw)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.runs:
        run = StemRun.read(run_dir)
        model = load_rvae(run_dir / "atom" / "model")
        windows = np.load(run_dir / "atom" / "windows.npy")
        truth = read_synth_stem(run.truth)
        before = map_accuracy(run, model, windows, truth)
        weights = structure_weights(run.kinds["atom"].latents, run.atoms, run.rings, "atom",
                                    run.settings.balance_power["atom"])
        began = time.perf_counter()
        tune_decoder(model, windows, weights, steps=args.steps, lr=args.lr,
                     noise=args.noise, seed=args.seed)
        seconds = time.perf_counter() - began
        print(f"{run_dir.name}: {before} -> {map_accuracy(run, model, windows, truth)} "
              f"({args.steps} decoder steps in {seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
