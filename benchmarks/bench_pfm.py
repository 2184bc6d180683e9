"""The PFM pipeline end to end, with its accuracy against the synthetic truth.

    python benchmarks/bench_pfm.py [--frames 100 --size 512 --mode field --seed 0]
        [--epochs N --patience N --max-steps N --cooldown S]

Writes a synthetic switching movie (not timed), runs ``run_pfm`` on it with the default
settings (80 wall windows of 40 px per frame, frames t and t + 2, the CPU-sized
skip-rVAE) and prints the time of each step, the total, and ``score_pfm``'s figures.
Target (issue: PFM): a 100-frame 512 x 512 movie end to end in at most 5 minutes on the
2-core development CPU; switching degree against the true wall velocity at Spearman
0.7 or more; curvature sign right on at least 85 % of single-wall windows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.evaluate import score_pfm
from latentpath.pipeline import PfmConfig, run_pfm
from latentpath.synth.pfm import synth_pfm_movie, write_synth_pfm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--mode", choices=["tip", "field"], default="field")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="skip-rVAE epochs (default: the device's)")
    parser.add_argument("--patience", type=int, help="epochs without a better validation loss")
    parser.add_argument("--max-steps", type=int, help="ceiling of the training steps")
    parser.add_argument("--cooldown", type=float, default=0.0,
                        help="share of the training in which the learning rate falls to 0")
    parser.add_argument("--delay", type=int, default=2)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sim = synth_pfm_movie(args.frames, args.size, seed=args.seed, mode=args.mode)
        movie = write_synth_pfm(sim, Path(tmp) / "movie.npz")
        print(f"synthetic {args.mode} movie, {args.frames} x {args.size}^2: "
              f"{time.perf_counter() - start:.1f} s (not counted)")
        config = PfmConfig(epochs=args.epochs, patience=args.patience,
                           max_steps=args.max_steps, cooldown=args.cooldown, delay=args.delay,
                           seed=args.seed)
        start = time.perf_counter()
        run = run_pfm(movie, Path(tmp) / "run", config, truth=movie)
        total = time.perf_counter() - start
        print(f"end to end: {total:.1f} s ({len(run.latents)} windows)")
        for name, value in score_pfm(run, sim).items():
            print(f"{name:>28}: {value:.3f}" if isinstance(value, float)
                  else f"{name:>28}: {value}")


if __name__ == "__main__":
    main()
