"""Where the structures are lost: the latent plane of finished STEM runs against PCA of
the same windows, per structure, scored against the synthetic truth.

    python benchmarks/eval_plane_vs_pca.py RUN [RUN ...] [--kind atom|hollow] [--top 3]

For each run, the windows of the kind are described five ways: the skip-rVAE's
``(z1, z2)``, 2-, 10- and 30-D PCA of the windows, and the raw pixels. Each is scored by
the yardstick of the runs (5-fold 5-nearest-neighbour classification of the true
structure, structures with 10 or more windows; every axis scaled to unit variance, the
raw pixels as they are): printed, the balanced accuracy over every structure and the
recall of each of the ``--top`` commonest. Where 10-D PCA recalls a structure and the
plane does not, the windows hold it and the two content latents lose it
(docs/chemical-space.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.discovery import knn_balanced_accuracy, pca_features
from latentpath.evaluate import true_window_labels
from latentpath.pipeline import StemRun
from latentpath.rundir import WINDOWS
from latentpath.synth import read_synth_stem

MIN_WINDOWS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="STEM runs on synthetic movies")
    parser.add_argument("--kind", choices=("atom", "hollow"), default="atom")
    parser.add_argument("--top", type=int, default=3, help="structures whose recall to print")
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.runs:
        run = StemRun.read(run_dir)
        truth = read_synth_stem(run.truth)
        latents = run.kinds[args.kind].latents
        labels = true_window_labels(run, truth.atoms, truth.rings, args.kind,
                                    pixel_size_A=truth.pixel_size_A)
        windows = np.load(run_dir / args.kind / WINDOWS)
        counts = labels.value_counts()
        scored = labels.isin(counts[counts >= MIN_WINDOWS].index).to_numpy()
        y = labels.to_numpy()[scored]
        top = [str(s) for s in counts.index[:args.top]]
        views = {"plane (z1, z2)": latents[["z1", "z2"]].to_numpy()}
        for n in (2, 10, 30):
            views[f"{n}-D PCA"] = pca_features(windows, n)
        views["raw pixels"] = windows.reshape(len(windows), -1)
        print(f"{run_dir.name}: {scored.sum()} {args.kind} windows, "
              f"{len(counts[counts >= MIN_WINDOWS])} structures scored")
        for name, features in views.items():
            balanced, recall = knn_balanced_accuracy(features[scored], y,
                                                     standardize=name != "raw pixels")
            print(f"  {name:>15}: every structure {balanced:.3f}; "
                  + ", ".join(f"{s} {recall[s]:.2f}" for s in top))


if __name__ == "__main__":
    main()
