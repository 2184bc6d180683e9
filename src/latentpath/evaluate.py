"""Scoring results on synthetic data against their exact truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from latentpath.atoms.locate import drop_border

HOLE_DISTANCE_A = 2.2
"""A point farther than this from every true atom lies in a hole."""


def match_atoms(found: pd.DataFrame, truth: pd.DataFrame, radius_px: float) -> pd.DataFrame:
    """Pair found and true atoms of each frame, closest pairs first, one-to-one.

    Parameters
    ----------
    found, truth : DataFrame
        ``frame, y, x`` (pixels) and ``species``.
    radius_px : float
        Largest distance of a match, pixels.

    Returns
    -------
    DataFrame
        ``frame, found, truth, distance_px``: row indices of ``found`` and ``truth``.
    """
    rows = []
    for frame, t_frame in truth.groupby("frame"):
        f_frame = found[found["frame"] == frame]
        if len(f_frame) == 0:
            continue
        pairs = cKDTree(f_frame[["y", "x"]].to_numpy()).sparse_distance_matrix(
            cKDTree(t_frame[["y", "x"]].to_numpy()), radius_px, output_type="ndarray")
        if len(pairs) == 0:
            continue
        order = np.argsort(pairs["v"], kind="stable")
        used_f, used_t = set(), set()
        for i, j, d in zip(pairs["i"][order], pairs["j"][order], pairs["v"][order],
                           strict=True):
            if i in used_f or j in used_t:
                continue
            used_f.add(i)
            used_t.add(j)
            rows.append((frame, f_frame.index[i], t_frame.index[j], d))
    return pd.DataFrame(rows, columns=["frame", "found", "truth", "distance_px"])


def score_atoms(found: pd.DataFrame, truth: pd.DataFrame, *, pixel_size_A: float,
                match_radius_A: float = 0.5, frames_table: pd.DataFrame | None = None,
                image_shape: tuple[int, int] | None = None,
                border_A: float = 1.0) -> dict[str, float]:
    """Detection, species and localisation scores of an atom table against the truth.

    Parameters
    ----------
    found : DataFrame
        ``frame, y, x, species`` found, pixels.
    truth : DataFrame
        The synthetic truth (``SynthSTEM.atoms``); only atoms inside the image count.
    pixel_size_A : float
    match_radius_A : float
        A found atom within this distance of a true one is a detection.
    frames_table, image_shape : optional
        ``SynthSTEM.frames`` and the frame shape: with them the false atoms in holes and
        amorphous areas are counted per 10 nm^2 of that area.
    border_A : float
        With ``image_shape``, atoms (true and found) closer than this to the frame edge
        are left out, as the atom finder leaves them out by default.

    Returns
    -------
    dict
        ``precision, recall, f1, species_accuracy, si_recall, mean_error_A,
        n_found, n_true`` and, with the frames table, ``false_per_10nm2_disordered``.
    """
    if "in_image" in truth:
        truth = truth[truth["in_image"]]
    if image_shape is not None and border_A > 0:
        truth = drop_border(truth, image_shape, border_A / pixel_size_A)
        found = drop_border(found, image_shape, border_A / pixel_size_A)
    truth = truth.reset_index(drop=True)
    found = found.reset_index(drop=True)
    pairs = match_atoms(found, truth, match_radius_A / pixel_size_A)
    tp = len(pairs)
    precision = tp / len(found) if len(found) else 0.0
    recall = tp / len(truth) if len(truth) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    same = (found.loc[pairs.found, "species"].to_numpy()
            == truth.loc[pairs.truth, "species"].to_numpy())
    is_si = truth["species"] == "Si"
    si_found = truth.loc[pairs.truth[same], "species"].eq("Si").sum()
    scores = {
        "precision": precision, "recall": recall, "f1": f1,
        "species_accuracy": float(same.mean()) if tp else 0.0,
        "si_recall": float(si_found / is_si.sum()) if is_si.any() else float("nan"),
        "mean_error_A": float(pairs.distance_px.mean() * pixel_size_A) if tp else float("nan"),
        "n_found": float(len(found)), "n_true": float(len(truth)),
    }
    if frames_table is not None and image_shape is not None:
        false = found.drop(index=pairs.found)
        n_false, area_nm2 = 0, 0.0
        for frame, row in frames_table.set_index("frame").iterrows():
            area_nm2 += row["disorder_fraction"] * image_shape[0] * image_shape[1] * (
                pixel_size_A / 10) ** 2
            f = false[false["frame"] == frame]
            t = truth[truth["frame"] == frame]
            if len(f) == 0:
                continue
            if len(t) == 0:
                n_false += len(f)
                continue
            dist, near = cKDTree(t[["y", "x"]].to_numpy()).query(f[["y", "x"]].to_numpy())
            in_hole = dist * pixel_size_A > HOLE_DISTANCE_A
            amorphous = t["region"].to_numpy()[near] == "amorphous"
            n_false += int((in_hole | amorphous).sum())
        scores["false_per_10nm2_disordered"] = 10 * n_false / area_nm2 if area_nm2 else 0.0
    return scores
