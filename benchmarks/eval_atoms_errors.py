"""Where the atom finder errs on the weakest low-dose movies, and what a score cut would cost.

    python benchmarks/eval_atoms_errors.py [--dose 2e4] [--frames 4] [--first-seed 8000001]

The movies of ``eval_atoms_dose.py`` with the aperture-limited probe at 0.08 A/px (the
weakest of its table: about one count per pixel in a carbon peak at 2e4 e/A^2), found
with the shipped weights and the defaults. Printed per movie: the missed atoms by the
simulator's region and by the rings they belong to; the false atoms by the region of
the nearest true atom (``hole`` beyond 2.2 A) and how many of those atoms are
plain lattice (6,6,6); how many false atoms stand within 1.2 A
of a missed one (one atom placed more than the 0.5 A match radius away); and the true
and false atoms a cut on the network's score would drop.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from common import machine_line  # benchmarks/common.py, beside this script
from scipy.spatial import cKDTree

from latentpath.atoms import find_atoms, load_model
from latentpath.atoms.match import match_atoms
from latentpath.evaluate import HOLE_DISTANCE_A
from latentpath.synth import synth_stem_movie

SEED0 = 8_000_001  # eval_atoms_dose.py's first seed
#: eval_atoms_dose.py's grid index of its aperture-limited 0.08 A/px movies at each dose
#: (dose, render, z, px, seed nested in that order), with their contrast exponent
MOVIES = ((8, 1.64), (9, 1.64), (12, 2.0), (13, 2.0))
PX_A = 0.08
CUTS = (0.7, 0.8, 0.9, 0.95)


def _inside(table: pd.DataFrame, size: int, margin_px: float) -> np.ndarray:
    y, x = table["y"].to_numpy(), table["x"].to_numpy()
    return (y >= margin_px) & (x >= margin_px) & (y <= size - 1 - margin_px) \
        & (x <= size - 1 - margin_px)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dose", type=float, default=2e4, help="e/A^2 (2e4 or 1e5)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=SEED0)
    args = parser.parse_args()
    print(machine_line())
    model = load_model(None, device="cpu")
    offset = 0 if args.dose == 2e4 else 16
    for k, z in MOVIES:
        sim = synth_stem_movie(args.frames, 384, pixel_size_A=PX_A,
                               seed=args.first_seed + k + offset, dose_e_per_A2=args.dose,
                               render_model="aperture", z_exponent=z, final_disorder=0.4,
                               progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = find_atoms(sim.movie, pixel_size_A=PX_A, model=model, device="cpu")
        size = sim.movie.shape[1]
        # score_atoms' border rule: found atoms beyond 1 A, true ones beyond 1.5 A
        found = found[_inside(found, size, 1.0 / PX_A)].reset_index(drop=True)
        truth = sim.atoms[sim.atoms["in_image"]].reset_index(drop=True)
        pairs = match_atoms(found, truth, 0.5 / PX_A)
        hit = np.zeros(len(found), bool)
        hit[pairs["found"].to_numpy(int)] = True
        seen = np.zeros(len(truth), bool)
        seen[pairs["truth"].to_numpy(int)] = True
        missed = truth[~seen & _inside(truth, size, 1.5 / PX_A)]
        false = found[~hit]
        regions, lattice_rings, near_missed = [], [], 0
        for frame, group in false.groupby("frame"):
            here = truth[truth["frame"] == frame]
            dist, row = cKDTree(here[["y", "x"]].to_numpy()).query(group[["y", "x"]].to_numpy())
            regions += [r if d * PX_A < HOLE_DISTANCE_A else "hole"
                        for r, d in zip(here["region"].to_numpy()[row], dist, strict=True)]
            lattice_rings += list(here["ring_sizes"].to_numpy()[row])
            lost = missed[missed["frame"] == frame]
            if len(lost):
                d, _ = cKDTree(lost[["y", "x"]].to_numpy()).query(group[["y", "x"]].to_numpy())
                near_missed += int((d * PX_A < 1.2).sum())
        scores = found["score"].to_numpy()
        print(f"movie {k} (seed {args.first_seed + k + offset}, z {z}): "
              f"{int(_inside(truth, size, 1.5 / PX_A).sum())} true atoms, {len(missed)} missed, "
              f"{len(false)} false")
        print("  missed by region", missed["region"].value_counts().to_dict(),
              "by rings", missed["ring_sizes"].value_counts().to_dict())
        print("  false by region", pd.Series(regions, dtype=object).value_counts().to_dict(),
              f"; beside a 6,6,6 atom {lattice_rings.count('6,6,6')}"
              f"; within 1.2 A of a missed atom {near_missed}; score median "
              f"{np.median(scores[~hit]):.3f} (all found {np.median(scores):.3f})")
        print("  a score cut would drop: " + "; ".join(
            f"< {c}: {(scores[hit] < c).sum()} true, {(scores[~hit] < c).sum()} false"
            for c in CUTS), flush=True)


if __name__ == "__main__":
    main()
