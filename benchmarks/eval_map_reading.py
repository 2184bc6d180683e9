"""The chemical-space maps of finished STEM runs on synthetic movies, read again in
several ways and scored against the truth: what the reading of decoded images adds,
with the models held fixed.

    python benchmarks/eval_map_reading.py RUN [RUN ...] [--kind atom hollow]
        [--map-points 200] [--top 8] [--edges] [--readings NAME ...]

For each run and window kind the 200 x 200 map is decoded once at every point,
resampled to the run's ``map_read_px`` and read as
:func:`latentpath.latent.read_structures` reads it, one change at a time
(``--readings`` picks some):

- ``one level``: atoms at 0.5 of each image's range only;
- ``+ 0.4``: images whose structure does not close read again at 0.4;
- ``stand-in anywhere``: and a third time with one missing ring atom stood in for,
  wherever two atoms leave room for one (as before issue 20's seventeenth stop);
- ``stand-in at 0.2``, ``stand-in at 0.25``, ``+ stand-in``: the same, only where the
  image at the missing atom's place is as bright as 0.2, 0.25 or
  :data:`latentpath.latent.STAND_IN_LEVEL` (0.3, the default);
- ``smear 2.5 l``: the default reading, with smeared atoms counted out to 2.5 bond
  lengths for hollow windows too (as before issue 20's third stop);
- ``fixed smear``: the default reading with a smeared atom any blob larger than the
  fixed disc of 0.45 bond lengths, however broad its image's atoms (as before issue
  20's eleventh stop); ``smear x1.3``, ``smear x2``: larger than the disc and 1.3 or 2
  times the image's median atom (the default is :data:`latentpath.latent.SMEAR_RATIO`);
- ``retry edges``: the default reading with the retries also for atom images whose
  centre atom has one or two bonds at the first level (edge atoms; as before issue
  20's eleventh stop); ``fixed smear, retry edges``: both as before.
- ``bonds to 1.2``, ``bonds to 1.25``, ``bonds to 1.35``, ``bonds to 1.4``: the
  default reading with decoded atoms bonded up to 1.2 (the method's window, as before
  issue 20's nineteenth stop), 1.25, 1.35 or 1.4 bond lengths apart instead of
  :data:`latentpath.latent.DECODED_BOND_HIGH` (1.3).

Every other reading bonds the decoded atoms as the default does, so each differs from
today's default in one thing only.

Printed: the share of the windows of each of the ``--top`` commonest true structures
whose map class is that structure, and the share read as unphysical. ``--edges`` counts
the atoms at the rim of a hole ("6-6", "6") among the structures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.evaluate import true_window_labels
from latentpath.graph import CC_BOND_A, RING_SIZES
from latentpath.latent import (
    ChemicalSpaceMap,
    decoded_grid,
    labels_at,
    latent_grid,
    read_structures,
    resample_images,
)
from latentpath.pipeline import StemRun
from latentpath.rvae import load_rvae
from latentpath.synth import read_synth_stem

READINGS = {"one level": {"retry_threshold": None, "bridge_gaps": False},
            "+ 0.4": {"bridge_gaps": False},
            "stand-in anywhere": {"stand_in_level": None},
            "stand-in at 0.2": {"stand_in_level": 0.2},
            "stand-in at 0.25": {"stand_in_level": 0.25},
            "+ stand-in": {},
            "smear 2.5 l": {"smear_reach": 2.5},
            "fixed smear": {"smear_ratio": None},
            "smear x1.3": {"smear_ratio": 1.3},
            "smear x2": {"smear_ratio": 2.0},
            "retry edges": {"retry_edges": True},
            "fixed smear, retry edges": {"smear_ratio": None, "retry_edges": True},
            "bonds to 1.2": {"bond_high": 1.2},
            "bonds to 1.25": {"bond_high": 1.25},
            "bonds to 1.35": {"bond_high": 1.35},
            "bonds to 1.4": {"bond_high": 1.4}}


def read_map(images: list[np.ndarray], bond_px: float, kind: str, reading: str) -> np.ndarray:
    """Ring counts of every decoded image, read one way."""
    return np.concatenate([read_structures(im, bond_px, kind=kind, **READINGS[reading])
                           for im in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--kind", nargs="+", choices=("atom", "hollow"),
                        default=["atom", "hollow"])
    parser.add_argument("--map-points", type=int, default=200)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--edges", action="store_true",
                        help="score atoms of one or two rings (at a hole's rim) too")
    parser.add_argument("--readings", nargs="+", choices=tuple(READINGS),
                        default=list(READINGS))
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.runs:
        run = StemRun.read(run_dir)
        truth = read_synth_stem(run.truth)
        window_A = run.settings.window_A
        for kind in args.kind:
            latents = run.kinds[kind].latents
            model = load_rvae(run_dir / kind / "model")
            w = model.config.window_px
            bond_px = CC_BOND_A / (window_A / (w - 1))
            z1, z2 = latent_grid(latents, args.map_points)
            # read as the run read it: on the decoder's grid resampled to map_read_px
            read_px = run.settings.map_read_px or w
            bond_px *= (read_px - 1) / (w - 1)
            images = [resample_images(im, read_px) for im in decoded_grid(model, z1, z2)]
            true = true_window_labels(run, truth.atoms, truth.rings, kind,
                                      pixel_size_A=truth.pixel_size_A, edges=args.edges)
            top = true.value_counts().index[:args.top]
            print(f"{run_dir.name} {kind}: {len(latents)} windows; "
                  + ", ".join(f"{t} {int((true == t).sum())}" for t in top))
            for reading in args.readings:
                counts = read_map(images, bond_px, kind, reading)
                space = ChemicalSpaceMap(np.asarray(z1), np.asarray(z2),
                                         counts.reshape(len(z2), len(z1), len(RING_SIZES)),
                                         kind)
                named = labels_at(space, latents)["structure"]
                shares = " ".join(f"{t}:{(named[true == t] == t).mean():.2f}" for t in top)
                print(f"  {reading:17s} {shares} | unphysical "
                      f"{(named == 'unphysical').mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
