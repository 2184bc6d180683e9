"""Tracking speed and accuracy: drift and linking of 100 frames of 5,000 atoms.

    python benchmarks/bench_tracks.py [--atoms 5000 --frames 100 --species all]

A graphene sheet of about 5,000 atoms with a hole and 1 % Si drifts through the movie
(random-walk velocity, up to about 1 A per frame), every atom jitters by 0.05 A, 1 % of
the detections of each frame are missed, and atoms sputter away from the hole's edge.
Ids are known, so the figures include MOTA. Target (issue: transformation pathways):
linking 100 frames of 5,000 atoms in at most 10 s on the 2-core development CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.synth.sheet import graphene_sheet
from latentpath.tracks import estimate_drift, link_atoms

PX = 0.1  # angstrom per pixel of the imagined movie


def movie_atoms(n_atoms: int, n_frames: int, rng: np.random.Generator
                ) -> tuple[pd.DataFrame, tuple[int, int], np.ndarray]:
    side = np.sqrt(n_atoms / 0.38)  # graphene holds 0.38 atoms per A^2
    margin = 15.0
    sheet = graphene_sheet((-margin, side + margin, -margin, side + margin), angle_deg=10.0,
                           ripple_amplitude_A=0.0, rng=rng)
    pos = sheet.pos[sheet.alive_indices()][:, ::-1]
    centre = np.array([side / 2, side / 2])
    pos = pos[np.linalg.norm(pos - centre, axis=1) > side / 12]
    species = np.where(rng.random(len(pos)) < 0.01, "Si", "C")
    velocity = np.zeros(2)
    drift = np.zeros(2)
    drifts = []
    rows = []
    for t in range(n_frames):
        velocity = 0.8 * velocity + rng.normal(0, 0.3, 2)
        drift = drift + velocity
        drifts.append(drift)
        # the hole grows: atoms near its edge sputter away
        hole_A = side / 12 + 0.05 * t
        alive = np.linalg.norm(pos - centre, axis=1) > hole_A
        seen_A = pos + drift + rng.normal(0, 0.05, pos.shape)
        inside = ((seen_A >= 0) & (seen_A < side)).all(1)
        detected = alive & inside & (rng.random(len(pos)) > 0.01)
        idx = np.flatnonzero(detected)
        rows.append(pd.DataFrame({"frame": t, "id": idx, "y": seen_A[idx, 0] / PX,
                                  "x": seen_A[idx, 1] / PX, "species": species[idx]}))
    size = int(np.ceil(side / PX))
    drifts = np.array(drifts) / PX
    return pd.concat(rows, ignore_index=True), (size, size), drifts - drifts[0]


def mota(tracks: pd.DataFrame, atoms: pd.DataFrame) -> float:
    """Detections are exact here, so only identity switches and split tracks count."""
    ids = atoms.loc[tracks.atom, "id"].to_numpy()
    seen = pd.DataFrame({"id": ids, "frame": tracks.frame.to_numpy(),
                         "track": tracks.track.to_numpy()}).sort_values(["id", "frame"])
    switches = ((seen.id.diff() == 0) & (seen.track.diff() != 0)).sum()
    return 1.0 - switches / len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--species", default="all", help="'all' or one species, e.g. Si")
    args = parser.parse_args()
    print(machine_line())
    atoms, shape, true_drift = movie_atoms(args.atoms, args.frames, np.random.default_rng(0))
    per_frame = atoms.groupby("frame").size()
    print(f"{args.frames} frames, {per_frame.mean():.0f} atoms per frame "
          f"({len(atoms)} atom-frames)")
    start = time.perf_counter()
    drift = estimate_drift(atoms, PX, shape)
    drift_s = time.perf_counter() - start
    species = None if args.species == "all" else (args.species,)
    start = time.perf_counter()
    tracks = link_atoms(atoms, PX, species=species, drift=drift)
    link_s = time.perf_counter() - start
    print(f"drift: {drift_s:.2f} s; linking: {link_s:.2f} s; together: {drift_s + link_s:.2f} s "
          f"(target 10 s)")
    error_A = np.hypot(*(drift[["dy", "dx"]].to_numpy() - true_drift).T) * PX
    print(f"drift error: largest {error_A.max():.3f} A, mean {error_A.mean():.3f} A "
          f"(drift up to {np.abs(np.diff(true_drift, axis=0)).max() * PX:.2f} A per frame)")
    print(f"{tracks.track.nunique()} tracks; MOTA {mota(tracks, atoms):.4f}; "
          f"gaps bridged: {(tracks.gap_before > 0).sum()}")


if __name__ == "__main__":
    main()
