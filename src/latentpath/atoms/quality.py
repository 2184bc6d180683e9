"""How far a table of found atoms can be trusted, without any truth.

A graphene sheet imaged well gives atoms 1.42 A apart with two or three neighbours at
that distance each; a finder that goes wrong breaks that geometry in a few typical
ways: two atoms on one column (doubles), false atoms in holes or vacuum (isolated),
missed atoms (empty lattice area), a wrong pixel size (the spacing is not 1.42 A), or
an image of something else (another material, or no lattice at all). This module
measures those per frame (:func:`frame_quality`), names the frames that stand out
from the rest of the movie (:func:`unusual_frames`) and says when a table looks like
an image outside what the shipped model knows (:func:`domain_problems`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from latentpath.graph import CC_BOND_A

DOUBLE_BONDS = 0.6
"""Atoms nearer than this many bond lengths are two finds of one column."""
ISOLATED_BONDS = 1.3
"""An atom without a neighbour within this many bond lengths stands alone."""
EMPTY_BONDS = 1.5
"""A place farther than this many bond lengths from every atom has lost its atoms (every
point of an intact sheet lies within 1 bond length of an atom)."""
BONDED = (0.8, 1.25)
"""Neighbour distances, in bond lengths, counted as bonds by :func:`bond_spacing`."""

QUALITY_COLUMNS = {
    "frame": "frame number",
    "atoms": "atoms found",
    "bond_A": "median bond length between the atoms, angstrom (graphene: 1.42)",
    "bonded": "share of atoms away from the border with two or three neighbours at "
              "0.8-1.25 C-C bond lengths (graphene: near 1)",
    "doubles": f"share of atoms with a neighbour nearer than {DOUBLE_BONDS} bond lengths",
    "isolated": f"share of atoms with no neighbour within {ISOLATED_BONDS} bond lengths",
    "empty_area": f"share of the frame farther than {EMPTY_BONDS} bond lengths from every atom "
             "(holes, vacuum and missed atoms)",
    "fit_residual": "median RMS residual of the atoms' Gaussian fits, in units of their "
                    "fitted peak height",
    "heavy": "atoms brighter than the Si class (unknown heavy species)",
    "sublattice": "rank correlation of each atom's peak height with the mean of "
                  "its bonded neighbours' (graphene: about 0 or above; a two-element "
                  "honeycomb such as MoS2 or h-BN, whose neighbours are always of the "
                  "other element: strongly negative)",
}
"""The columns of :func:`frame_quality`'s table and what each measures."""

#: a frame is unusual where a measure leaves the movie's median by more than this many
#: robust standard deviations and by more than the floor below (shares, angstrom)
UNUSUAL_SIGMAS = 5.0
UNUSUAL_FLOOR = {"bond_A": 0.1, "bonded": 0.1, "doubles": 0.03, "isolated": 0.03,
                 "empty_area": 0.15, "fit_residual": 0.1}
#: what a table of atoms in a graphene-like image keeps to
GRAPHENE_BOND_TOLERANCE = 0.12
MIN_BONDED = 0.5
#: fewer atoms than this show no lattice either way (a crop around a Si trimer: four)
MIN_LATTICE_ATOMS = 10
MAX_SI_SHARE = 0.25
MIN_SUBLATTICE = -0.35
MIN_SUBLATTICE_ATOMS = 100


def bond_spacing(y: np.ndarray, x: np.ndarray, *, shape: tuple[int, int] | None = None
                 ) -> tuple[float, float]:
    """The bond length of a set of atoms and how lattice-like their neighbours are.

    Parameters
    ----------
    y, x : ndarray (N,)
        Positions of one frame's atoms, pixels.
    shape : (H, W), optional
        The frame's size, pixels: atoms within 1.3 bond lengths of its edge, whose
        neighbours may lie outside, are left out of the share.

    Returns
    -------
    bond_px : float
        Median length of the bonds (neighbours at 0.8-1.25 times the median
        nearest-neighbour distance), pixels; NaN with fewer than 3 atoms.
    bonded : float
        Share of the atoms (away from the edge) with two or three neighbours at 0.8
        to 1.25 times ``bond_px``: near 1 in a honeycomb lattice, low among noise
        blobs or doubled finds. NaN where no atom is away from the edge.

    Examples
    --------
    A graphene sheet, angstrom (lattice constant 2.46 A, two atoms per cell):

    >>> import numpy as np
    >>> i, j = np.meshgrid(np.arange(10), np.arange(10))
    >>> cells = np.column_stack([(2.46 * (i + j / 2)).ravel(), (2.13 * j).ravel()])
    >>> xy = np.vstack([cells, cells + [1.23, 0.71]])
    >>> bond, share = bond_spacing(xy[:, 1], xy[:, 0])
    >>> round(bond, 2), share
    (1.42, 1.0)
    """
    pos = np.column_stack([np.asarray(y, np.float64), np.asarray(x, np.float64)])
    if len(pos) < 3:
        return float("nan"), float("nan")
    tree = cKDTree(pos)
    first = float(np.median(tree.query(pos, k=2)[0][:, 1]))
    # every bond, not each atom's nearest: the nearest of three noisy bonds is short
    # (by 0.04 A at the 0.05 A scatter of refined real atoms)
    pairs = tree.query_pairs(BONDED[1] * first, output_type="ndarray")
    lengths = np.hypot(*(pos[pairs[:, 0]] - pos[pairs[:, 1]]).T)
    lengths = lengths[lengths >= BONDED[0] * first]
    bond = float(np.median(lengths)) if len(lengths) else first
    inner = np.ones(len(pos), bool)
    if shape is not None:
        margin = 1.3 * bond
        inner = ((pos[:, 0] >= margin) & (pos[:, 0] <= shape[0] - 1 - margin)
                 & (pos[:, 1] >= margin) & (pos[:, 1] <= shape[1] - 1 - margin))
    else:
        lo, hi = pos.min(0) + 1.3 * bond, pos.max(0) - 1.3 * bond
        inner = ((pos >= lo) & (pos <= hi)).all(1)
    if not inner.any():
        return bond, float("nan")
    near = tree.query_ball_point(pos[inner], BONDED[1] * bond, return_length=True) - 1
    close = tree.query_ball_point(pos[inner], BONDED[0] * bond, return_length=True) - 1
    counted = near - close
    return bond, float(np.mean((counted >= 2) & (counted <= 3) & (close == 0)))


def sublattice_contrast(y: np.ndarray, x: np.ndarray, height: np.ndarray, bond_px: float
                        ) -> float:
    """Spearman correlation of each atom's peak height with its bonded neighbours' mean.

    In a honeycomb every bond joins the two sublattices: where they hold different
    elements (Mo and S2 columns in MoS2, B and N in h-BN) a bright atom has dim
    neighbours and the correlation is strongly negative; in graphene the heights
    differ by noise and slow background only (about 0, or positive).

    Parameters
    ----------
    y, x : ndarray (N,)
        One frame's atoms, pixels.
    height : ndarray (N,)
        Their peak heights (NaN where unknown: left out).
    bond_px : float
        Bond length, pixels; neighbours within 0.8-1.25 of it count.

    Returns
    -------
    float
        NaN with fewer than :data:`MIN_SUBLATTICE_ATOMS` atoms that have two or more
        neighbours of known height: on a few rings, a slight mistilt or coma makes one
        sublattice of real graphene look brighter (a 10 A crop of the shared G-Si
        image reads -0.56, the whole image +0.19).
    """
    pos = np.column_stack([y, x]).astype(np.float64)
    known = np.isfinite(height)
    if known.sum() < 10:
        return float("nan")
    pos, height = pos[known], np.asarray(height, np.float64)[known]
    pairs = cKDTree(pos).query_pairs(BONDED[1] * bond_px, output_type="ndarray")
    lengths = np.hypot(*(pos[pairs[:, 0]] - pos[pairs[:, 1]]).T)
    pairs = pairs[lengths >= BONDED[0] * bond_px]
    ends = np.concatenate([pairs[:, 0], pairs[:, 1]])
    others = np.concatenate([pairs[:, 1], pairs[:, 0]])
    count = np.bincount(ends, minlength=len(pos))
    total = np.bincount(ends, height[others], minlength=len(pos))
    enough = count >= 2
    if enough.sum() < MIN_SUBLATTICE_ATOMS:
        return float("nan")
    return float(spearmanr(height[enough], total[enough] / count[enough])[0])


def frame_quality(atoms: pd.DataFrame, shape: tuple[int, int], pixel_size_A: float, *,
                  n_frames: int | None = None) -> pd.DataFrame:
    """Measures of each frame's atoms that need no truth.

    Parameters
    ----------
    atoms : DataFrame
        ``frame, y, x, species`` (pixels), as :func:`~latentpath.atoms.find_atoms`
        returns them; ``fit_residual`` if the fits' residuals are known.
    shape : (H, W)
        Frame size, pixels.
    pixel_size_A : float
        Angstrom per pixel.
    n_frames : int, optional
        Frames of the movie (frames without atoms get a row too); default: up to the
        last frame with atoms.

    Returns
    -------
    DataFrame
        One row per frame, the columns of :data:`QUALITY_COLUMNS`.
    """
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    bond_px = CC_BOND_A / pixel_size_A
    count = int(atoms.frame.max()) + 1 if n_frames is None and len(atoms) else n_frames or 0
    # the empty share is measured on a grid of about a quarter bond length
    step = max(1, int(bond_px / 4))
    grid_shape = (-(-shape[0] // step), -(-shape[1] // step))
    rows = []
    groups = dict(tuple(atoms.groupby("frame"))) if len(atoms) else {}
    for t in range(count):
        frame = groups.get(t)
        n = 0 if frame is None else len(frame)
        row = {"frame": t, "atoms": n, "bond_A": np.nan, "bonded": np.nan,
               "doubles": np.nan, "isolated": np.nan, "empty_area": 1.0,
               "fit_residual": np.nan, "heavy": 0, "sublattice": np.nan}
        if n:
            y, x = frame.y.to_numpy(np.float64), frame.x.to_numpy(np.float64)
            bond, bonded = bond_spacing(y, x, shape=shape)
            row["bond_A"], row["bonded"] = bond * pixel_size_A, bonded
            if n >= 2:
                pos = np.column_stack([y, x])
                nearest = cKDTree(pos).query(pos, k=2)[0][:, 1]
                row["doubles"] = float(np.mean(nearest < DOUBLE_BONDS * bond_px))
                row["isolated"] = float(np.mean(nearest > ISOLATED_BONDS * bond_px))
            mask = np.ones(grid_shape, bool)
            mask[np.clip(np.rint(y / step).astype(int), 0, grid_shape[0] - 1),
                 np.clip(np.rint(x / step).astype(int), 0, grid_shape[1] - 1)] = False
            far = ndimage.distance_transform_edt(mask) * step
            row["empty_area"] = float(np.mean(far > EMPTY_BONDS * bond_px))
            if "fit_residual" in frame:
                row["fit_residual"] = float(np.nanmedian(frame.fit_residual)) \
                    if frame.fit_residual.notna().any() else np.nan
            row["heavy"] = int((frame.species == "heavy").sum())
            if "intensity" in frame:
                row["sublattice"] = sublattice_contrast(
                    y, x, frame.intensity.to_numpy(np.float64), bond_px)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))


def unusual_frames(quality: pd.DataFrame) -> list[str]:
    """The frames whose measures stand out from the rest of the movie, each named with
    the measure, its value and the movie's median.

    A frame stands out where a measure lies more than :data:`UNUSUAL_SIGMAS` robust
    standard deviations from the movie's median and by more than a floor (a movie whose
    frames all agree flags none). Needs five frames or more.

    Examples
    --------
    >>> import pandas as pd
    >>> q = pd.DataFrame({"frame": range(6), "doubles": [0.01] * 5 + [0.2]})
    >>> unusual_frames(q)
    ['frame 5: doubles 0.2 (movie median 0.01)']
    """
    if len(quality) < 5:
        return []
    notes = []
    for _, row in quality.iterrows():
        reasons = []
        for column, floor in UNUSUAL_FLOOR.items():
            if column not in quality:
                continue
            values = quality[column].to_numpy(np.float64)
            if np.isnan(row[column]) or np.isnan(values).all():
                continue
            median = float(np.nanmedian(values))
            spread = 1.4826 * float(np.nanmedian(np.abs(values - median)))
            gap = abs(row[column] - median)
            if gap > floor and gap > UNUSUAL_SIGMAS * spread:
                reasons.append(f"{column} {row[column]:.3g} (movie median {median:.3g})")
        if reasons:
            notes.append(f"frame {int(row.frame)}: " + ", ".join(reasons))
    return notes


def unusual_warning(notes: list[str]) -> str:
    """The warning that names the frames :func:`unusual_frames` found (the first ten).

    Examples
    --------
    >>> unusual_warning(['frame 5: doubles 0.2 (movie median 0.01)'])
    '1 frame(s) unlike the rest of the movie: frame 5: doubles 0.2 (movie median 0.01)'
    """
    return f"{len(notes)} frame(s) unlike the rest of the movie: " + "; ".join(notes[:10])


def domain_problems(atoms: pd.DataFrame, quality: pd.DataFrame, *,
                    pixel_size_known: bool) -> list[str]:
    """Why an image looks outside what the atom model knows (graphene, C and Si), in
    plain sentences; empty when it looks like graphene.

    Parameters
    ----------
    atoms : DataFrame
        The found atoms (``species``).
    quality : DataFrame
        :func:`frame_quality` of the same atoms.
    pixel_size_known : bool
        Whether the pixel size came from the file or the user: only then can the
        atoms' spacing be compared with graphene's bond (an estimated pixel size is
        graphene's by construction).
    """
    problems = []
    if len(atoms) == 0:
        return problems
    bonded = float(np.nanmedian(quality.bonded)) if quality.bonded.notna().any() else 0.0
    if bonded < MIN_BONDED and len(atoms) >= MIN_LATTICE_ATOMS:
        problems.append(f"only {bonded:.0%} of the atoms have two or three neighbours at "
                        "one bond length (a graphene sheet: nearly all): no honeycomb "
                        "lattice")
    bond = float(np.nanmedian(quality.bond_A)) if quality.bond_A.notna().any() else np.nan
    if pixel_size_known and np.isfinite(bond) \
            and abs(bond / CC_BOND_A - 1) > GRAPHENE_BOND_TOLERANCE:
        problems.append(f"the atoms stand {bond:.2f} A apart, not graphene's "
                        f"{CC_BOND_A} A (another material, or a wrong pixel size)")
    if "sublattice" in quality and quality.sublattice.notna().any():
        contrast = float(np.nanmedian(quality.sublattice))
        if contrast < MIN_SUBLATTICE:
            problems.append(f"bright and dim atoms alternate between the two sublattices "
                            f"(correlation of an atom's brightness with its neighbours' "
                            f"{contrast:.2f}): a honeycomb of two elements, such as MoS2 "
                            "or h-BN, not graphene")
    heavy = int((atoms.species == "heavy").sum())
    if heavy:
        problems.append(f"{heavy} atoms are far brighter than Si: an unknown heavy "
                        "species, labelled 'heavy'")
    si = float((atoms.species == "Si").mean())
    # a crop around a Si trimer is a third Si: only a larger field can be judged
    if si > MAX_SI_SHARE and len(atoms) >= MIN_SUBLATTICE_ATOMS:
        problems.append(f"{si:.0%} of the atoms read as Si (a doped graphene sheet has a "
                        "few percent): two sublattices of another material?")
    return problems
