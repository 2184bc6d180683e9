"""Tracking and transition accuracy on a synthetic movie, from its frames to scores.

    python benchmarks/eval_tracks.py [--frames 50 --size 512 --seed 1 --si-fraction 0.03]

Makes a synthetic movie (more Si than the demo's, so that the figures rest on more
tracks), finds the atoms with the shipped U-Net, builds each frame's bond graph, then
drift, Si tracks and chemical states exactly as `latentpath stem` does, and scores them
against the truth's persistent atom ids. Targets (issue: transformation pathways): MOTA
at least 0.95; at least 90 % of true Si coordination changes found within one frame; at
most one false transition per 20 tracked atom-frames.
"""

from __future__ import annotations

import argparse
import time

from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.evaluate import score_tracks
from latentpath.io import Movie
from latentpath.pipeline import StemConfig, atoms_and_probabilities, frame_graphs, track_atoms
from latentpath.synth import synth_stem_movie


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--si-fraction", type=float, default=0.03)
    args = parser.parse_args()
    print(machine_line())
    start = time.perf_counter()
    sim = synth_stem_movie(args.frames, args.size, seed=args.seed, si_fraction=args.si_fraction,
                           progress=True)
    print(f"synthetic movie: {time.perf_counter() - start:.0f} s; "
          f"{len(sim.events)} events, of which "
          f"{sim.events.kind.str.startswith('si_').sum()} Si hops and re-coordinations")
    movie = Movie(sim.movie, pixel_size=sim.pixel_size_A, pixel_unit="A")
    config = StemConfig(device="cpu")
    start = time.perf_counter()
    atoms, _, _ = atoms_and_probabilities(movie, config, progress=False)
    atoms, _ = frame_graphs(atoms, sim.pixel_size_A)
    found_s = time.perf_counter() - start
    start = time.perf_counter()
    tracks, _ = track_atoms(atoms, movie.data.shape[1:], sim.pixel_size_A, config)
    print(f"atoms and graphs: {found_s:.1f} s; drift, tracks and states: "
          f"{time.perf_counter() - start:.2f} s")
    scores = score_tracks(tracks, sim.atoms, pixel_size_A=sim.pixel_size_A,
                          frame_shape=movie.data.shape[1:])
    for name, value in scores.items():
        print(f"{name:>36}: {value:.4f}")


if __name__ == "__main__":
    main()
