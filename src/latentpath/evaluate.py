"""Scoring results on synthetic data against their exact truth."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from latentpath import rundir
from latentpath.atoms.locate import inside_border
from latentpath.atoms.match import match_atoms
from latentpath.discovery import DiscoveryScore

if TYPE_CHECKING:
    from latentpath.pipeline import PfmRun, StemRun

HOLE_DISTANCE_A = 2.2
"""A point farther than this from every true atom lies in a hole."""


#: an atom-detection F1 below this is more likely truth of another movie than a bad finder
TRUTH_DOUBT_F1 = 0.5


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
        With ``image_shape``, found atoms closer than this to the frame edge are left
        out, as the atom finder leaves them out by default, and true atoms closer than
        this plus ``match_radius_A`` (whose match the finder may have dropped); a
        found atom matched to a true atom left out is neither right nor wrong.

    Returns
    -------
    dict
        ``precision, recall, f1, species_accuracy, si_recall, mean_error_A,
        n_found, n_true`` (the found and true atoms scored: beyond the border band) and,
        with the frames table, ``false_per_10nm2_disordered``.

    Raises
    ------
    ValueError
        A match radius that is not a positive number, found rows without finite
        coordinates (dropping them would raise the precision), or frames the truth
        does not have.
    """
    if not (np.isfinite(match_radius_A) and match_radius_A > 0):
        raise ValueError(f"the match radius must be a positive number of angstrom, got "
                         f"{match_radius_A}")
    missing = {"frame", "y", "x"} - set(found.columns)
    if missing:
        raise ValueError(f"the found atoms lack the column(s) {sorted(missing)}")
    unplaced = ~np.isfinite(found[["y", "x"]].to_numpy(dtype=float)).all(1)
    if unplaced.any():
        raise ValueError(f"{int(unplaced.sum())} found atom(s) have no finite position "
                         f"(first: row {int(np.flatnonzero(unplaced)[0])}); drop or repair "
                         "them before scoring")
    extra = sorted(set(found["frame"]) - set(truth["frame"]))
    if extra:
        raise ValueError(f"the found atoms are in frame(s) {extra[:5]} that the truth does "
                         f"not have (it has {truth['frame'].nunique()} frames): is the "
                         "truth of this movie?")
    if "in_image" in truth:
        truth = truth[truth["in_image"]]
    truth = truth.reset_index(drop=True)
    found = found.reset_index(drop=True)
    pairs = match_atoms(found, truth, match_radius_A / pixel_size_A)
    matched_found = np.zeros(len(found), bool)
    matched_found[pairs.found.to_numpy(int)] = True
    if image_shape is not None and border_A > 0:
        # Scored: found atoms beyond the border, and true atoms so far beyond it that
        # their match cannot lie inside it. A true atom just beyond the line whose
        # found atom lies just inside (the finder drops it) is no miss, nor is a found
        # atom just beyond it whose true atom lies just inside a false find: counted
        # so, they took 0.5 % off the F1 of 30 A fields where every atom was found.
        truth_scored = inside_border(truth, image_shape,
                                     (border_A + match_radius_A) / pixel_size_A)
        found_scored = inside_border(found, image_shape, border_A / pixel_size_A)
    else:
        truth_scored = np.ones(len(truth), bool)
        found_scored = np.ones(len(found), bool)
    pairs = pairs[truth_scored[pairs.truth.to_numpy(int)]].reset_index(drop=True)
    false_found = found_scored & ~matched_found
    tp = len(pairs)
    n_found = tp + int(false_found.sum())
    n_true = int(truth_scored.sum())
    precision = tp / n_found if n_found else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    same = (found.loc[pairs.found, "species"].to_numpy()
            == truth.loc[pairs.truth, "species"].to_numpy())
    is_si = (truth["species"] == "Si") & truth_scored
    si_found = truth.loc[pairs.truth[same], "species"].eq("Si").sum()
    scores = {
        "precision": precision, "recall": recall, "f1": f1,
        "species_accuracy": float(same.mean()) if tp else 0.0,
        "si_recall": float(si_found / is_si.sum()) if is_si.any() else float("nan"),
        "mean_error_A": float(pairs.distance_px.mean() * pixel_size_A) if tp else float("nan"),
        "n_found": float(n_found), "n_true": float(n_true),
    }
    if frames_table is not None and image_shape is not None:
        false = found[false_found]
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
        scores["false_per_10nm2_disordered"] = (float(10 * n_false / area_nm2) if area_nm2
                                                else 0.0)
    if n_found and f1 < TRUTH_DOUBT_F1:
        warnings.warn(f"only {tp} of {n_found} found atoms match the {n_true} true ones "
                      f"(F1 {f1:.2f}): is the truth of this movie, and the pixel size "
                      f"({pixel_size_A:g} A) and match radius ({match_radius_A:g} A) right?",
                      stacklevel=2)
    return scores


def _knn_right(features: np.ndarray, labels: np.ndarray, k: int, standardize: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out kNN votes: whether each point's majority class is its own, the
    classes, and each point's class code."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, d) with N = len(labels) = {len(y)}, got "
                         f"{x.shape}")
    if len(x) <= k:
        raise ValueError(f"need more than k = {k} points, got {len(x)}")
    if standardize:
        x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    _, nearest = cKDTree(x).query(x, k=k + 1)
    # Drop each point itself (the first neighbour, or wherever it sits among ties).
    others = np.where(nearest == np.arange(len(x))[:, None], -1, nearest)
    classes, coded = np.unique(y, return_inverse=True)
    votes = np.zeros((len(x), len(classes)), np.int64)
    for col in range(k + 1):
        valid = others[:, col] >= 0
        np.add.at(votes, (np.flatnonzero(valid), coded[others[valid, col]]), 1)
    return votes.argmax(1) == coded, classes, coded


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 5,
                 standardize: bool = True) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: how well ``features`` separate
    ``labels`` (each point is classified by the majority of its k nearest others).

    Parameters
    ----------
    features : ndarray (N, d)
    labels : array (N,)
    k : int
    standardize : bool
        Scale each feature to unit variance first, so no axis dominates the distance.
    """
    right, _, _ = _knn_right(features, labels, k, standardize)
    return float(right.mean())


def knn_per_class(features: np.ndarray, labels: np.ndarray, *, k: int = 5,
                  standardize: bool = True) -> dict[str, float]:
    """Leave-one-out kNN recall of each class (see :func:`knn_accuracy`)."""
    right, classes, coded = _knn_right(features, labels, k, standardize)
    return {str(c): float(right[coded == i].mean()) for i, c in enumerate(classes)}


def score_chemical_space(run: StemRun, truth_atoms: pd.DataFrame, truth_rings: pd.DataFrame, *,
                         pixel_size_A: float, match_radius_A: float = 0.5, k: int = 5
                         ) -> dict[str, float | str]:
    """Accuracy of a STEM run's latent space against synthetic truth.

    - Atom-centred windows: the chemical-space class at each window's encoded latent
      point (``map_n5..map_n8``) against the true ring counts of the atom it is centred
      on, for the three most common true structures (each, and pooled); the same for
      the found atoms' bond graph, for reference.
    - Hollow-site windows: leave-one-out kNN accuracy of the true ring size from
      ``(z1, z2)`` (overall, and the mean of the per-size recalls), and the map's ring
      size against the truth.

    Parameters
    ----------
    run : StemRun
        A STEM run (:class:`latentpath.pipeline.StemRun`).
    truth_atoms, truth_rings : DataFrame
        The synthetic truth's atoms (``n5..n8``) and rings (``size``), pixels.
    """
    from latentpath.graph import RING_SIZES, ring_label

    cols = [f"n{s}" for s in RING_SIZES]
    scores: dict[str, float | str] = {}
    atoms, latents = run.atoms, run.kinds["atom"].latents
    true_rows = _true_atom_rows(atoms, truth_atoms, latents, match_radius_A / pixel_size_A)
    matched = latents.loc[true_rows.index]
    truth = truth_atoms.loc[true_rows.to_numpy(), cols].to_numpy()
    mapped = matched[[f"map_{c}" for c in cols]].to_numpy()
    graph = atoms.loc[matched.atom, cols].to_numpy()
    names = np.array([ring_label(c) for c in truth])
    common = pd.Series(names).value_counts()
    scores["atom_windows_matched"] = float(len(matched))
    pooled = np.isin(names, common.index[:3])
    for rank, name in enumerate(common.index[:3], start=1):
        sel = names == name
        scores[f"atom_top{rank}_structure"] = name
        scores[f"atom_top{rank}_share"] = float(sel.mean())
        scores[f"atom_top{rank}_map_accuracy"] = float((mapped[sel] == truth[sel]).all(1).mean())
        scores[f"atom_top{rank}_graph_accuracy"] = float((graph[sel] == truth[sel]).all(1).mean())
    scores["atom_common3_map_accuracy"] = float((mapped[pooled] == truth[pooled]).all(1).mean())
    scores["atom_common3_graph_accuracy"] = float((graph[pooled] == truth[pooled]).all(1).mean())

    hollow = run.kinds["hollow"].latents
    sizes = _true_ring_sizes(hollow, truth_rings, match_radius_A / pixel_size_A)
    ok = sizes > 0
    z = hollow.loc[ok, ["z1", "z2"]].to_numpy()
    scores["hollow_windows_matched"] = float(ok.sum())
    scores["hollow_knn_accuracy"] = knn_accuracy(z, sizes[ok], k=k)
    per_class = knn_per_class(z, sizes[ok], k=k)
    scores["hollow_knn_balanced_accuracy"] = float(np.mean(list(per_class.values())))
    scores.update({f"hollow_knn_recall_{c}": v for c, v in per_class.items()})
    map_counts = hollow[[f"map_{c}" for c in cols]].to_numpy()
    map_size = np.where((map_counts > 0).any(1),
                        np.asarray(RING_SIZES)[map_counts.argmax(1)], -1)
    scores["hollow_map_accuracy"] = float((map_size[ok] == sizes[ok]).mean())
    return scores


def true_window_labels(run: StemRun, truth_atoms: pd.DataFrame, truth_rings: pd.DataFrame,
                       kind: str, *, pixel_size_A: float, match_radius_A: float = 0.5,
                       edges: bool = False) -> pd.Series:
    """Each window's true structure, named as :func:`latentpath.discovery.graph_labels`
    names the graph's: the true rings of the true atom the window's atom matches (inside
    the sheet: three rings; with ``edges`` also the atoms of one or two rings at the rim
    of a hole, "6", "5-6"...), or the size of the true ring whose centre lies within
    ``match_radius_A`` of the window's centre. None where nothing matches.

    Parameters
    ----------
    run : StemRun
        A STEM run (:class:`latentpath.pipeline.StemRun`).
    truth_atoms, truth_rings : DataFrame
        The synthetic truth's atoms (``n5..n8``) and rings (``size``), pixels.
    kind : {"atom", "hollow"}
    """
    from latentpath.graph import RING_SIZES, ring_label

    if kind not in run.kinds:
        raise ValueError(f"kind must be 'atom' or 'hollow', got {kind!r}")
    latents = run.kinds[kind].latents
    labels = pd.Series(None, index=latents.index, dtype=object)
    radius = match_radius_A / pixel_size_A
    if kind == "atom":
        true_rows = _true_atom_rows(run.atoms, truth_atoms, latents, radius)
        counts = truth_atoms.loc[true_rows.to_numpy(), [f"n{s}" for s in RING_SIZES]].to_numpy()
        labels[true_rows.index] = [ring_label(c) if c.sum() == 3 or (edges and c.sum() > 0)
                                   else None for c in counts]
        return labels
    sizes = _true_ring_sizes(latents, truth_rings, radius)
    hit = np.isin(sizes, RING_SIZES)
    labels[hit] = [str(int(v)) for v in sizes[hit]]
    return labels


def _true_atom_rows(atoms: pd.DataFrame, truth_atoms: pd.DataFrame, windows: pd.DataFrame,
                    radius_px: float) -> pd.Series:
    """The row of ``truth_atoms`` that each window's atom (``windows.atom``, a row of
    ``atoms``) matches, indexed by the windows that have one."""
    pairs = match_atoms(atoms, truth_atoms, radius_px)
    true_of = pd.Series(pairs.truth.to_numpy(), index=pairs.found.to_numpy())
    matched = windows.atom[windows.atom.isin(true_of.index)]
    return pd.Series(true_of.loc[matched].to_numpy(), index=matched.index)


def _true_ring_sizes(windows: pd.DataFrame, truth_rings: pd.DataFrame, radius_px: float
                     ) -> np.ndarray:
    """Size of the true ring of the same frame whose centre lies nearest each window's
    ``y, x``, if within ``radius_px``; -1 elsewhere."""
    sizes = np.full(len(windows), -1, np.int64)
    for frame, rows in windows.groupby("frame").indices.items():
        true = truth_rings[truth_rings.frame == frame]
        if len(true) == 0:
            continue
        dist, near = cKDTree(true[["y", "x"]].to_numpy()).query(
            windows[["y", "x"]].to_numpy()[rows])
        sizes[rows] = np.where(dist < radius_px, true["size"].to_numpy()[near], -1)
    return sizes


def discovery_scores(run: StemRun, *, truth=None, match_radius_A: float = 0.5
                     ) -> dict[str, dict[str, DiscoveryScore]]:
    """The discovery yardstick (:mod:`latentpath.discovery`) of a STEM run's atom and
    hollow windows, against the run's own bond graph and, given synthetic truth
    (:class:`~latentpath.synth.SynthSTEM`), against the truth.

    Returns
    -------
    dict
        ``{"graph": {kind: DiscoveryScore}, "truth": {...}}`` (no ``"truth"`` without it).
    """
    from latentpath.discovery import graph_labels, score_discovery

    seed = run.settings.seed
    out: dict[str, dict[str, DiscoveryScore]] = {"graph": {}}
    if truth is not None:
        out["truth"] = {}
    for kind, found in run.kinds.items():
        latents = found.latents
        windows = np.load(run.out / kind / rundir.WINDOWS, mmap_mode="r")
        table = latents[[c for c in ("atom", "ring") if c in latents.columns]]
        # the run's own, from its maps step; runs of earlier versions have none
        out["graph"][kind] = found.discovery or score_discovery(
            latents, windows, graph_labels(table, run.atoms, run.rings, kind),
            kind=kind, seed=seed)
        if truth is not None:
            labels = true_window_labels(run, truth.atoms, truth.rings, kind,
                                        pixel_size_A=truth.pixel_size_A,
                                        match_radius_A=match_radius_A)
            out["truth"][kind] = score_discovery(latents, windows, labels, kind=kind,
                                                 reference="truth", seed=seed)
    return out


def flat_discovery(scores: dict[str, DiscoveryScore]) -> dict[str, float]:
    """One reference's scores as flat ``<kind>_<score>`` numbers for scores.json and
    :func:`check_targets`: ``latent``, ``pca2``, ``pca10``, ``gain_over_pca``, and per
    scored label ``map_<label>`` and ``latent_recall_<label>``."""
    flat: dict[str, float] = {}
    for kind, score in scores.items():
        flat.update({f"{kind}_latent": score.latent, f"{kind}_pca2": score.pca2,
                     f"{kind}_pca10": score.pca10,
                     f"{kind}_gain_over_pca": score.gain_over_pca,
                     f"{kind}_windows_scored": float(score.n_scored)})
        for label in score.label_counts:
            if label in score.excluded:
                continue
            flat[f"{kind}_map_{label}"] = score.map_agreement[label]
            flat[f"{kind}_latent_recall_{label}"] = score.latent_recall.get(label, np.nan)
    return flat


def score_rings(found: pd.DataFrame, truth: pd.DataFrame, *, pixel_size_A: float,
                frame_shape: tuple[int, int], match_radius_A: float = 0.5,
                border_A: float = 4.0) -> dict[str, float]:
    """The rings a run's bond graph found against the true rings.

    A found ring matches the nearest true ring of its frame whose centre lies within
    ``match_radius_A``. Rings whose centre lies within ``border_A`` of the frame's edge
    are left out on both sides: the frame cuts them, and atoms there may go unfound.

    Parameters
    ----------
    found, truth : DataFrame
        ``frame, size, y, x`` (ring centres, pixels): a run's ``rings.parquet`` and the
        synthetic truth's rings.
    pixel_size_A : float
    frame_shape : (int, int)
        Frame height and width, pixels.

    Returns
    -------
    dict
        ``rings_true``, ``rings_found``, ``ring_recall`` (true rings with a found ring
        at their centre), ``ring_precision`` (found rings at a true ring's centre),
        ``ring_size_accuracy`` (matched rings of the true size) and, per size k,
        ``ring_recall_k``.
    """
    def inside(rings: pd.DataFrame) -> pd.DataFrame:
        return rings[inside_border(rings, frame_shape, border_A / pixel_size_A)]

    found, truth = inside(found), inside(truth)
    radius = match_radius_A / pixel_size_A
    true_size = np.full(len(found), -1, np.int64)
    hit = np.zeros(len(truth), bool)
    truth_rows = truth.groupby("frame").indices
    for frame, rows in found.groupby("frame").indices.items():
        if frame not in truth_rows:
            continue
        near_rows = truth_rows[frame]
        dist, near = cKDTree(truth[["y", "x"]].to_numpy()[near_rows]).query(
            found[["y", "x"]].to_numpy()[rows])
        ok = dist < radius
        true_size[rows[ok]] = truth["size"].to_numpy()[near_rows][near[ok]]
        hit[near_rows[near[ok]]] = True
    matched = true_size > 0
    scores = {"rings_true": float(len(truth)), "rings_found": float(len(found)),
              "ring_recall": float(hit.mean()) if len(truth) else float("nan"),
              "ring_precision": float(matched.mean()) if len(found) else float("nan"),
              "ring_size_accuracy": (float((found["size"].to_numpy()[matched]
                                            == true_size[matched]).mean())
                                     if matched.any() else float("nan"))}
    sizes = truth["size"].to_numpy()
    for k in np.unique(sizes):
        scores[f"ring_recall_{k}"] = float(hit[sizes == k].mean())
    return scores


#: the accuracy each earlier issue asked of a run on synthetic data: part of the scores,
#: score, ">=" or "<=", the target and what it measures
TARGETS = (
    ("atoms", "f1", ">=", 0.98, "atom detection F1, match radius 0.5 A"),
    ("atoms", "species_accuracy", ">=", 0.99, "C/Si right on matched atoms"),
    ("atoms", "mean_error_A", "<=", 0.1, "mean localisation error, A"),
    ("atoms", "false_per_10nm2_disordered", "<=", 1.0,
     "false atoms per 10 nm2 of hole or amorphous area"),
    ("chemical_space", "atom_common3_map_accuracy", ">=", 0.90,
     "map class = true ring counts, 3 commonest structures"),
    ("chemical_space", "hollow_knn_accuracy", ">=", 0.95,
     "ring size from (z1, z2), 5-NN, hollow-site windows"),
    ("chemical_space", "atom_top1_map_accuracy", ">=", 0.80,
     "map class = true ring counts, commonest structure"),
    ("chemical_space", "atom_top2_map_accuracy", ">=", 0.80,
     "map class = true ring counts, second commonest structure"),
    ("chemical_space", "atom_top3_map_accuracy", ">=", 0.80,
     "map class = true ring counts, third commonest structure"),
    ("discovery_truth", "atom_latent", ">=", 0.85,
     "true structure from (z1, z2), 5-fold 5-NN balanced accuracy, atom windows"),
    ("discovery_truth", "atom_gain_over_pca", ">=", 0.10,
     "the same, minus that of a 2-D PCA of the windows"),
    ("discovery_truth", "hollow_latent", ">=", 0.95,
     "true ring size from (z1, z2), 5-fold 5-NN balanced accuracy, hollow windows"),
    ("discovery_truth", "hollow_gain_over_pca", ">=", 0.03,
     "the same, minus that of a 2-D PCA of the windows"),
    *(("discovery_truth", f"hollow_map_{size}", ">=", 0.80,
       f"hollow map recalls the true {size}-rings") for size in (5, 6, 7, 8)),
    ("tracks", "tracks_mota", ">=", 0.95, "tracking MOTA"),
    ("tracks", "coordination_changes_found_within_1", ">=", 0.90,
     "true coordination changes found within one frame"),
    ("tracks", "false_transitions_per_atom_frame", "<=", 0.05,
     "false transitions per track-frame (1 in 20)"),
    ("pfm", "switching_spearman", ">=", 0.70,
     "switching degree vs true wall velocity, Spearman"),
    ("pfm", "curvature_sign", ">=", 0.85, "curvature sign right, single-wall windows"),
)


def check_targets(scores: dict[str, dict]) -> pd.DataFrame:
    """Each score of ``scores`` (parts as from ``latentpath evaluate RUN``) that has a
    target in :data:`TARGETS`, with the target and whether it is met.

    Returns
    -------
    DataFrame
        ``part, score, value, target, met, meaning``; ``met`` is None where the score is
        NaN (nothing to measure, e.g. no Si in the movie).
    """
    rows = []
    for part, name, sense, goal, meaning in TARGETS:
        if name not in scores.get(part, {}):
            continue
        value = float(scores[part][name])
        met = None if np.isnan(value) else bool(value >= goal if sense == ">=" else
                                                 value <= goal)
        rows.append({"part": part, "score": name, "value": value, "target": f"{sense} {goal}",
                     "met": met, "meaning": meaning})
    return pd.DataFrame(rows, columns=["part", "score", "value", "target", "met", "meaning"])


def score_tracks(tracks: pd.DataFrame, truth_atoms: pd.DataFrame, *, pixel_size_A: float,
                 frame_shape: tuple[int, int], species: tuple[str, ...] = ("Si",),
                 match_radius_A: float = 0.5, border_A: float = 4.0) -> dict[str, float]:
    """Tracking and chemical-transition accuracy against synthetic truth with persistent
    atom ids.

    - MOTA (CLEAR MOT) over the true atoms of ``species`` inside the frames:
      1 - (misses + false positives + identity switches) / true atom-frames.
    - Coordination changes: a true change of a true atom's coordination (both states
      known, away from the border) counts as found when the track matched to that atom
      lists a transition with a change of coordination within one frame of it.
    - False transitions: listed transitions with no change of the true atom's state
      within one frame, per tracked atom-frame; and the share of listed transitions
      that name a true change exactly (same states, within one frame).

    Parameters
    ----------
    tracks : DataFrame
        ``track, frame, y, x, state`` (pixels; :mod:`latentpath.tracks`).
    truth_atoms : DataFrame
        ``id, frame, y, x, species, coordination, n5..n8`` (pixels).
    pixel_size_A : float
    frame_shape : (int, int)
    border_A : float
        The run's border without chemical states (:func:`latentpath.tracks.chemical_states`),
        applied to the truth alike.
    """
    from latentpath.tracks import chemical_states, find_transitions

    h, w = frame_shape
    truth = truth_atoms[truth_atoms["species"].isin(species)
                        & truth_atoms["y"].between(0, h - 1)
                        & truth_atoms["x"].between(0, w - 1)]
    truth = truth.sort_values(["id", "frame"], kind="stable")
    pairs = match_atoms(tracks, truth, match_radius_A / pixel_size_A)
    n_true, n_found, n_matched = len(truth), len(tracks), len(pairs)
    track_of = pd.Series(tracks.loc[pairs.found, "track"].to_numpy(),
                         index=pairs.truth.to_numpy())
    id_of_row = pd.Series(truth.loc[pairs.truth, "id"].to_numpy(), index=pairs.found.to_numpy())
    seen = pd.DataFrame({"id": truth.loc[track_of.index, "id"].to_numpy(),
                         "frame": truth.loc[track_of.index, "frame"].to_numpy(),
                         "track": track_of.to_numpy()}).sort_values(["id", "frame"])
    switches = int(((seen["id"].diff() == 0) & (seen["track"].diff() != 0)).sum())
    scores = {"tracks_true_atom_frames": float(n_true), "tracks_found_atom_frames": float(n_found),
              "tracks_misses": float(n_true - n_matched),
              "tracks_false_positives": float(n_found - n_matched),
              "tracks_id_switches": float(switches),
              "tracks_mota": 1.0 - (n_true - n_matched + n_found - n_matched + switches)
              / max(n_true, 1)}

    truth_tracks = truth.assign(track=truth["id"], state=chemical_states(
        truth, frame_shape, pixel_size_A, border_A=border_A))
    true_changes = find_transitions(truth_tracks)
    found_changes = find_transitions(tracks)
    coordination_found = found_changes[_coordination_changed(found_changes)]
    true_fold = true_changes[_coordination_changed(true_changes)]
    track_at = seen.set_index(["id", "frame"])["track"]
    hits = 0
    for change in true_fold.itertuples():
        near = [track_at.get((change.track, f)) for f in (change.frame - 1, change.frame,
                                                           change.frame + 1)]
        candidates = coordination_found[coordination_found["track"].isin(
            [t for t in near if t is not None])]
        hits += bool((candidates["frame"] - change.frame).abs().le(1).any())
    scores["coordination_changes_true"] = float(len(true_fold))
    scores["coordination_changes_found_within_1"] = (hits / len(true_fold) if len(true_fold)
                                                     else float("nan"))

    row_at = tracks.reset_index().set_index(["track", "frame"])["index"]
    false = exact = 0
    for change in found_changes.itertuples():
        atom_id = id_of_row.get(row_at.get((change.track, change.frame)))
        if atom_id is None:
            false += 1
            continue
        mine = true_changes[true_changes["track"] == atom_id]
        near = mine[(mine["frame"] - change.frame).abs().le(1)]
        false += len(near) == 0
        exact += bool(((near["from_state"] == change.from_state)
                       & (near["to_state"] == change.to_state)).any())
    scores["transitions_found"] = float(len(found_changes))
    scores["transitions_false"] = float(false)
    scores["transitions_exact"] = exact / len(found_changes) if len(found_changes) else (
        float("nan"))
    scores["false_transitions_per_atom_frame"] = false / max(n_found, 1)
    return scores


def _coordination_changed(changes: pd.DataFrame) -> pd.Series:
    """Changes of state whose species and coordination ("Si3" of "Si3 6-6-6") differ."""
    return (changes["from_state"].str.split().str[0]
            != changes["to_state"].str.split().str[0])


def score_walls(found: np.ndarray, truth: np.ndarray, *, tolerance_px: float = 2.0
                ) -> tuple[float, float]:
    """Precision and recall of wall pixels: found pixels within ``tolerance_px`` of a
    true one, and true pixels within it of a found one.

    Parameters
    ----------
    found, truth : ndarray of bool (T, H, W) or (H, W)
    """
    from scipy import ndimage

    if found.shape != truth.shape:
        raise ValueError(f"found walls have shape {found.shape}, the truth {truth.shape}")
    flat = (-1, truth.shape[-1])
    to_truth = ndimage.distance_transform_edt(~truth.reshape(flat)).reshape(truth.shape)
    to_found = ndimage.distance_transform_edt(~found.reshape(flat)).reshape(found.shape)
    precision = float((to_truth[found] <= tolerance_px).mean()) if found.any() else 0.0
    return precision, float((to_found[truth] <= tolerance_px).mean())


def _truth_window_points(table: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Points aligned on frame 0 moved into the truth's frame (which drifts)."""
    frame = table["frame"].to_numpy()
    return pd.DataFrame({"frame": frame,
                         "y": table["y"].to_numpy() + frames["drift_y"].to_numpy()[frame],
                         "x": table["x"].to_numpy() + frames["drift_x"].to_numpy()[frame]})


def true_wall_velocity(table: pd.DataFrame, truth, *, radius_px: float = 3.0) -> np.ndarray:
    """The true wall velocity at each window of a PFM run on a synthetic movie.

    Parameters
    ----------
    table : DataFrame
        ``frame, y, x`` of the windows' centres, aligned on frame 0 (as a run's).
    truth : SynthPFM
    radius_px : float
        The median over the true wall pixels this close to the centre, in frame t.

    Returns
    -------
    ndarray (N,)
        Normal velocity, pixels per frame, positive where the switched domain grows;
        NaN with no true wall pixel within reach.
    """
    points = _truth_window_points(table, truth.frames)
    walls, velocity = truth.walls, truth.wall_velocity
    out = np.full(len(points), np.nan)
    frame = points["frame"].to_numpy()
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        wy, wx = np.nonzero(walls[f])
        if len(wy) == 0:
            continue
        v = velocity[f][wy, wx]
        near = cKDTree(np.c_[wy, wx]).query_ball_point(
            points[["y", "x"]].to_numpy()[rows], radius_px)
        for row, hits in zip(rows, near, strict=True):
            if hits:
                out[row] = np.nanmedian(v[hits])
    return out


def score_pfm(run: PfmRun, truth, *, velocity_radius_px: float = 3.0,
              wall_tolerance_px: float = 2.0) -> dict:
    """Score a PFM run against the truth of its synthetic movie.

    Parameters
    ----------
    run : PfmRun
        A PFM run (:class:`latentpath.pipeline.PfmRun`).
    truth : SynthPFM
    velocity_radius_px : float
        A window's true wall velocity is the median over the true wall pixels this
        close to its centre, in frame t.
    wall_tolerance_px : float
        Found and true wall pixels this close count as matched.

    Returns
    -------
    dict
        ``drift_error_px`` (largest, against the truth's drift);
        ``wall_precision``, ``wall_recall``; ``wall_count_agreement`` (windows whose
        wall count equals the truth's); ``switching_spearman`` (D of each window against
        the true wall velocity), ``switching_spearman_moving`` (only windows on walls
        that move), ``map_switching_spearman`` (D read off the latent map at each
        window's latent point); ``curvature_sign`` (single-wall windows whose curvature
        has the truth's sign), ``curvature_sign_curved`` (those of them whose true
        curvature exceeds 1 / (4 window sides), where a sign is defined),
        ``map_curvature_sign``; and the numbers of windows behind them.
    """
    from scipy.stats import spearmanr

    from latentpath.pfm import window_physics
    from latentpath.windows import cut_windows

    settings = run.settings
    latents, frames = run.latents, truth.frames
    step = settings.window_px / settings.window_samples
    drift = run.drift[["dy", "dx"]].to_numpy()
    drift_error = float(np.abs(drift - frames[["drift_y", "drift_x"]].to_numpy()).max())

    curves = run.curves
    moved = _truth_window_points(curves, frames)
    iy = np.clip(np.rint(moved["y"]).astype(int), 0, truth.walls.shape[1] - 1)
    ix = np.clip(np.rint(moved["x"]).astype(int), 0, truth.walls.shape[2] - 1)
    found = np.zeros(truth.walls.shape, bool)
    found[moved["frame"], iy, ix] = True
    precision, recall = score_walls(found, truth.walls, tolerance_px=wall_tolerance_px)

    here = _truth_window_points(latents, frames)
    polarization = truth.polarization.astype(np.float32)
    first, _ = cut_windows(polarization, here, settings.window_samples, step_px=step,
                           edge="nearest")
    true_now = window_physics(first, threshold=0.0, step_px=step)
    velocity = true_wall_velocity(latents, truth, radius_px=velocity_radius_px)
    has_v = np.isfinite(velocity)
    moving = has_v & (velocity != 0)

    def spearman(values: pd.Series, mask: np.ndarray) -> float:
        if mask.sum() < 3:
            return float("nan")
        return float(spearmanr(values.to_numpy()[mask], velocity[mask])[0])

    single = (true_now.walls == 1).to_numpy()
    curved = single & (true_now.curvature.abs() > 1 / (4 * settings.window_px)).to_numpy()

    def sign_agreement(column: str, mask: np.ndarray) -> float:
        mask = mask & np.isfinite(latents[column].to_numpy(float))
        if not mask.any():
            return float("nan")
        return float((np.sign(latents[column].to_numpy()[mask])
                      == np.sign(true_now.curvature.to_numpy()[mask])).mean())

    return {"drift_error_px": drift_error, "wall_precision": precision, "wall_recall": recall,
            "windows": len(latents),
            "wall_count_agreement": float((latents.walls.to_numpy()
                                           == true_now.walls.to_numpy()).mean()),
            "windows_with_velocity": int(has_v.sum()),
            "windows_on_moving_walls": int(moving.sum()),
            "switching_spearman": spearman(latents.switching, has_v),
            "switching_spearman_moving": spearman(latents.switching, moving),
            "map_switching_spearman": spearman(latents.map_switching, has_v),
            "single_wall_windows": int(single.sum()),
            "curvature_sign": sign_agreement("curvature", single),
            "curved_single_wall_windows": int(curved.sum()),
            "curvature_sign_curved": sign_agreement("curvature", curved),
            "map_curvature_sign": sign_agreement("map_curvature", single)}


def score_stem_run(run: StemRun, truth=None, *, match_radius_A: float = 0.5
                   ) -> tuple[dict, dict[str, dict[str, DiscoveryScore]]]:
    """Everything ``latentpath evaluate`` scores of a STEM run.

    Parameters
    ----------
    run : StemRun
        A STEM run (:class:`latentpath.pipeline.StemRun`), run now or read back.
    truth : SynthStem, optional
        Synthetic truth of the run's movie (:func:`latentpath.synth.read_synth_stem`).
        Without it only the latent spaces are scored, against the run's own bond graph.
    match_radius_A : float
        Largest distance of a found atom from the true atom it stands for.

    Returns
    -------
    scores : dict
        ``discovery_graph`` always; with truth also ``atoms``, ``rings``,
        ``chemical_space``, ``discovery_truth`` and (where atoms were tracked)
        ``tracks``, each a dict of figures.
    discovery : dict
        :func:`discovery_scores`, whose sentences say what the planes separate.
    """
    found = discovery_scores(run, truth=truth, match_radius_A=match_radius_A)
    scores = {f"discovery_{ref}": flat_discovery(kinds) for ref, kinds in found.items()}
    if truth is None:
        return scores, found
    shape = truth.movie.shape[1:]
    scores = {"atoms": score_atoms(run.atoms, truth.atoms, pixel_size_A=truth.pixel_size_A,
                                   match_radius_A=match_radius_A, frames_table=truth.frames,
                                   image_shape=shape),
              "rings": score_rings(run.rings, truth.rings, pixel_size_A=truth.pixel_size_A,
                                   frame_shape=shape, match_radius_A=match_radius_A),
              "chemical_space": score_chemical_space(run, truth.atoms, truth.rings,
                                                     pixel_size_A=truth.pixel_size_A,
                                                     match_radius_A=match_radius_A),
              **scores}
    if len(run.tracks):
        species = run.settings.track_species or truth.atoms.species.unique()
        scores["tracks"] = score_tracks(run.tracks, truth.atoms,
                                        pixel_size_A=truth.pixel_size_A, frame_shape=shape,
                                        species=tuple(species), match_radius_A=match_radius_A,
                                        border_A=run.settings.track_border_A)
    return scores, found
