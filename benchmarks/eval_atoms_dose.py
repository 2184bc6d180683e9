"""Atom finding at low dose on varied synthetic movies: the spread, not one movie.

    python benchmarks/eval_atoms_dose.py [--model DIR] [--seeds 2] [--frames 4]
        [--precision auto|float32|bfloat16] [--faint-level 0.6|none] [--first-seed N]
        [--augment]

Movies of 384 x 384 px from both of the simulator's imaging models (a Gaussian probe
with tails; an aperture-limited probe with a finite source), contrast exponents 1.64
and 2.0, pixel sizes 0.08 and 0.15 A/px, at 2e4 and 1e5 e/A^2, seeds never used in
training; 40 % holes and amorphous carbon by the last frame. Printed: F1 (match
radius 0.5 A), C/Si accuracy and the matched atoms' mean distance from the truth per
movie, then their min / median / max per dose, and F1 pooled over each dose's movies
(every movie's atoms counted together).
Issue 22's targets (on another simulator's movies): F1 >= 0.99 at 2e4 and >= 0.995 at
1e5, C/Si accuracy >= 0.99.
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import pandas as pd
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.atoms import find_atoms, load_model
from latentpath.evaluate import score_atoms
from latentpath.synth import synth_stem_movie

SEED0 = 8_000_001  # far from the training script's seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the shipped weights)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="of the segmentation network (auto: find_atoms' default)")
    parser.add_argument("--faint-level", default="0.6",
                        help="find_atoms' faint_level ('none' keeps the ghosts)")
    parser.add_argument("--augment", action="store_true",
                        help="find_atoms(augment=True): the network averaged over the eight "
                             "rotations and reflections")
    parser.add_argument("--first-seed", type=int, default=SEED0,
                        help="of the movies (another one gives a held-out table)")
    args = parser.parse_args()
    faint = None if args.faint_level == "none" else float(args.faint_level)
    print(machine_line())
    model = load_model(args.model, device="cpu")
    rows = []
    grid = itertools.product((2e4, 1e5), ("gauss-tail", "aperture"), (1.64, 2.0),
                             (0.08, 0.15), range(args.seeds))
    for k, (dose, render, z, px, seed) in enumerate(grid):
        sim = synth_stem_movie(args.frames, 384, pixel_size_A=px, seed=args.first_seed + k,
                               dose_e_per_A2=dose, render_model=render, z_exponent=z,
                               final_disorder=0.4, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = find_atoms(sim.movie, pixel_size_A=px, model=model, device="cpu",
                               precision=args.precision, faint_level=faint,
                               augment=args.augment)
        s = score_atoms(found, sim.atoms, pixel_size_A=px, image_shape=sim.movie.shape[1:])
        rows.append({"dose": dose, "render": render, "z": z, "px": px, "seed": seed,
                     "f1": s["f1"], "species_accuracy": s["species_accuracy"],
                     "si_recall": s["si_recall"], "error_A": s["mean_error_A"],
                     "matched": s["recall"] * s["n_true"], "n_found": s["n_found"],
                     "n_true": s["n_true"]})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby("dose")[["f1", "species_accuracy", "si_recall", "error_A"]].agg(
        ["min", "median", "max"])
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print(summary)
        print(table.groupby(["dose", "render"]).f1.agg(["min", "median", "max"]))
        sums = table.groupby("dose")[["matched", "n_found", "n_true"]].sum()
        pooled = 2 * sums.matched / (sums.n_found + sums.n_true)
        print("F1 pooled over the movies: " + ", ".join(
            f"{dose:.0e} e/A^2 {value:.4f}" for dose, value in pooled.items()))


if __name__ == "__main__":
    main()
