"""Accuracy of atom finding on synthetic movies never used in training, and figures.

    python benchmarks/eval_atoms.py [--movies 3 --frames 12 --size 512] [--figures docs/figures]

Prints detection F1 (match radius 0.5 A), C/Si accuracy, localisation error and false
atoms per 10 nm^2 of hole or amorphous area, over all frames (early clean to late
disordered), with the shipped model and after self-training on the first 5 frames;
then the F1 against dose, and a figure of the atoms found on the real images.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from latentpath.atoms import find_atoms, load_model, self_train
from latentpath.evaluate import score_atoms
from latentpath.io import load_movie
from latentpath.synth import synth_stem_movie

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# Seeds far from those the training script draws (integers from seed 0's stream).
SEEDS = (7_000_001, 7_000_002, 7_000_003, 7_000_004)


def score_movie(sim, model, self_train_frames: int) -> dict:
    movie = sim.movie
    if self_train_frames:
        model, _ = self_train(movie, n_frames=self_train_frames,
                              pixel_size_A=sim.pixel_size_A, model=model, device="cpu")
    found = find_atoms(movie, pixel_size_A=sim.pixel_size_A, model=model, device="cpu")
    return score_atoms(found, sim.atoms, pixel_size_A=sim.pixel_size_A,
                       frames_table=sim.frames, image_shape=movie.shape[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    model = load_model()
    rows = []
    for seed in SEEDS[: args.movies]:
        sim = synth_stem_movie(args.frames, args.size, seed=seed)
        for n_self in (0, 5):
            scores = score_movie(sim, model, n_self)
            rows.append({"seed": seed, "self_train_frames": n_self,
                         "final_disorder": sim.frames.disorder_fraction.iloc[-1], **scores})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    cols = ["seed", "self_train_frames", "final_disorder", "f1", "precision", "recall",
            "species_accuracy", "si_recall", "mean_error_A", "false_per_10nm2_disordered"]
    print(table[cols].round(4).to_string(index=False))
    print("mean by self-training:")
    print(table.groupby("self_train_frames")[cols[3:]].mean().round(4).to_string())

    doses = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    curve = []
    for dose in doses:
        sim = synth_stem_movie(4, 384, seed=SEEDS[-1], dose_e_per_A2=dose, final_disorder=0.4)
        found = find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, model=model, device="cpu")
        s = score_atoms(found, sim.atoms, pixel_size_A=sim.pixel_size_A,
                        image_shape=sim.movie.shape[1:])
        curve.append({"dose_e_per_A2": dose, "c_peak_counts": dose * 0.01 * 0.01, **s})
    curve = pd.DataFrame(curve)
    print(curve[["dose_e_per_A2", "c_peak_counts", "f1", "species_accuracy",
                 "mean_error_A"]].round(4).to_string(index=False))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx(curve.dose_e_per_A2, curve.f1, "o-", label="detection F1 (0.5 A)")
    ax.semilogx(curve.dose_e_per_A2, curve.species_accuracy, "s--", label="C/Si accuracy")
    ax.axvline(5e5, c="grey", lw=0.8, ls=":")
    ax.set_xlabel("dose per frame (e-/A^2); C peak = dose x 1e-4 counts at 0.1 A/px")
    ax.set_ylim(0.5, 1.01)
    ax.legend(loc="lower right")
    fig.savefig(args.figures / "atoms_f1_vs_dose.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    real = [("graphene_stem/G-Si-2nm.npy", None), ("graphene_stem/G-GrainBoundary-4nm.npy", None),
            ("graphene_stem/G-dimSi.hdf5", None), ("graphene_stem/G-trimSi.hdf5", None),
            ("mos2_stem/MoS2_stem_Exp-001-5.npy", None)]
    if REAL.is_dir():
        fig, axes = plt.subplots(1, len(real), figsize=(5 * len(real), 5))
        for ax, (name, px) in zip(axes, real, strict=True):
            movie = load_movie(REAL / name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = find_atoms(movie, pixel_size_A=px, model=model, device="cpu")
            ax.imshow(movie.data[0], cmap="gray")
            for species, colour, size in (("C", "c", 3), ("Si", "r", 25)):
                sel = found[found.species == species]
                ax.scatter(sel.x, sel.y, s=size, c=colour, lw=0)
            counts = found.species.value_counts().to_dict()
            ax.set_title(f"{Path(name).name}\n{found.attrs['pixel_size_A']:.3f} A/px "
                         f"({found.attrs['pixel_size_source']}), {counts}", fontsize=9)
            ax.set_axis_off()
            print(f"{name}: {counts} at {found.attrs['pixel_size_A']:.4f} A/px "
                  f"({found.attrs['pixel_size_source']})")
        fig.savefig(args.figures / "atoms_real.png", dpi=80, bbox_inches="tight")
        plt.close(fig)


if __name__ == "__main__":
    main()
