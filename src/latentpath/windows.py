"""Windows: square patches of a movie centred on any points, with their table.

The points are a table with ``frame, y, x`` in pixels (atoms, ring centres, wall
pixels); each patch is sampled at sub-pixel offsets around its point, so an atom sits
in the exact centre of its window however it falls between pixels. Row i of the
returned table describes patch i and keeps every column of the point it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from scipy import ndimage

from latentpath.io import check_writable

EDGE_MODES = ("skip", "reflect", "nearest", "constant")


def cut_windows(images: np.ndarray, points: pd.DataFrame, window_px: int, *,
                step_px: float = 1.0, edge: str = "skip", order: int = 1,
                turn_rad: np.ndarray | None = None, mirror: np.ndarray | None = None,
                round_patch: bool = False, out: str | os.PathLike | None = None,
                overwrite: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut a ``window_px`` x ``window_px`` patch centred on every point.

    Parameters
    ----------
    images : ndarray (T, H, W) or (H, W)
        Frames (raw images, or a class map of the segmentation).
    points : DataFrame
        ``frame, y, x`` in pixels (``frame`` may be left out for a single image);
        other columns are carried into the window table.
    window_px : int
        Side of the patches, in samples.
    step_px : float
        Distance between neighbouring samples, pixels of ``images``: 1 cuts the pixels
        as they are; other steps resample, so that a window of a fixed size in
        angstrom becomes ``window_px`` samples whatever the pixel size.
    edge : {"skip", "reflect", "nearest", "constant"}
        Points whose patch runs off the frame are dropped ("skip"), or the frame is
        extended by reflection, by its edge pixels, or with zeros.
    order : int
        Spline order of the sub-pixel sampling: 1 (bilinear, default) or 3 (cubic).
    turn_rad, mirror : ndarray (len(points),), optional
        Cut each patch in its own frame: its x axis at ``turn_rad`` in the image (from
        +x towards +y), its y axis reversed where ``mirror``
        (:func:`latentpath.graph.bond_frames`). With "skip", a turned patch must fit
        in the frame with its corners, unless ``round_patch``.
    round_patch : bool
        The patches' corners will be dropped (:func:`circular_taper`): "skip" keeps
        every point whose patch's inscribed disc lies inside the frame, turned or not,
        and corners that run off it take the nearest pixel.
    out : path, optional
        Write the patches to this .npy as they are cut (memory-mapped), for sets larger
        than memory; the returned array is then the memory map.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    windows : ndarray (N, window_px, window_px), float32
    table : DataFrame
        The kept points, in patch order, with ``point`` (their row in ``points``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> frames = np.arange(2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
    >>> points = pd.DataFrame({"frame": [0, 1, 1], "y": [16.0, 8.0, 1.0],
    ...                        "x": [16.0, 20.5, 1.0]})
    >>> windows, table = cut_windows(frames, points, 8)
    >>> windows.shape, table.point.tolist()  # the third patch runs off the frame
    ((2, 8, 8), [0, 1])
    """
    stack = np.asarray(images)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or 0 in stack.shape:
        raise ValueError(f"images must have shape (T, H, W) or (H, W), got {np.shape(images)}")
    if int(window_px) != window_px or window_px < 2:
        raise ValueError(f"window_px must be an integer of at least 2, got {window_px}")
    if not (np.isfinite(step_px) and step_px > 0):
        raise ValueError(f"step_px must be a positive number of pixels, got {step_px}")
    if edge not in EDGE_MODES:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    if order not in (0, 1, 3):
        raise ValueError(f"order must be 0, 1 or 3, got {order}")
    missing = {"y", "x"} - set(points.columns)
    if missing:
        raise ValueError(f"points need columns y and x (pixels); missing {sorted(missing)}")
    frames = (points["frame"].to_numpy() if "frame" in points.columns
              else np.zeros(len(points), np.int64))
    yx = points[["y", "x"]].to_numpy(np.float64)
    if not np.isfinite(yx).all():
        raise ValueError("points contain NaN or infinite positions")
    if len(frames) and (frames.min() < 0 or frames.max() >= len(stack)
                        or not np.equal(np.mod(frames, 1), 0).all()):
        raise ValueError(f"points refer to frames outside 0..{len(stack) - 1}")
    frames = frames.astype(np.int64)
    turn = np.zeros(len(points)) if turn_rad is None else np.asarray(turn_rad, np.float64)
    flip = np.zeros(len(points), bool) if mirror is None else np.asarray(mirror, bool)
    for name, values in (("turn_rad", turn), ("mirror", flip)):
        if values.shape != (len(points),):
            raise ValueError(f"{name} must have one value per point ({len(points)}), got "
                             f"shape {values.shape}")
    if not np.isfinite(turn).all():
        raise ValueError("turn_rad contains NaN or infinite angles")
    cos, sin = np.cos(turn), np.sin(turn)
    sign = np.where(flip, -1.0, 1.0)
    # half the extent of each (turned) patch along y and x
    half = (window_px - 1) / 2 * step_px
    if not round_patch:
        half = half * (np.abs(cos) + np.abs(sin))[:, None]
    keep = np.ones(len(points), bool)
    if edge == "skip":
        h, w = stack.shape[1:]
        keep = ((yx - half >= 0) & (yx + half <= np.array([h - 1, w - 1]))).all(1)
    idx = np.flatnonzero(keep)
    table = points.iloc[idx].reset_index(drop=True)
    table.insert(0, "point", idx)
    shape = (len(idx), window_px, window_px)
    if out is not None:
        out = Path(out)
        check_writable([out], overwrite=overwrite)
        windows = open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
    else:
        windows = np.empty(shape, np.float32)
    offsets = (np.arange(window_px) - (window_px - 1) / 2) * step_px
    # Skipped points never reach the border; the mode only matters for the others.
    mode = "nearest" if edge == "skip" else edge
    for t in np.unique(frames[idx]):
        rows = np.flatnonzero(frames[idx] == t)
        frame = stack[t].astype(np.float32, copy=False)
        # Sample a chunk at a time so the coordinate arrays stay small.
        for start in range(0, len(rows), 4096):
            chunk = rows[start:start + 4096]
            at = idx[chunk]
            u, v = offsets[None, None, :], offsets[None, :, None] * sign[at, None, None]
            c, s = cos[at, None, None], sin[at, None, None]
            cy = yx[at, 0][:, None, None] + u * s + v * c
            cx = yx[at, 1][:, None, None] + u * c - v * s
            windows[chunk] = ndimage.map_coordinates(frame, [cy, cx], order=order,
                                                     mode=mode, cval=0.0, prefilter=order > 1)
    if out is not None:
        windows.flush()
    return windows, table


def sample_points(points: pd.DataFrame, per_frame: dict[str, int | None] | int | None, *,
                  by: str = "species", seed: int = 0) -> pd.DataFrame:
    """A seeded random subset of points, per frame and per group.

    Parameters
    ----------
    points : DataFrame
        With ``frame`` and, for a dict ``per_frame``, the column ``by``.
    per_frame : dict, int or None
        ``{"C": 600, "Si": None}`` draws up to 600 C per frame and keeps every Si
        (the method's sampling); groups not named are left out. An int draws that many
        points per frame of any kind; None keeps everything.
    by : str
        The grouping column (``species`` for atoms, ``kind`` for windows).
    seed : int

    Returns
    -------
    DataFrame
        The chosen rows, in their original order, index kept.
    """
    if per_frame is None:
        return points
    rng = np.random.default_rng(seed)
    frames = points["frame"] if "frame" in points.columns else pd.Series(0, points.index)
    if isinstance(per_frame, dict):
        if by not in points.columns:
            raise ValueError(f"points have no column {by!r} to sample by")
        groups = [frames, points[by]]
        limits = per_frame
    else:
        groups, limits = [frames], None
    chosen = []
    for key, group in points.groupby(groups, sort=True):
        name = key[1] if limits is not None else None
        n = limits.get(name, 0) if limits is not None else per_frame
        if n is None or n >= len(group):
            chosen.append(group.index.to_numpy())
        elif n > 0:
            chosen.append(rng.choice(group.index.to_numpy(), int(n), replace=False))
    index = np.concatenate(chosen) if chosen else np.zeros(0, points.index.dtype)
    return points.loc[points.index.isin(index)]


def circular_taper(window_px: int, *, flat: float = 0.8, edge: float = 1.0) -> np.ndarray:
    """A round weight for square windows: 1 within ``flat`` of the half-width, falling
    smoothly (cosine) to 0 at ``edge`` of it, 0 in the corners.

    Multiplying windows by it keeps what lies around the centre and drops the corners,
    which turn in and out of a square window as the structure rotates: the rVAE's
    rotation latent then has a round field of view to turn.

    Returns
    -------
    ndarray (window_px, window_px), float32
    """
    if not 0 <= flat < edge:
        raise ValueError(f"need 0 <= flat < edge, got flat={flat}, edge={edge}")
    half = (window_px - 1) / 2
    yy, xx = np.mgrid[:window_px, :window_px]
    r = np.hypot(yy - half, xx - half) / max(half, 1e-9)
    ramp = np.clip((r - flat) / (edge - flat), 0, 1)
    return (0.5 * (1 + np.cos(np.pi * ramp))).astype(np.float32)
