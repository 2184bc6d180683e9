"""Atoms followed through a movie: drift, linking, chemical states and transitions.

The method follows single Si atoms, which stand out from the carbon sheet, and reads
their chemistry (3-fold Si, 4-fold Si, Si next to a 7-ring, ...) frame by frame. Here:

- :func:`estimate_drift`: the sample's drift from frame to frame, from the atoms
  themselves (a lattice-blind coarse shift, then the median shift of matched atoms);
- :func:`link_atoms`: trackpy links the drift-corrected atoms of chosen species, with a
  search radius in angstrom and a memory for frames where an atom was missed; gaps are
  recorded on the row after them;
- :func:`chemical_states`: an atom's state in a frame from the bond graph (species,
  coordination, adjacent rings), or none within 4 A of the frame's border, where the
  graph is cut;
- :func:`find_transitions`, :func:`transition_counts`, :func:`state_lifetimes`: the
  changes of state along every track and their statistics over the movie.

All positions are pixels of the movie unless a name ends in ``_A`` (angstrom).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from latentpath.checks import check_float, check_int
from latentpath.graph import RING_SIZES, ring_label, structure_name

#: how far from the coarse drift the fine stage looks: beyond graphene's lattice period
#: (2.46 A), so a coarse shift off by a lattice vector is caught
LATTICE_SEARCH_A = 3.0
#: columns of an atom table that tracking needs
ATOM_COLUMNS = ("frame", "y", "x", "species")


def _check_atoms(atoms: pd.DataFrame, name: str = "atoms",
                 columns: tuple[str, ...] = ATOM_COLUMNS) -> None:
    if not isinstance(atoms, pd.DataFrame):
        raise TypeError(f"{name} must be a DataFrame, got {type(atoms).__name__}")
    missing = [c for c in columns if c not in atoms.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}")
    if len(atoms) == 0:
        raise ValueError(f"{name} is empty: no atoms to track")
    pos = atoms[["y", "x"]].to_numpy(np.float64)
    if not np.isfinite(pos).all():
        raise ValueError(f"{name} has NaN or infinite positions")


def _spectrum(pos_A: np.ndarray, shape_A: tuple[float, float], bin_A: float,
              sigma_A: float) -> np.ndarray:
    """Fourier transform of the atom density, faded to zero at the field's border by a
    Hann window and band-passed: blurred by ``sigma_A`` minus blurred by 4 x ``sigma_A``.

    The blur removes the lattice; the subtraction flattens the even density of intact
    sheet, leaving holes, edges and dense spots; the fade keeps the field's border (which
    does not move with the sample) out of the correlation.
    """
    bins = (int(np.ceil(shape_A[0] / bin_A)), int(np.ceil(shape_A[1] / bin_A)))
    hist, _, _ = np.histogram2d(pos_A[:, 0], pos_A[:, 1], bins=bins,
                                range=((0, bins[0] * bin_A), (0, bins[1] * bin_A)))
    hist *= np.outer(np.hanning(bins[0]), np.hanning(bins[1]))
    k2 = (np.fft.fftfreq(bins[0])[:, None] ** 2 + np.fft.rfftfreq(bins[1])[None, :] ** 2)
    sigma = sigma_A / bin_A
    band = np.exp(-2 * np.pi**2 * sigma**2 * k2) - np.exp(-2 * np.pi**2 * (4 * sigma)**2 * k2)
    return np.fft.rfft2(hist) * band


def _coarse_shift(ref: np.ndarray, mov: np.ndarray, shape: tuple[int, int], max_px: int
                  ) -> np.ndarray:
    """Shift (bins) that moves the density of spectrum ``ref`` onto that of ``mov``."""
    corr = np.fft.fftshift(np.fft.irfft2(np.conj(ref) * mov, s=shape))
    centre = np.array(shape) // 2
    lo = np.maximum(centre - max_px, 0)
    window = corr[lo[0]:centre[0] + max_px + 1, lo[1]:centre[1] + max_px + 1]
    peak = np.array(np.unravel_index(np.argmax(window), window.shape)) + lo
    return (peak - centre).astype(np.float64)


def _refine_shift(ref_A: np.ndarray, mov_A: np.ndarray, ref_kind: np.ndarray,
                  mov_kind: np.ndarray, coarse_A: np.ndarray, shape_A: tuple[float, float],
                  match_A: float, search_A: float, rounds: int = 3) -> tuple[np.ndarray, int]:
    """The shift within ``search_A`` of ``coarse_A`` under which the largest share of
    atoms lands on an atom of the same species, polished to the median displacement of
    the pairs.

    ``search_A`` covers a lattice period, so a coarse shift off by a lattice vector is
    corrected: a shift by a bond or a lattice vector pairs the intact sheet as well but
    not the atoms around holes, edges, defects and dopants. The share is taken over the
    atoms that land inside the previous frame's field, so that shifts are not favoured
    for losing fewer atoms over the field's border.
    """
    tree = cKDTree(ref_A)
    step = 0.7 * match_A
    offsets = np.arange(-search_A, search_A + 1e-9, step)
    grid = np.stack(np.meshgrid(offsets, offsets), -1).reshape(-1, 2)
    grid = coarse_A + grid[np.hypot(*grid.T) <= search_A + 1e-9]
    probe = np.linspace(0, len(mov_A) - 1, min(len(mov_A), 300)).astype(np.int64)
    judge = np.linspace(0, len(mov_A) - 1, min(len(mov_A), 2000)).astype(np.int64)
    margin = match_A + 0.5

    def share(shifts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Share of ``rows`` landing on an atom of their species, for each shift."""
        moved = mov_A[rows][None] - shifts[:, None]
        inside = ((moved >= margin) & (moved <= np.asarray(shape_A) - margin)).all(-1)
        dist, idx = tree.query(moved.reshape(-1, 2), distance_upper_bound=match_A, workers=-1)
        ok = np.isfinite(dist)
        same = np.zeros(len(dist), bool)
        same[ok] = ref_kind[idx[ok]] == np.tile(mov_kind[rows], len(shifts))[ok]
        landed = (same.reshape(inside.shape) & inside).sum(1)
        return landed / np.maximum(inside.sum(1), 1)

    scores = share(grid, probe)
    # the best few separate optima of the sample (one per lattice-vector alias), judged
    # again on more atoms
    best: list[np.ndarray] = []
    for g in grid[np.argsort(scores, kind="stable")[::-1]]:
        if all(np.hypot(*(g - b)) > 1.0 for b in best):
            best.append(g)
        if len(best) == 8:
            break
    shift_A = best[int(np.argmax(share(np.array(best), judge)))]
    n = 0
    for _ in range(rounds):
        dist, idx = tree.query(mov_A - shift_A, distance_upper_bound=match_A)
        ok = np.isfinite(dist)
        n = int(ok.sum())
        if n == 0:
            break
        shift_A = np.median(mov_A[ok] - ref_A[idx[ok]], axis=0)
    return shift_A, n


def estimate_drift(atoms: pd.DataFrame, pixel_size_A: float, frame_shape: tuple[int, int], *,
                   max_drift_A: float = 5.0, coarse_sigma_A: float = 1.5,
                   match_A: float = 0.6) -> pd.DataFrame:
    """Drift of the sample through the movie, from the atoms of consecutive frames.

    Each pair of frames is aligned in two stages. The coarse shift is the peak of the
    cross-correlation of the atoms' densities, band-passed around ``coarse_sigma_A``:
    the blur removes the lattice (whose period would make any shift by a lattice vector
    look right) and keeps holes, edges and disorder. The fine shift is the one within
    3 A of the coarse shift (a lattice period and more) under which the largest share
    of atoms lands on an atom of its own species within ``match_A``, polished to the
    median displacement of those pairs. On the synthetic movies it is exact to about
    0.01 A for jumps of up to 3.5 A between frames of 51 A fields.

    Parameters
    ----------
    atoms : DataFrame
        ``frame, y, x`` (pixels) and, if present, ``species``; all atoms, not only the
        tracked ones (more atoms, steadier drift).
    pixel_size_A : float
        Angstrom per pixel.
    frame_shape : (int, int)
        Frame height and width, pixels.
    max_drift_A : float
        Largest drift between two consecutive frames looked for.
    coarse_sigma_A, match_A : float
        Blur of the coarse stage; largest distance of a matched pair in the fine stage.

    Returns
    -------
    DataFrame
        One row per frame: ``frame, dy, dx`` (pixels; a feature at (y, x) in the first
        frame is at (y + dy, x + dx) in this one) and ``matched`` (atoms paired with the
        previous frame; 0 for the first frame).
    """
    _check_atoms(atoms, columns=("frame", "y", "x"))
    pixel_size_A = check_float("pixel_size_A", pixel_size_A, minimum=1e-6)
    max_drift_A = check_float("max_drift_A", max_drift_A, minimum=0.0)
    if len(frame_shape) != 2 or min(frame_shape) < 1:
        raise ValueError(f"frame_shape must be (height, width) pixels, got {frame_shape}")
    bin_A = 0.25
    shape_A = (frame_shape[0] * pixel_size_A, frame_shape[1] * pixel_size_A)
    frames = np.sort(atoms["frame"].unique())
    groups = atoms.groupby("frame").indices
    pos = atoms[["y", "x"]].to_numpy(np.float64) * pixel_size_A
    kind = (pd.factorize(atoms["species"])[0] if "species" in atoms.columns
            else np.zeros(len(atoms), np.int64))
    drift = np.zeros((len(frames), 2))
    matched = np.zeros(len(frames), np.int64)
    bins = (int(np.ceil(shape_A[0] / bin_A)), int(np.ceil(shape_A[1] / bin_A)))
    max_bins = int(np.ceil(max_drift_A / bin_A))
    prev = pos[groups[frames[0]]]
    prev_kind = kind[groups[frames[0]]]
    prev_spectrum = _spectrum(prev, shape_A, bin_A, coarse_sigma_A)
    for i, frame in enumerate(frames[1:], start=1):
        cur = pos[groups[frame]]
        cur_kind = kind[groups[frame]]
        spectrum = _spectrum(cur, shape_A, bin_A, coarse_sigma_A)
        coarse = _coarse_shift(prev_spectrum, spectrum, bins, max_bins) * bin_A
        shift, matched[i] = _refine_shift(prev, cur, prev_kind, cur_kind, coarse, shape_A,
                                          match_A, search_A=LATTICE_SEARCH_A)
        drift[i] = drift[i - 1] + shift
        prev, prev_kind, prev_spectrum = cur, cur_kind, spectrum
    return pd.DataFrame({"frame": frames, "dy": drift[:, 0] / pixel_size_A,
                         "dx": drift[:, 1] / pixel_size_A, "matched": matched})


@contextmanager
def _quiet(logger_name: str):
    """trackpy logs every frame at INFO; silence it for the call only."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def link_atoms(atoms: pd.DataFrame, pixel_size_A: float, *,
               species: tuple[str, ...] | None = ("Si",), search_A: float | None = None,
               memory: int = 3, drift: pd.DataFrame | None = None) -> pd.DataFrame:
    """Link atoms of the chosen species across frames (trackpy).

    Parameters
    ----------
    atoms : DataFrame
        ``frame, y, x, species`` (pixels).
    pixel_size_A : float
    species : tuple of str, optional
        Species to track; None tracks every atom.
    search_A : float, optional
        Farthest an atom may move between the frames it is seen in, after drift
        correction. None: 0.45 of the median nearest-neighbour distance between the
        tracked atoms of a frame, at most 2.5 A (a Si hop to the next lattice site is
        about 1.4-1.9 A; carbon atoms get about 0.6 A, under half a bond, so neighbours
        are never confused).
    memory : int
        Frames an atom may be missed and still keep its track.
    drift : DataFrame, optional
        :func:`estimate_drift` output; no drift correction when None.

    Returns
    -------
    DataFrame
        The tracked rows of ``atoms`` (index kept as ``atom``), sorted by track and frame,
        with ``track`` (0, 1, ...), ``y_fixed, x_fixed`` (drift-corrected pixels) and
        ``gap_before`` (frames the atom was missed before this row; 0 when seen in the
        previous frame or at the track's start).
    """
    import trackpy

    _check_atoms(atoms)
    pixel_size_A = check_float("pixel_size_A", pixel_size_A, minimum=1e-6)
    memory = check_int("memory", memory, 0)
    sel = atoms if species is None else atoms[atoms["species"].isin(species)]
    if len(sel) == 0:
        raise ValueError(f"no atoms of species {list(species)} to track; the atom table has "
                         f"{sorted(atoms['species'].unique())}")
    table = sel.rename_axis("atom").reset_index()
    dy = dx = 0.0
    if drift is not None:
        if not {"frame", "dy", "dx"} <= set(drift.columns):
            raise ValueError("drift must have the columns frame, dy, dx")
        by_frame = drift.set_index("frame")
        missing = sorted(set(table["frame"]) - set(by_frame.index))
        if missing:
            raise ValueError(f"drift has no row for frame(s) {missing[:5]}")
        dy = by_frame["dy"].reindex(table["frame"]).to_numpy()
        dx = by_frame["dx"].reindex(table["frame"]).to_numpy()
    table["y_fixed"] = table["y"] - dy
    table["x_fixed"] = table["x"] - dx
    if search_A is None:
        search_A = default_search_A(table, pixel_size_A)
    search_A = check_float("search_A", search_A, minimum=1e-6)
    positions_A = pd.DataFrame({"frame": table["frame"], "y_A": table["y_fixed"] * pixel_size_A,
                                "x_A": table["x_fixed"] * pixel_size_A})
    with _quiet("trackpy"):
        linked = trackpy.link(positions_A, search_A, pos_columns=["y_A", "x_A"],
                              t_column="frame", memory=memory)
    # trackpy returns the rows sorted by frame; align by index, not by position
    particle = linked["particle"].reindex(table.index)
    # renumber tracks by first appearance so that numbers read in time order
    first = table["frame"].groupby(particle).min().sort_values(kind="stable")
    table["track"] = particle.map(pd.Series(np.arange(len(first)), index=first.index))
    table = table.sort_values(["track", "frame"], kind="stable").reset_index(drop=True)
    step = table.groupby("track")["frame"].diff()
    table["gap_before"] = (step.fillna(1) - 1).astype(np.int64)
    return table


def default_search_A(table: pd.DataFrame, pixel_size_A: float) -> float:
    """0.45 of the median nearest-neighbour distance within frames, at most 2.5 A."""
    distances = []
    fixed_A = table[["y_fixed", "x_fixed"]].to_numpy() * pixel_size_A
    for rows in table.groupby("frame").indices.values():
        if len(rows) < 2:
            continue
        pos = fixed_A[rows]
        d, _ = cKDTree(pos).query(pos, k=2)
        distances.append(d[:, 1])
    if not distances:
        return 2.5
    return float(min(0.45 * np.median(np.concatenate(distances)), 2.5))


def chemical_states(atoms: pd.DataFrame, frame_shape: tuple[int, int], pixel_size_A: float, *,
                    border_A: float = 4.0) -> pd.Series:
    """The chemical state of each atom: species, coordination and adjacent rings.

    ``"Si3 6-6-6"`` is a 3-fold Si in three hexagons, ``"Si4 5-5-6-6"`` a 4-fold Si,
    ``"C2 6"`` an edge carbon. Atoms within ``border_A`` of the frame's border get no
    state (None): their rings (an 8-ring reaches 3.7 A from its atoms) may lie outside
    the frame, and the atom finder drops atoms right at the border. 4 A is also the
    reach of the default windows, so states and latents cover the same atoms.

    Parameters
    ----------
    atoms : DataFrame
        ``y, x, species, coordination, n5..n8`` (as in a run's ``atoms.parquet``).
    frame_shape : (int, int)
        Pixels.
    pixel_size_A : float
    border_A : float

    Returns
    -------
    Series of str or None, indexed like ``atoms``.
    """
    _check_atoms(atoms, columns=("y", "x", "species", "coordination",
                                 *(f"n{k}" for k in RING_SIZES)))
    counts = atoms[[f"n{k}" for k in RING_SIZES]].to_numpy()
    labels = [f"{s}{c} {ring_label(n)}" for s, c, n in
              zip(atoms["species"], atoms["coordination"], counts, strict=True)]
    margin = border_A / pixel_size_A
    y = atoms["y"].to_numpy()
    x = atoms["x"].to_numpy()
    inside = ((y >= margin) & (y <= frame_shape[0] - 1 - margin)
              & (x >= margin) & (x <= frame_shape[1] - 1 - margin))
    return pd.Series(np.where(inside, labels, None), index=atoms.index, dtype=object)


def site_name(state: str) -> str:
    """What a chemist calls a chemical state of :func:`chemical_states`, e.g. "Si3 6-6-6"
    -> "3-fold Si: graphene lattice"."""
    element, _, rings = state.partition(" ")
    species = element.rstrip("0123456789")
    fold = element[len(species):]
    return f"{fold}-fold {species}: {structure_name(rings or 'no ring')}"


def find_transitions(tracks: pd.DataFrame) -> pd.DataFrame:
    """Changes of chemical state along each track.

    A change is listed at the first frame the new state is seen; observations without a
    state (near the border) neither start nor end one, so a state seen on both sides of
    them is one state.

    Parameters
    ----------
    tracks : DataFrame
        ``track, frame, state`` (and ``y, x``), sorted by track and frame.

    Returns
    -------
    DataFrame
        ``track, frame, from_state, to_state, frames_since`` (frames since the previous
        state was last seen: 1 when consecutive), ``y, x`` (pixels, where it happened).
    """
    known, same_track, changed = _known_states(tracks)
    at = np.nonzero(same_track & changed)[0]
    after = known.iloc[at + 1]
    before = known.iloc[at]
    return pd.DataFrame({
        "track": after["track"].to_numpy(), "frame": after["frame"].to_numpy(),
        "from_state": before["state"].to_numpy(), "to_state": after["state"].to_numpy(),
        "frames_since": after["frame"].to_numpy() - before["frame"].to_numpy(),
        "y": after["y"].to_numpy(), "x": after["x"].to_numpy()})


def transition_counts(transitions: pd.DataFrame) -> pd.DataFrame:
    """How often each change of state happened: ``from_state, to_state, count``, most
    frequent first."""
    if not {"from_state", "to_state"} <= set(transitions.columns):
        raise ValueError("transitions must have the columns from_state, to_state")
    counts = transitions.groupby(["from_state", "to_state"]).size().rename("count")
    return counts.reset_index().sort_values(["count", "from_state", "to_state"],
                                            ascending=[False, True, True],
                                            kind="stable").reset_index(drop=True)


def state_lifetimes(tracks: pd.DataFrame) -> pd.DataFrame:
    """How long atoms stay in each chemical state, frames.

    A stay is a run of consecutive known states along a track; stays cut by the track's
    start or end are censored (their true length is unknown, only a lower bound).

    Returns
    -------
    DataFrame
        ``state, stays, frames, mean_frames, median_frames, complete`` (stays with a seen
        start and end, whose mean is ``mean_complete_frames``), most frames first.
    """
    known, same_track, changed = _known_states(tracks)
    new = np.ones(len(known), bool)
    new[1:] = ~same_track | changed
    stays = known[["track", "state", "frame"]].assign(stay=np.cumsum(new) - 1)
    per = stays.groupby("stay").agg(track=("track", "first"), state=("state", "first"),
                                    start=("frame", "min"), end=("frame", "max"))
    per["frames"] = per["end"] - per["start"] + 1
    first_stay = per.groupby("track")["start"].transform("min") == per["start"]
    last_stay = per.groupby("track")["end"].transform("max") == per["end"]
    per["complete"] = ~(first_stay | last_stay)
    out = per.groupby("state").agg(
        stays=("frames", "size"), frames=("frames", "sum"), mean_frames=("frames", "mean"),
        median_frames=("frames", "median"), complete=("complete", "sum"))
    out["mean_complete_frames"] = (per[per["complete"]].groupby("state")["frames"].mean()
                                   .reindex(out.index))
    return out.sort_values("frames", ascending=False, kind="stable").reset_index()


def _known_states(tracks: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows with a state, and for each consecutive pair of them whether they belong
    to the same track and whether the state changed (both length ``len(known) - 1``)."""
    _check_tracks(tracks)
    known = tracks[tracks["state"].notna()]
    track = known["track"].to_numpy()
    state = known["state"].to_numpy()
    return known, track[1:] == track[:-1], state[1:] != state[:-1]


def _check_tracks(tracks: pd.DataFrame) -> None:
    if not isinstance(tracks, pd.DataFrame):
        raise TypeError(f"tracks must be a DataFrame, got {type(tracks).__name__}")
    missing = [c for c in ("track", "frame", "state") if c not in tracks.columns]
    if missing:
        raise ValueError(f"tracks lacks the column(s) {missing}")
    key = tracks[["track", "frame"]].to_numpy()
    if len(key) > 1 and not (np.lexsort((key[:, 1], key[:, 0])) == np.arange(len(key))).all():
        raise ValueError("tracks must be sorted by track and frame")
