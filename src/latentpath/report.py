"""Figures of movies and of their ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from latentpath.synth.pfm import SynthPFM
    from latentpath.synth.stem import SynthSTEM

RING_COLOURS = {5: "#e41a1c", 6: "#4daf4a", 7: "#377eb8", 8: "#984ea3"}


def _frames_to_show(n_frames: int) -> list[int]:
    return sorted({0, n_frames // 2, n_frames - 1})


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def figure_stem_truth(result: SynthSTEM, path: str | Path) -> Path:
    """First, middle and last frame with the true atoms and rings, and disorder over time.

    Atoms are dots (cyan C, red Si); ring centres are crosses coloured by ring size
    (5 red, 6 green, 7 blue, 8 purple).
    """
    frames = _frames_to_show(len(result.movie))
    fig, axes = plt.subplots(1, len(frames) + 1, figsize=(5 * (len(frames) + 1), 5))
    for ax, t in zip(axes, frames, strict=False):
        ax.imshow(result.movie[t], cmap="gray")
        atoms = result.atoms[(result.atoms.frame == t) & result.atoms.in_image]
        si = atoms.species == "Si"
        ax.scatter(atoms.x[~si], atoms.y[~si], s=3, c="c", lw=0)
        ax.scatter(atoms.x[si], atoms.y[si], s=25, c="r", lw=0)
        rings = result.rings[result.rings.frame == t]
        for size, colour in RING_COLOURS.items():
            sel = rings[rings["size"] == size]
            ax.scatter(sel.x, sel.y, s=14, c=colour, marker="x", lw=1)
        ax.set_title(f"frame {t}")
        ax.set_axis_off()
    ax = axes[-1]
    fr = result.frames
    ax.plot(fr.frame, fr.hole_fraction, label="holes")
    ax.plot(fr.frame, fr.amorphous_fraction, label="amorphous")
    ax.plot(fr.frame, fr.disorder_fraction, label="holes + amorphous", c="k")
    ax.set_xlabel("frame")
    ax.set_ylabel("fraction of the field of view")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(f"{result.pixel_size_A:.3g} A/px, rings: " + ", ".join(
        f"{k}" for k in RING_COLOURS))
    return _save(fig, path)


def figure_pfm_truth(result: SynthPFM, path: str | Path) -> Path:
    """Phase of the first, middle and last frame with the true walls, amplitude, and
    the switched fraction over time."""
    frames = _frames_to_show(len(result.phase))
    fig, axes = plt.subplots(1, len(frames) + 2, figsize=(4.5 * (len(frames) + 2), 4.5))
    for ax, t in zip(axes, frames, strict=False):
        ax.imshow(result.phase[t], cmap="RdBu_r")
        wy, wx = np.nonzero(result.walls[t])
        ax.scatter(wx, wy, s=0.5, c="k", lw=0)
        ax.set_title(f"phase, frame {t}")
        ax.set_axis_off()
    axes[-2].imshow(result.amplitude[frames[-1]], cmap="viridis")
    axes[-2].set_title(f"amplitude, frame {frames[-1]}")
    axes[-2].set_axis_off()
    ax = axes[-1]
    ax.plot(result.frames.frame, result.frames.switched_fraction, c="k")
    ax.set_xlabel("frame")
    ax.set_ylabel("switched fraction")
    ax.set_ylim(0, 1)
    return _save(fig, path)


def figure_atoms(image: np.ndarray, atoms, path: str | Path, *, title: str = "") -> Path:
    """One frame with its atoms: small cyan dots for C, larger red dots for Si, other
    species in further colours."""
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(image, cmap="gray")
    colours = {"C": ("c", 4), "Si": ("r", 30)}
    spare = iter(["#ff7f00", "#ffff33", "#a65628", "#f781bf"])
    for species, group in atoms.groupby("species"):
        colour, size = colours.get(species, (next(spare, "w"), 16))
        ax.scatter(group.x, group.y, s=size, c=colour, lw=0, label=f"{species} ({len(group)})")
    if len(atoms):
        ax.legend(loc="upper right", markerscale=2)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)
