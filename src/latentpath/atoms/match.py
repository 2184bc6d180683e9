"""Pairing two sets of atoms: found against true, or one pass of a finder against
another."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


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
