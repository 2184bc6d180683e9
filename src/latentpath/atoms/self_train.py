"""Self-training on the user's movie, as in the method.

A model trained on simulations works well on the first, orderly frames of an
experiment and degrades as holes and amorphous carbon spread (false atoms in vacuum).
Its Gaussian-refined atoms on the first few frames are turned into labels, a copy of
the model is fine-tuned on them, and the fine-tuned model is applied to the whole
movie; it has learned the experiment's noise and contrast.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from latentpath.atoms.find import find_atoms, movie_pixel_size, movie_stack
from latentpath.atoms.locate import FAINT_LEVEL
from latentpath.atoms.match import match_atoms
from latentpath.atoms.model import AtomUNet, load_model
from latentpath.atoms.segment import normalize_frame, resample, to_model_pixels
from latentpath.atoms.training import label_map, train_segmenter
from latentpath.device import resolve_device
from latentpath.io import Movie

LABEL_RADIUS_A = 0.35


def self_train(
    movie: Movie | np.ndarray,
    *,
    n_frames: int = 5,
    pixel_size_A: float | None = None,
    model: AtomUNet | None = None,
    steps: int = 300,
    lr: float = 1e-4,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device = "auto",
    faint_level: float | None = FAINT_LEVEL,
    progress: bool = False,
) -> tuple[AtomUNet, pd.DataFrame]:
    """Fine-tune a segmentation model on its own refined atoms of the first frames.

    Parameters
    ----------
    movie : Movie or ndarray (T, H, W)
    n_frames : int
        Leading frames used as training data (the method uses about 5).
    pixel_size_A : float, optional
        As in :func:`~latentpath.atoms.find.find_atoms`.
    model : AtomUNet, optional
        Starting model; the shipped weights by default. It is not modified.
    steps, lr, batch_size, seed : fine-tuning schedule (Adam, cross-entropy).
    faint_level : float or None
        As in :func:`~latentpath.atoms.find.find_atoms`, for the atoms taken as labels.

    Returns
    -------
    model : AtomUNet
        The fine-tuned copy.
    labels : DataFrame
        The atoms used as labels (``frame, y, x, species, score``).
    """
    data = movie_stack(movie)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    device = resolve_device(device)
    base = load_model(device=device) if model is None else model
    pixel_A = movie_pixel_size(movie, pixel_size_A, model=base, device=device).pixel_size_A
    first = data[: min(n_frames, len(data))]
    labels_table = find_atoms(first, pixel_size_A=pixel_A, model=base, device=device,
                              keep_border=True, faint_level=faint_level)
    tuned = copy.deepcopy(base)
    factor = pixel_A / tuned.config.pixel_size_A
    index = {name: k + 1 for k, name in enumerate(tuned.config.species)}
    images, labels = [], []
    for t in range(len(first)):
        image = resample(first[t], factor)
        atoms = labels_table[labels_table.frame == t]
        y = to_model_pixels(atoms.y.to_numpy(), image.shape[0] / first.shape[1])
        x = to_model_pixels(atoms.x.to_numpy(), image.shape[1] / first.shape[2])
        images.append(normalize_frame(image))
        labels.append(label_map(image.shape, y, x, atoms.species.map(index).to_numpy(np.int64),
                                LABEL_RADIUS_A / tuned.config.pixel_size_A))
    images_arr, labels_arr = np.stack(images), np.stack(labels)
    crop = int(min(128, *images_arr.shape[1:]) // tuned.multiple * tuned.multiple)
    train_segmenter(tuned, images_arr, labels_arr, steps=steps, batch_size=batch_size,
                    crop_px=crop, lr=lr, seed=seed, device=device, progress=progress)
    return tuned, labels_table


def compare_tables(before: pd.DataFrame, after: pd.DataFrame, radius_px: float
                   ) -> pd.DataFrame:
    """How much a second pass changed the atoms, per frame.

    Returns
    -------
    DataFrame
        ``frame, before, after, added, removed, species_changed``.
    """
    pairs = match_atoms(after, before, radius_px)
    frames = sorted(set(before.frame) | set(after.frame))
    rows = []
    for t in frames:
        p = pairs[pairs.frame == t]
        n_before = int((before.frame == t).sum())
        n_after = int((after.frame == t).sum())
        changed = int((after.loc[p.found, "species"].to_numpy()
                       != before.loc[p.truth, "species"].to_numpy()).sum())
        rows.append({"frame": t, "before": n_before, "after": n_after,
                     "added": n_after - len(p), "removed": n_before - len(p),
                     "species_changed": changed})
    return pd.DataFrame(rows, columns=["frame", "before", "after", "added", "removed",
                                       "species_changed"])
