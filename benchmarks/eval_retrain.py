"""One window kind of a STEM run, retrained with other settings and scored by the
discovery yardstick against the bond graph and the synthetic truth.

    python benchmarks/eval_retrain.py RUN --kind atom|hollow [--per-frame N|-1]
        [--balance POWER] [--epochs N --patience N --max-steps N --min-steps N
        --cooldown S] [--seed N]
        [--pixel-fraction F] [--balance-edges]
        [--batch-size N --lr LR --kl-weight W --latent-dim K --hidden N --no-compile]
        [--neighbour-weight W]
        [--window A --window-px N --map-px N --read-px N]
        [--taper-flat 0.8] [--no-orient] [--blobs] [--regraph] [--map-points 200]
        [--render-atoms SIGMA_A] [--centre-weight SIGMA]

Cuts the kind's windows again from the run's window images (``--per-frame``: C atoms
or rings per frame, -1 for all), trains its skip-rVAE with the run's settings changed
by the flags (sized for the CPU), maps it, and prints: the windows, the training steps,
stop and seconds, then against the graph and the truth the latent plane's 5-fold 5-NN
balanced accuracy beside 2-D and 10-D PCA, each structure's recall, and the map's
agreement per structure (docs/chemical-space.md, issue 20); for atom windows also the
map's accuracy on the three commonest true structures and pooled, as ``latentpath
evaluate`` scores it. ``--blobs`` reads the map as blobs at a fixed range (the earlier
reading), ``--taper-flat`` sets the flat part of the round taper, ``--render-atoms``
cuts the windows from an image of the run's found atoms instead of its window images,
``--centre-weight`` weighs the reconstruction error towards the window's centre,
``--balance-edges`` draws atom windows balanced with the atoms at a hole's rim named by
their rings ("6-6", "6", ...) instead of counted as one structure with the atoms of no
ring (issue 20's twentieth stop).
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

import latentpath.rvae
import latentpath.windows
from latentpath.discovery import (
    DiscoveryScore,
    graph_labels,
    knn_balanced_accuracy,
    score_discovery,
)
from latentpath.evaluate import score_chemical_space, true_window_labels
from latentpath.latent import chemical_space_map, labels_at, latent_grid
from latentpath.pipeline import StemRun
from latentpath.pipeline.stem import (
    cut_kind_windows,
    frame_graphs,
    structure_weights,
    window_points,
)
from latentpath.rvae import balanced_weights, encode, training_record
from latentpath.synth import read_synth_stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a STEM run on a synthetic movie")
    parser.add_argument("--kind", choices=("atom", "hollow"), default="atom")
    parser.add_argument("--per-frame", type=int,
                        help="C-centred or hollow windows per frame (-1: all)")
    parser.add_argument("--balance", dest="balance_power", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--min-steps", type=int, help="no patience stop before this step")
    parser.add_argument("--cooldown", type=float, help="share of training with a falling lr")
    parser.add_argument("--pixel-fraction", type=float,
                        help="share of each window's pixels decoded in a training step")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--kl-weight", type=float)
    parser.add_argument("--hidden", type=int, help="units per layer of the skip-rVAE")
    parser.add_argument("--no-compile", dest="compile", action="store_false", default=None)
    parser.add_argument("--latent-dim", type=int,
                        help="content latents; above 2 the 5-NN score of all of them is "
                             "printed beside the (z1, z2) plane's")
    parser.add_argument("--taper-flat", type=float, help="flat part of the taper (0.8)")
    parser.add_argument("--no-orient", dest="orient_windows", action="store_const",
                        const=False)
    parser.add_argument("--blobs", action="store_true",
                        help="read the map as blobs at a fixed range (the earlier reading)")
    parser.add_argument("--regraph", action="store_true",
                        help="recompute the bonds, rings and bond frames of the run's atoms "
                             "with the installed code (e.g. after a change of the frames)")
    parser.add_argument("--centre-weight", type=float, metavar="SIGMA",
                        help="weigh each pixel's reconstruction error by 0.2 + a Gaussian "
                             "of this sigma (window half-widths) around the centre")
    parser.add_argument("--render-atoms", type=float, metavar="SIGMA_A",
                        help="cut the windows from an image of the run's found atoms, each a "
                             "Gaussian of this sigma (angstrom), instead of its window images")
    parser.add_argument("--window", dest="window_A", type=float)
    parser.add_argument("--window-px", type=int)
    parser.add_argument("--map-px", type=int,
                        help="decode the map's images on this many samples a side "
                             "(default: the windows')")
    parser.add_argument("--read-px", dest="map_read_px", type=int,
                        help="resample the map's images to this many samples a side "
                             "before reading them (default: the run's map_read_px)")
    parser.add_argument("--map-points", type=int, default=200)
    parser.add_argument("--balance-edges", action="store_true",
                        help="balance atom windows with rim atoms named by their rings")
    parser.add_argument("--neighbour-weight", type=float,
                        help="weight of the neighbour-keeping term (0: none)")
    args = parser.parse_args()
    print(machine_line())

    saved = StemRun.read(args.run)
    truth = read_synth_stem(saved.truth)
    config = saved.settings
    changes = {name: getattr(args, name) for name in
               ("seed", "epochs", "patience", "max_steps", "min_steps", "cooldown",
                "pixel_fraction",
                "batch_size", "lr", "kl_weight", "latent_dim", "hidden", "compile",
                "window_A", "window_px", "map_read_px", "balance_power", "orient_windows",
                "neighbour_weight")
               if getattr(args, name) is not None}
    if args.per_frame is not None:
        chosen = None if args.per_frame < 0 else args.per_frame
        if args.kind == "atom":
            changes["atoms_per_frame"] = {**config.atoms_per_frame, "C": chosen}
        else:
            changes["hollow_per_frame"] = chosen
    config = dataclasses.replace(config, device="cpu", **changes).for_device("cpu") \
        .for_kind(args.kind)
    if args.centre_weight:
        half = (config.window_px - 1) / 2
        yy, xx = np.mgrid[:config.window_px, :config.window_px]
        r = np.hypot(yy - half, xx - half) / half
        latentpath.rvae.fit_rvae = functools.partial(
            latentpath.rvae.fit_rvae,
            pixel_weights=0.2 + np.exp(-0.5 * (r / args.centre_weight) ** 2))
    if args.taper_flat is not None:
        latentpath.windows.circular_taper = functools.partial(
            latentpath.windows.circular_taper, flat=args.taper_flat)

    source = np.load(args.run / "window_images.npy", mmap_mode="r")
    movie_shape = truth.movie.shape
    image_px_A = saved.pixel_size_A * movie_shape[2] / source.shape[2]
    atoms, rings = saved.atoms, saved.rings
    if args.regraph:
        atoms, rings = frame_graphs(atoms[["frame", "y", "x", "species", "score"]],
                                    saved.pixel_size_A)
        saved = dataclasses.replace(saved, atoms=atoms, rings=rings)
    if args.render_atoms:
        source = render_atoms(atoms, source.shape, movie_shape, image_px_A, args.render_atoms)
    points = window_points(atoms, rings, args.kind, config)
    windows, table = cut_kind_windows(source, image_px_A, movie_shape, points, config, None)
    graph = graph_labels(table, atoms, rings, args.kind)
    if args.balance_edges and args.kind == "atom" and config.balance_power["atom"]:
        rims = graph_labels(table, atoms, rings, "atom", edges=True).fillna("other")
        weights = balanced_weights(rims.to_numpy(), config.balance_power["atom"])
    else:
        weights = structure_weights(table, atoms, rings, args.kind,
                                    config.balance_power[args.kind])
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = config.train_rvae(windows, Path(tmp) / "model", progress=False,
                                  sample_weights=weights)
        stop = training_record(Path(tmp) / "model")
    seconds = time.perf_counter() - began
    latents = encode(model, windows, table=table)
    z1, z2 = latent_grid(latents, args.map_points)
    bond_px = config.window_bond_px
    reading = {"method": "blobs", "value_range": (0.0, 1.0)} if args.blobs else {}
    space = chemical_space_map(model, z1, z2, bond_length_px=bond_px, kind=args.kind,
                               size=args.map_px, read_px=config.map_read_px, **reading)
    latents = latents.join(labels_at(space, latents).add_prefix("map_"))
    retrained = dataclasses.replace(saved.kinds[args.kind], latents=latents, map=space)
    saved = dataclasses.replace(saved, kinds={**saved.kinds, args.kind: retrained})
    truth_labels = true_window_labels(saved, truth.atoms, truth.rings, args.kind,
                                      pixel_size_A=truth.pixel_size_A)
    print(f"{len(windows)} {args.kind} windows; {stop.steps} steps ({stop.reason}, best "
          f"epoch {stop.best_epoch}) in {seconds:.0f} s")
    for reference, labels in (("graph", graph), ("truth", truth_labels)):
        print(f"  {reference}: " + _line(score_discovery(latents, windows, labels,
                                                         kind=args.kind,
                                                         reference=reference)))
    if config.latent_dim > 2:
        columns = [f"z{i}" for i in range(1, config.latent_dim + 1)]
        for reference, labels in (("graph", graph), ("truth", truth_labels)):
            scored = labels.notna().to_numpy()
            value, _ = knn_balanced_accuracy(latents.loc[scored, columns].to_numpy(),
                                             labels[scored].to_numpy())
            print(f"  {reference}: all {config.latent_dim} latents {value:.3f}")
    if args.kind == "atom":
        scores = score_chemical_space(saved, truth.atoms, truth.rings,
                                      pixel_size_A=truth.pixel_size_A)
        parts = ", ".join(f"{scores[f'atom_top{k}_structure']} "
                          f"{scores[f'atom_top{k}_map_accuracy']:.3f}" for k in (1, 2, 3))
        print(f"  map accuracy: {parts}; pooled {scores['atom_common3_map_accuracy']:.3f}")


def render_atoms(atoms, shape: tuple[int, ...], movie_shape: tuple[int, ...],
                 image_px_A: float, sigma_A: float) -> np.ndarray:
    """Frames (T, h, w) of unit Gaussians of ``sigma_A`` at the atoms' positions."""
    scale = shape[2] / movie_shape[2]
    sigma = sigma_A / image_px_A
    reach = int(np.ceil(4 * sigma))
    out = np.zeros(shape, np.float32)
    offsets = np.arange(-reach, reach + 1)
    for frame, group in atoms.groupby("frame"):
        ys = (group.y.to_numpy() + 0.5) * scale - 0.5
        xs = (group.x.to_numpy() + 0.5) * scale - 0.5
        for y, x in zip(ys, xs, strict=True):
            iy, ix = round(y) + offsets, round(x) + offsets
            gy = np.exp(-0.5 * ((iy - y) / sigma) ** 2)
            gx = np.exp(-0.5 * ((ix - x) / sigma) ** 2)
            ok_y, ok_x = (iy >= 0) & (iy < shape[1]), (ix >= 0) & (ix < shape[2])
            out[frame][np.ix_(iy[ok_y], ix[ok_x])] += np.outer(gy[ok_y], gx[ok_x])
    return out


def _line(score: DiscoveryScore) -> str:
    recall = " ".join(f"{k}:{v:.2f}" for k, v in score.latent_recall.items())
    named = " ".join(f"{k}:{v:.2f}" for k, v in score.map_agreement.items()
                     if k not in score.excluded)
    return (f"latent {score.latent:.3f}, 2-D PCA {score.pca2:.3f}, 10-D PCA "
            f"{score.pca10:.3f} | recall {recall} | map {named}")


if __name__ == "__main__":
    main()
