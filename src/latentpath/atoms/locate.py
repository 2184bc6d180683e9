"""From per-pixel class probabilities to an atom table, refined by 2-D Gaussian fits.

The segmentation says where atoms are and what they are; the raw image says
precisely where: each blob's centre of mass is refined by a least-squares fit of an
isotropic 2-D Gaussian on a constant background to the intensity around it. All fits
of a movie run together as one batched Gauss-Newton (Levenberg-Marquardt) solve.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

ATOM_COLUMNS = ["frame", "y", "x", "species", "score"]


def _as_stack(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim == 3:
        probs = probs[None]
    if probs.ndim != 4 or probs.shape[1] < 2:
        raise ValueError(
            "class probabilities must have shape (T, C, H, W) or (C, H, W) with C >= 2 "
            f"(background first), got {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("class probabilities contain NaN or infinite values")
    return probs


def blobs(probs: np.ndarray, *, species: Sequence[str], threshold: float = 0.5,
          min_area_px: int = 3) -> pd.DataFrame:
    """Label atom blobs in class maps and take their centres of mass.

    Parameters
    ----------
    probs : ndarray, shape (T, C, H, W) or (C, H, W)
        Class probabilities; channel 0 is background, channel k >= 1 is
        ``species[k - 1]``.
    species : sequence of str
        Names of the atom classes, e.g. ``("C", "Si")``.
    threshold : float
        A pixel belongs to an atom where ``1 - p_background > threshold``.
    min_area_px : int
        Blobs smaller than this many pixels are dropped as noise.

    Returns
    -------
    DataFrame
        ``frame, y, x, species, score`` (pixels of the maps): the centre of mass
        weighted by atom probability, the class with the largest summed probability
        over the blob, and the blob's peak atom probability.
    """
    probs = _as_stack(probs)
    n_frames, n_classes = probs.shape[:2]
    if len(species) != n_classes - 1:
        raise ValueError(f"{n_classes - 1} atom classes in the maps but {len(species)} "
                         f"species names ({list(species)})")
    rows = []
    for t in range(n_frames):
        atom_prob = 1.0 - probs[t, 0]
        labels, n = ndimage.label(atom_prob > threshold)
        if n == 0:
            continue
        flat = labels.ravel()
        inside = flat > 0
        lab = flat[inside] - 1
        w = atom_prob.ravel()[inside].astype(np.float64)
        yy, xx = np.divmod(np.flatnonzero(inside), probs.shape[3])
        area = np.bincount(lab, minlength=n)
        mass = np.bincount(lab, w, minlength=n)
        cy = np.bincount(lab, w * yy, minlength=n) / mass
        cx = np.bincount(lab, w * xx, minlength=n) / mass
        per_class = np.stack([np.bincount(lab, probs[t, k].ravel()[inside], minlength=n)
                              for k in range(1, n_classes)], axis=1)
        # ufunc.at, not ndimage.maximum: the same maxima, 100x faster on 30,000 blobs
        peak = np.full(n, -np.inf)
        np.maximum.at(peak, lab, atom_prob.ravel()[inside])
        keep = area >= min_area_px
        rows.append(pd.DataFrame({
            "frame": t, "y": cy[keep], "x": cx[keep],
            "species": np.asarray(species, dtype=object)[per_class[keep].argmax(1)],
            "score": np.asarray(peak, dtype=np.float64)[keep],
        }))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(
            ATOM_COLUMNS, ["int64", "float64", "float64", "object", "float64"], strict=True)})
    table = pd.concat(rows, ignore_index=True)
    table["frame"] = table["frame"].astype(np.int64)
    return table


def refine_gaussian(images: np.ndarray, atoms: pd.DataFrame, *, half_width_px: int,
                    sigma_px: float, n_iter: int = 6,
                    max_shift_px: float | None = None,
                    max_error_px: float | None = None) -> pd.DataFrame:
    """Refine atom positions by fitting ``A exp(-r^2 / 2 s^2) + b`` around each atom.

    Every fit is a Levenberg-Marquardt solve on a (2h+1)^2 patch; all patches are
    solved together as one batch. A fit that runs away (shift larger than
    ``max_shift_px``, negative amplitude, width collapsing or exploding) keeps the
    starting position, and so does one whose position is less certain than
    ``max_error_px``.

    Parameters
    ----------
    images : ndarray, shape (T, H, W)
        Raw intensities (any scale).
    atoms : DataFrame
        ``frame, y, x`` starting positions, pixels.
    half_width_px : int
        Half size h of the fitted patch, pixels; about a third of a bond length keeps
        neighbours out.
    sigma_px : float
        Starting Gaussian width, pixels.
    n_iter : int
        Solver iterations. Six place the atoms as well as twelve (within 0.0004 A on
        ten synthetic movies of 3e5-3e6 e/A^2, 0.06-0.15 A/px), in half the time.
    max_shift_px : float, optional
        Largest accepted move from the start; default ``0.75 * half_width_px`` (a fit
        that wanders further has left its patch).
    max_error_px : float, optional
        Largest accepted standard error of the fitted position (the root of the
        summed y and x variances of the fit's covariance, the residuals' variance
        times the inverse of J^T J), pixels. On a noisy patch a free fit scatters
        more than the starting position did: the segmentation's positions are
        0.04 A from the truth at 1e5 e/A^2 and the fits 0.07 A (docs/atoms.md).
        None: every fit that did not run away is kept.

    Returns
    -------
    DataFrame
        A copy of ``atoms`` with refined ``y, x``, a ``refined`` flag (the position is
        the fit's), ``fit_residual``, the RMS residual of the fit in units of its
        fitted peak height (NaN where the fit ran away), and ``fit_error_px``, the
        fitted position's standard error (NaN where the fit ran away).
    """
    images = np.asarray(images)
    out = atoms.copy()
    out["refined"] = False
    out["fit_residual"] = np.nan
    out["fit_error_px"] = np.nan
    if len(atoms) == 0:
        return out
    h = int(half_width_px)
    max_shift = 0.75 * h if max_shift_px is None else max_shift_px
    height, width = images.shape[1:]
    y0 = atoms["y"].to_numpy(np.float64)
    x0 = atoms["x"].to_numpy(np.float64)
    frame = atoms["frame"].to_numpy(np.int64)
    cy, cx = np.rint(y0).astype(np.int64), np.rint(x0).astype(np.int64)
    ok = (cy >= h) & (cy < height - h) & (cx >= h) & (cx < width - h)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return out
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1]
    patches = images[frame[idx, None, None], cy[idx, None, None] + dy, cx[idx, None, None] + dx]
    # Fitted in float32 relative to each patch's darkest pixel, taken away in the
    # input's own precision: a detector's pedestal costs the fit no digits.
    patches = patches.reshape(len(idx), -1).astype(np.float64)
    lo = patches.min(1)
    patches = patches - lo[:, None]
    # Parameters per patch: amplitude, y, x (relative to the patch centre), log sigma, b.
    p = np.stack([patches.max(1), y0[idx] - cy[idx], x0[idx] - cx[idx],
                  np.full(len(idx), np.log(sigma_px)), np.zeros(len(idx))], axis=1)
    fit = _GaussianPatches(patches, dy.ravel(), dx.ravel())
    # Runaway fits overflow on their way out; they are rejected below.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = _levenberg_marquardt(p, fit, n_iter)
        sigma = np.exp(p[:, 3])
        res, jac = fit(p)
        rms = np.sqrt(np.mean(res.astype(np.float64)**2, axis=1)) * fit.scale
    shift = np.hypot(p[:, 1] - (y0[idx] - cy[idx]), p[:, 2] - (x0[idx] - cx[idx]))
    good = ((shift <= max_shift) & (p[:, 0] > 0) & (sigma > 0.3 * sigma_px)
            & (sigma < 3 * sigma_px) & np.isfinite(p).all(1))
    error = np.full(len(idx), np.nan)
    error[good] = _position_errors(res[good], jac[good])
    fitted = idx[good]
    out.loc[out.index[fitted], "fit_residual"] = rms[good] / p[good, 0]
    out.loc[out.index[fitted], "fit_error_px"] = error[good]
    if max_error_px is not None:
        good &= error <= max_error_px
    take = idx[good]
    out.loc[out.index[take], "y"] = cy[take] + p[good, 1]
    out.loc[out.index[take], "x"] = cx[take] + p[good, 2]
    out.loc[out.index[take], "refined"] = True
    return out


class _GaussianPatches:
    """Residuals and Jacobians of ``A exp(-r^2 / 2 s^2) + b`` on a batch of patches,
    each scaled by its patch's standard deviation; float32, the Jacobian as (N, 5, m)
    so that J J^T is one batched product (float32 is 5x faster than float64 here and
    moves no fit by more than 0.02 px)."""

    def __init__(self, patches: np.ndarray, gy: np.ndarray, gx: np.ndarray):
        self.patches = patches.astype(np.float32)
        self.scale = np.maximum(patches.std(1).astype(np.float64), 1e-12)
        self.inv_scale = (1.0 / self.scale).astype(np.float32)[:, None]
        self.gy, self.gx = gy.astype(np.float32), gx.astype(np.float32)

    def residuals(self, q: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Scaled residuals (N, m) at parameters ``q`` (N, 5), and the intermediate
        arrays the Jacobian reuses."""
        q = q.astype(np.float32)
        inv_s2 = np.exp(-2 * q[:, 3:4])
        ry, rx = self.gy - q[:, 1:2], self.gx - q[:, 2:3]
        r2 = ry * ry + rx * rx
        g = np.exp(-0.5 * inv_s2 * r2)
        res = (q[:, 0:1] * g + q[:, 4:5] - self.patches) * self.inv_scale
        return res, (q, inv_s2, ry, rx, r2, g, self.inv_scale)

    def jacobian(self, parts: tuple) -> np.ndarray:
        """The Jacobian from the intermediate ``parts`` of :meth:`residuals` (or a
        subset of their rows)."""
        q, inv_s2, ry, rx, r2, g, inv_scale = parts
        jac = np.empty((len(g), 5, g.shape[1]), np.float32)
        np.multiply(g, inv_scale, out=jac[:, 0])
        ag = jac[:, 0] * (q[:, 0:1] * inv_s2)
        np.multiply(ag, ry, out=jac[:, 1])
        np.multiply(ag, rx, out=jac[:, 2])
        np.multiply(ag, r2, out=jac[:, 3])
        jac[:, 4] = inv_scale
        return jac

    def __call__(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res, parts = self.residuals(q)
        return res, self.jacobian(parts)


def _position_errors(res: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """Standard error of each fit's position (parameters 1 and 2), pixels: the root of
    the summed y and x variances of the covariance (residual variance times the inverse
    of J^T J); ``jac`` is (N, k, m)."""
    n, k, m = jac.shape
    if n == 0:
        return np.zeros(0)
    jtj = np.matmul(jac, jac.transpose(0, 2, 1)).astype(np.float64)
    # a ridge far below any well-posed fit's curvature keeps degenerate fits invertible
    ridge = 1e-12 * np.trace(jtj, axis1=1, axis2=2)[:, None, None] * np.eye(k)[None]
    picked = np.zeros((n, k, 2))
    picked[:, 1, 0] = picked[:, 2, 1] = 1.0
    cols = np.linalg.solve(jtj + ridge, picked)
    variance = (res.astype(np.float64)**2).sum(1) / max(m - k, 1)
    return np.sqrt(np.abs(cols[:, 1, 0] + cols[:, 2, 1]) * variance)


def _levenberg_marquardt(p: np.ndarray, fit: _GaussianPatches, n_iter: int) -> np.ndarray:
    """Batched Levenberg-Marquardt: one damping factor per fit, a step kept only where it
    lowers that fit's cost (the Jacobian is computed only for the steps kept)."""
    p = p.copy()
    damping = np.full(len(p), 1e-2)
    res, jac = fit(p)
    cost = np.einsum("ij,ij->i", res, res)
    eye = np.eye(p.shape[1])[None]
    for _ in range(n_iter):
        jtj = np.matmul(jac, jac.transpose(0, 2, 1)).astype(np.float64)
        jtr = np.matmul(jac, res[:, :, None])[:, :, 0].astype(np.float64)
        diag = np.einsum("nii->ni", jtj)
        lhs = jtj + damping[:, None, None] * (eye * diag[:, :, None] + 1e-9 * eye)
        trial = p + np.linalg.solve(lhs, -jtr[:, :, None])[:, :, 0]
        res_try, parts = fit.residuals(trial)
        cost_try = np.einsum("ij,ij->i", res_try, res_try)
        better = cost_try < cost
        p[better], res[better], cost[better] = trial[better], res_try[better], cost_try[better]
        jac[better] = fit.jacobian(tuple(a[better] for a in parts))
        damping = np.where(better, damping / 3, damping * 4)
    return p


def inside_border(points: pd.DataFrame, shape: tuple[int, int], border_px: float
                  ) -> np.ndarray:
    """Whether each point (``y, x``, pixels) lies at least ``border_px`` inside a frame
    of ``shape``."""
    h, w = shape
    y, x = points["y"].to_numpy(float), points["x"].to_numpy(float)
    return ((y >= border_px) & (y <= h - 1 - border_px)
            & (x >= border_px) & (x <= w - 1 - border_px))


def drop_border(atoms: pd.DataFrame, shape: tuple[int, int], border_px: float) -> pd.DataFrame:
    """Drop atoms closer than ``border_px`` to the frame edge (their windows would be cut)."""
    return atoms[inside_border(atoms, shape, border_px)].reset_index(drop=True)


def _bin(image: np.ndarray, step: int) -> np.ndarray:
    """Means of ``step`` x ``step`` blocks of an image whose sides are multiples of it."""
    # a sum of strided views: 15x faster than a mean over the axes of a reshaped array
    total = np.zeros((image.shape[0] // step, image.shape[1] // step), np.float32)
    for dy in range(step):
        for dx in range(step):
            total += image[dy::step, dx::step]
    return total / step**2


def peak_heights(images: np.ndarray, atoms: pd.DataFrame, *, bond_px: float) -> np.ndarray:
    """Each atom's brightness over its surroundings, in units of ``images``.

    The frame is smoothed over a third of a bond (shot noise averages, the peak stays)
    and read at the atom's position; the background is the darkest smoothed value
    within 1.5 bond lengths (a ring's centre, or vacuum), itself smoothed so that one
    dark pixel does not set it. A Gaussian fit on the small patches that keep
    neighbours out cannot tell peak from background, which is why this reads wider.

    Parameters
    ----------
    images : ndarray, shape (T, H, W)
    atoms : DataFrame
        ``frame, y, x``, pixels.
    bond_px : float
        C-C bond length, pixels.

    Returns
    -------
    ndarray (N,), float64
        One height per row of ``atoms``.
    """
    heights = np.full(len(atoms), np.nan)
    if len(atoms) == 0:
        return heights
    frames = atoms["frame"].to_numpy(np.int64)
    for here, smooth, at, bond in _smoothed_frames(images, atoms, bond_px, np.unique(frames)):
        reach = max(3, round(3 * bond) | 1)
        floor = ndimage.gaussian_filter(ndimage.minimum_filter(smooth, size=reach), bond)
        heights[here] = (ndimage.map_coordinates(smooth, at, order=1, mode="nearest")
                         - ndimage.map_coordinates(floor, at, order=1, mode="nearest"))
    return heights


def _smoothed_frames(images: np.ndarray, atoms: pd.DataFrame, bond_px: float,
                     frames: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                           np.ndarray, float]]:
    """For each frame of ``frames``: the rows of its atoms, the frame binned to about
    five pixels per bond and smoothed over a third of a bond, the atoms' (y, x) in the
    binned pixels (2, n), and the bond length in them. The binning first: the readings
    made on it are wide, and a third of a bond is all the detail they keep."""
    images = np.asarray(images, dtype=np.float32)
    step = max(1, int(bond_px / 5))
    bond = bond_px / step
    rows = atoms["frame"].to_numpy(np.int64)
    at = np.vstack([(atoms["y"].to_numpy(np.float64) + 0.5) / step - 0.5,
                    (atoms["x"].to_numpy(np.float64) + 0.5) / step - 0.5])
    for t in frames:
        here = np.flatnonzero(rows == t)
        image = images[t]
        if step > 1:
            h, w = image.shape[0] // step * step, image.shape[1] // step * step
            image = _bin(image[:h, :w], step)
        yield here, ndimage.gaussian_filter(image, bond / 3), at[:, here], bond


#: a found atom the network is less sure of than this...
FAINT_SCORE = 0.95
#: ...standing on less than this share of the way from the frame's floor to its
#: typical atom is taken for a ghost (docs/atoms.md)
FAINT_LEVEL = 0.6


def faint_atoms(images: np.ndarray, atoms: pd.DataFrame, *, bond_px: float,
                min_score: float = FAINT_SCORE, min_level: float = FAINT_LEVEL
                ) -> np.ndarray:
    """Which found atoms are ghosts: unsure, and standing where the frame is dark.

    At low dose the network places a few atoms in holes beside their edges (on the
    probe's tails and the shot noise there). Its score is lower at them, but a cut on
    the score alone loses as many true atoms as it drops ghosts; what marks a ghost
    is the image under it, near the vacuum's level where a true atom stands at its
    lattice's. The level is the frame smoothed over a third of a bond, read at the
    atom, as a share of the way from the frame's floor (its 1st percentile: vacuum, or
    ring centres) to the median level of the frame's atoms; a detector's offset does
    not move it.

    Parameters
    ----------
    images : ndarray, shape (T, H, W)
        Raw frames.
    atoms : DataFrame
        ``frame, y, x, score``, pixels.
    bond_px : float
        C-C bond length, pixels.
    min_score, min_level : float
        An atom is a ghost where its score is below ``min_score`` and its level below
        ``min_level``.

    Returns
    -------
    ndarray (N,) of bool
        One flag per row of ``atoms``.

    Examples
    --------
    >>> frame = np.zeros((1, 40, 40), np.float32)
    >>> frame[0, 10, 10] = frame[0, 10, 20] = frame[0, 20, 10] = 1.0
    >>> atoms = pd.DataFrame({"frame": [0, 0, 0, 0], "y": [10.0, 10, 20, 30],
    ...                       "x": [10.0, 20, 10, 30], "score": [1.0, 0.9, 0.9, 0.9]})
    >>> faint_atoms(frame, atoms, bond_px=3.0).tolist()
    [False, False, False, True]
    """
    faint = np.zeros(len(atoms), bool)
    unsure = atoms["score"].to_numpy(np.float64) < min_score
    if not unsure.any():
        return faint
    frames = np.unique(atoms["frame"].to_numpy(np.int64)[unsure])
    for here, smooth, at, _ in _smoothed_frames(images, atoms, bond_px, frames):
        level = ndimage.map_coordinates(smooth, at, order=1, mode="nearest")
        floor = np.percentile(smooth, 1)
        typical = np.median(level) - floor
        if typical > 0:
            faint[here] = unsure[here] & ((level - floor) / typical < min_level)
    return faint
