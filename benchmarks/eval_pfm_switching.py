"""Switching degree against the true wall velocity, over several synthetic movies.

    python benchmarks/eval_pfm_switching.py [--seeds 0 1 2 3 --delay 2]

For tip- and field-switching movies of several seeds, runs the PFM pipeline's steps up
to the windows (signal, drift, walls, 80 time-delayed windows per frame; no rVAE, so it
takes seconds per movie) and prints, for each movie, the drift error between frames t
and t + delay, and the Spearman correlation of each window's own switching degree with
the true wall velocity (``evaluate.true_wall_velocity``), for:

- ``method``: D over the whole window, thresholded samples, drift against frame 0;
- ``+pairs``: the same, drift from frame pairs (``register_frames(reference="pairs")``);
- ``+local``: areas weighed about the centre, samples the wall crosses counted in part;
- ``default``: and changes under ``static_px`` set to 0 (the pipeline's defaults).

Target (issue: PFM): Spearman at least 0.7.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script
from scipy.stats import spearmanr

from latentpath.evaluate import true_wall_velocity
from latentpath.pipeline.pfm import (
    PfmConfig,
    cut_wall_windows,
    signal_and_drift,
    wall_centres,
    walls_and_curves,
)
from latentpath.synth.pfm import synth_pfm_movie

MOVIES = [("tip", 50, 256), ("field", 50, 256), ("field", 100, 512)]


def windows_and_velocity(sim, reference: str, config: PfmConfig):
    """The run's windows with drift by ``reference``, and each one's true velocity."""
    signal, valid, drift = signal_and_drift(sim.phase, sim.amplitude, reference=reference)
    walls, _ = walls_and_curves(signal, valid, config)
    _, points = wall_centres(walls, valid, config)
    windows, table = cut_wall_windows(signal, points, config)
    truth = sim.frames[["drift_y", "drift_x"]].to_numpy()
    error = drift[["dy", "dx"]].to_numpy() - truth
    between = error[config.delay:] - error[:-config.delay]
    between_rms = float(np.sqrt((between**2).sum(1).mean()))
    return windows, true_wall_velocity(table, sim), between_rms


def rho(windows: np.ndarray, velocity: np.ndarray, settings: PfmConfig) -> float:
    """Spearman of the windows' switching degree with the true velocity."""
    known = np.isfinite(velocity)
    degree = settings.physics(windows).switching.to_numpy()
    return float(spearmanr(degree[known], velocity[known])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--delay", type=int, default=2)
    args = parser.parse_args()
    print(machine_line())
    config = PfmConfig(delay=args.delay)
    method = PfmConfig(delay=args.delay, switching_sigma_px=None, static_px=0.0)
    local = PfmConfig(delay=args.delay, static_px=0.0)
    print(f"{'movie':>16} {'seed':>4} {'drift t..t+d rms px (first/pairs)':>34} "
          f"{'pinned':>6} {'method':>6} {'+pairs':>6} {'+local':>6} {'default':>7}")
    for mode, frames, size in MOVIES:
        for seed in args.seeds:
            sim = synth_pfm_movie(frames, size, seed=seed, mode=mode)
            first, v_first, err_first = windows_and_velocity(sim, "first", config)
            pairs, velocity, err_pairs = windows_and_velocity(sim, "pairs", config)
            known = np.isfinite(velocity)
            print(f"{mode + f' {frames}x{size}':>16} {seed:>4} "
                  f"{f'{err_first:.3f} / {err_pairs:.3f}':>34} "
                  f"{(velocity[known] == 0).mean():>6.2f} {rho(first, v_first, method):>6.3f} "
                  f"{rho(pairs, velocity, method):>6.3f} {rho(pairs, velocity, local):>6.3f} "
                  f"{rho(pairs, velocity, config):>7.3f}")


if __name__ == "__main__":
    main()
