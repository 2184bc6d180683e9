"""The atom-centred chemical-space map of a STEM run, retrained with other settings.

    python benchmarks/eval_atom_map.py latentpath-demo/stem-run [--c-per-frame 120]
        [--seed 1] [--window 9 --window-px 27] [--taper-flat 0.9] [--no-orient]
        [--batch-size 100 --lr 1e-3 --epochs 160 --kl-weight 0.5] [--blobs]

Cuts the run's atom windows again from its window images with the changed settings,
trains the atom skip-rVAE (the run's settings otherwise, sized for the CPU), maps it
and scores the map against the run's synthetic truth as ``latentpath evaluate`` does.
Printed: the windows, the training seconds and the map accuracy of the three
commonest structures and pooled (docs/chemical-space.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script

import latentpath.windows
from latentpath.evaluate import score_chemical_space
from latentpath.graph import CC_BOND_A
from latentpath.latent import chemical_space_map, labels_at, latent_grid
from latentpath.pipeline import StemConfig, read_stem_run
from latentpath.pipeline.stem import cut_kind_windows, window_points
from latentpath.rvae import encode
from latentpath.synth import read_synth_stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a STEM run on a synthetic movie")
    parser.add_argument("--c-per-frame", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--window", dest="window_A", type=float)
    parser.add_argument("--window-px", type=int)
    parser.add_argument("--taper-flat", type=float, help="flat part of the taper (0.8)")
    parser.add_argument("--no-orient", dest="orient_windows", action="store_const",
                        const=False)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--kl-weight", type=float)
    parser.add_argument("--blobs", action="store_true",
                        help="read the map as blobs at a fixed range (the earlier reading)")
    args = parser.parse_args()
    print(machine_line())

    saved = read_stem_run(args.run)
    record = saved["config"]
    truth = read_synth_stem(record["truth"])
    config = StemConfig.from_dict(record["config"])
    changes = {name: getattr(args, name) for name in
               ("seed", "window_A", "window_px", "orient_windows", "batch_size", "lr",
                "epochs", "kl_weight") if getattr(args, name) is not None}
    if args.c_per_frame is not None:
        changes["atoms_per_frame"] = {**config.atoms_per_frame, "C": args.c_per_frame}
    config = dataclasses.replace(config, device="cpu", **changes).for_device("cpu")
    if args.taper_flat is not None:
        latentpath.windows.circular_taper = functools.partial(
            latentpath.windows.circular_taper, flat=args.taper_flat)

    source = np.load(args.run / "window_images.npy", mmap_mode="r")
    movie_shape = truth.movie.shape
    image_px_A = record["pixel_size_A"] * movie_shape[2] / source.shape[2]
    points = window_points(saved["atoms"], saved["rings"], "atom", config)
    windows, table = cut_kind_windows(source, image_px_A, movie_shape, points, config, None)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = config.train_rvae(windows, Path(tmp) / "model", progress=False)
    seconds = time.perf_counter() - began
    latents = encode(model, windows, table=table)
    z1, z2 = latent_grid(latents, config.map_points)
    bond_px = CC_BOND_A / (config.window_A / (config.window_px - 1))
    reading = {"method": "blobs", "value_range": (0.0, 1.0)} if args.blobs else {}
    space = chemical_space_map(model, z1, z2, bond_length_px=bond_px, kind="atom", **reading)
    saved["latents_atom"] = latents.join(labels_at(space, latents).add_prefix("map_"))
    scores = score_chemical_space(saved, truth.atoms, truth.rings,
                                  pixel_size_A=truth.pixel_size_A)
    parts = ", ".join(f"{scores[f'atom_top{k}_structure']} "
                      f"{scores[f'atom_top{k}_map_accuracy']:.3f}" for k in (1, 2, 3))
    print(f"{len(windows)} windows, atom skip-rVAE {seconds:.0f} s; map accuracy: {parts}; "
          f"pooled {scores['atom_common3_map_accuracy']:.3f}")


if __name__ == "__main__":
    main()
