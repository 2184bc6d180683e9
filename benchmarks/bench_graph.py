"""Bond graph speed: atoms -> bonds, primitive rings and ring centres.

    python benchmarks/bench_graph.py [--atoms 10000 --repeats 5]

A graphene sheet of about 10,000 atoms with 2 % vacancies, a hole and 1 % Si, so that
the graph has open boundaries and faces too large to be rings, which are traced and
dropped. Target (issue: chemical space): at most
1 s on the 2-core development CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.graph import find_bonds, find_rings, ring_counts
from latentpath.synth.sheet import graphene_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine_line())
    rng = np.random.default_rng(0)
    side = np.sqrt(args.atoms / 0.38)  # graphene holds 0.38 atoms per A^2
    sheet = graphene_sheet((0, side, 0, side), angle_deg=10.0, ripple_amplitude_A=0.0, rng=rng)
    pos = sheet.pos[sheet.alive_indices()][:, ::-1]
    keep = rng.random(len(pos)) > 0.02
    keep &= np.linalg.norm(pos - side / 2, axis=1) > side / 10
    pos = pos[keep]
    species = np.where(rng.random(len(pos)) < 0.01, "Si", "C")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bonds = find_bonds(pos, species)
        rings = find_rings(pos, bonds)
        ring_counts(len(pos), rings)
        times.append(time.perf_counter() - start)
    sizes = dict(zip(*np.unique(rings["size"], return_counts=True), strict=True))
    print(f"{len(pos)} atoms -> {len(bonds)} bonds, {len(rings)} rings "
          f"(sizes {{{', '.join(f'{k}: {v}' for k, v in sizes.items())}}}): "
          f"{np.median(times):.3f} s median of {args.repeats} (target 1 s)")


if __name__ == "__main__":
    main()
