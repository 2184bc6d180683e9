"""Chemical-space map speed: a 200 x 200 grid of latents -> decoded images -> atoms ->
one bond graph -> rings at each image's centre.

    python benchmarks/bench_latent_map.py [--points 200 --hidden 128 --layers 3]
        [--coarse-step 4]
    python benchmarks/bench_latent_map.py --run RUN [--points 200]

The model is a skip-rVAE trained briefly on hollow-site ring windows of 24 px (so the
decoded images hold real rings and the graph work is realistic); the timing covers
decoding (bfloat16 where the CPU has it), blob finding and the graph, split by stage.
Target (issue: chemical space): a 200 x 200 map in at most 60 s on the 2-core CPU.
``--coarse-step N`` also times the map read coarse to fine (every N-th point first, then
only where neighbours differ; the pipeline's default is 4) and prints how much of it
agrees with the full map. ``--run RUN`` times instead the atom and hollow maps of a
finished STEM run's own models, read in full and coarse to fine from every 2nd to 16th
point, and prints the share of the grid and of the run's windows whose class is the
full map's. The published notebook decodes and analyses one grid point
at a time; the last line times that way on a sample of points, for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath import rundir
from latentpath.graph import CC_BOND_A, KINDS
from latentpath.latent import (
    _plane,
    centre_rings,
    chemical_space_map,
    find_decoded_atoms,
    labels_at,
    latent_grid,
)
from latentpath.pipeline import StemRun
from latentpath.rvae import decode, encode, fit_rvae, load_rvae
from latentpath.synth.motifs import synth_motif_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--window-px", type=int, default=24)
    parser.add_argument("--decode-px", type=int,
                        help="decode the map on this grid instead of the window's")
    parser.add_argument("--coarse-step", type=int, default=4,
                        help="also time the map read coarse to fine from this step")
    parser.add_argument("--one-by-one", type=int, default=200,
                        help="points timed one at a time, as the published notebook does")
    parser.add_argument("--run", type=Path, help="time the maps of this STEM run's models")
    args = parser.parse_args()
    print(machine_line())
    if args.run is not None:
        time_run_maps(args.run, args.points)
        return
    pixel_A = 8.0 / (args.window_px - 1)
    windows, _ = synth_motif_windows(2000, window_px=args.window_px, pixel_size_A=pixel_A,
                                     ring_sizes=(5, 6, 7, 8), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        fit_rvae(windows, Path(tmp) / "m", hidden=args.hidden, layers=args.layers, epochs=30,
                 lr=1e-3, seed=0, progress=False)
        model = load_rvae(Path(tmp) / "m")
    z1, z2 = latent_grid(encode(model, windows), args.points)
    bond_px = CC_BOND_A / pixel_A
    start = time.perf_counter()
    space = chemical_space_map(model, z1, z2, bond_length_px=bond_px, kind="hollow",
                               size=args.decode_px)
    total = time.perf_counter() - start
    z = _plane(z1, z2, model.config.latent_dim)[:4096]
    t0 = time.perf_counter()
    images = decode(model, z, precision="auto", batch_size=4096)
    t1 = time.perf_counter()
    atoms = find_decoded_atoms(images)
    t2 = time.perf_counter()
    centre_rings(atoms, len(images), args.window_px, bond_px, kind="hollow")
    t3 = time.perf_counter()
    share = np.array([t1 - t0, t2 - t1, t3 - t2])
    share = share / share.sum()
    n = args.points**2
    print(f"{args.points} x {args.points} map ({n} decoded "
          f"{args.decode_px or args.window_px} px images, "
          f"decoder {args.layers} x {args.hidden}): {total:.1f} s (target 60 s); "
          f"decode {share[0]:.0%}, blobs {share[1]:.0%}, graph {share[2]:.0%}; "
          f"{space.physical.mean():.0%} of the map physical")
    start = time.perf_counter()
    refined = chemical_space_map(model, z1, z2, bond_length_px=bond_px, kind="hollow",
                                 size=args.decode_px, coarse_step=args.coarse_step)
    seconds = time.perf_counter() - start
    agree = (refined.counts == space.counts).all(-1).mean()
    print(f"read coarse to fine from every {args.coarse_step}th point: {seconds:.1f} s "
          f"({total / seconds:.1f}x faster), {agree:.2%} of the grid as the full map")
    if args.one_by_one < 1:
        return
    t0 = time.perf_counter()
    for row in z[: args.one_by_one]:
        image = decode(model, row[None], precision="float32")
        centre_rings(find_decoded_atoms(image), 1, args.window_px, bond_px, kind="hollow")
    each = (time.perf_counter() - t0) / args.one_by_one
    print(f"one point at a time: {each * 1e3:.1f} ms per point -> {each * n:.0f} s for the "
          f"map ({each * n / total:.0f}x slower)")


def time_run_maps(run_dir: Path, points: int) -> None:
    """Each window kind's map of a finished run, in full and coarse to fine."""
    run = StemRun.read(run_dir)
    bond_px = rundir.read_run_record(run_dir)["window_bond_length_px"]
    for kind in KINDS:
        model, latents = load_rvae(run_dir / kind / "model"), run.kinds[kind].latents
        z1, z2 = latent_grid(latents, points)
        full = None
        for step in (None, 2, 4, 8, 16):
            start = time.perf_counter()
            space = chemical_space_map(model, z1, z2, bond_length_px=bond_px, kind=kind,
                                       coarse_step=step)
            seconds = time.perf_counter() - start
            if full is None:
                full = space
            grid = (space.counts == full.counts).all(-1).mean()
            windows = (labels_at(space, latents).structure
                       == labels_at(full, latents).structure).mean()
            print(f"{kind} map, {points} x {points}, "
                  f"{'every point' if step is None else f'from every {step}th'}: "
                  f"{seconds:.1f} s; as the full map: {grid:.2%} of the grid, "
                  f"{windows:.2%} of the {len(latents)} windows")


if __name__ == "__main__":
    main()
