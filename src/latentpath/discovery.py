"""A yardstick of discovery that needs no truth: does the latent plane separate the
structures the bond graph names, better than a linear projection of the same windows,
and does the chemical-space map name them?

Every window of a STEM run carries a label from the found atoms' bond graph: the rings
its centre atom belongs to (atom windows) or the size of the ring around it (hollow
windows). The graph never sees the latent space, so it is an independent reference on
any movie, real or synthetic. With synthetic truth the same scores are computed against
the true labels.

- **Latent purity**: 5-fold 5-nearest-neighbour balanced accuracy of the label from the
  content latents ``(z1, z2)``, beside the same from a 2-D PCA of the same windows
  (what any linear method gets for free) and from a 10-D PCA (how much the windows
  hold at all).
- **Map agreement**: per label, the share of windows whose map class is that label.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from latentpath import rundir

#: labels with fewer windows than this are left out of the balanced accuracies: 5-NN
#: cannot recall a class of a handful of points, whatever the plane.
MIN_LABEL_WINDOWS = 10

#: each window folder's discovery score, written by the run's maps step

#: the latent plane "separates better than PCA" when its balanced accuracy is at least
#: this much higher; smaller gaps lie within the spread of folds and seeds
MARGIN = 0.03

#: the map should name each of the commonest structures for at least this share of
#: their windows (issue 20's target); below it the run's sentence says so
COMMON_NAMED = 0.80
COMMON_STRUCTURES = 3


def knn_balanced_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 5,
                          folds: int = 5, seed: int = 0, standardize: bool = True
                          ) -> tuple[float, dict[str, float]]:
    """Cross-validated k-nearest-neighbour balanced accuracy of ``labels`` from
    ``features``.

    The windows are split into ``folds`` seeded folds; each fold's points are classified
    by the majority label of their k nearest points in the other folds (ties go to the
    nearest of the tied labels). The balanced accuracy is the mean of the per-label
    recalls, so a rare structure counts as much as the lattice.

    Parameters
    ----------
    features : ndarray (N, d)
        E.g. the content latents ``(z1, z2)``.
    labels : array (N,)
        Any hashable labels.
    k, folds : int
    seed : int
        Seeds the fold split.
    standardize : bool
        Scale each feature to unit variance first, so no axis dominates the distance.

    Returns
    -------
    balanced : float
        Mean recall over the labels.
    recall : dict
        Recall of each label (as str).

    Examples
    --------
    >>> x = np.r_[np.zeros((20, 2)), np.ones((20, 2))] + np.arange(40)[:, None] * 1e-3
    >>> knn_balanced_accuracy(x, np.repeat(["a", "b"], 20))[0]
    1.0
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, d) with N = len(labels) = {len(y)}, got "
                         f"{x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    if folds < 2 or len(x) < folds * (k + 1):
        raise ValueError(f"need at least {folds * (k + 1)} points for {folds}-fold {k}-NN, "
                         f"got {len(x)}")
    if standardize:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1)
    classes, coded = np.unique(y, return_inverse=True)
    fold = np.random.default_rng(seed).permutation(len(x)) % folds
    predicted = np.empty(len(x), np.int64)
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        _, nearest = cKDTree(x[train]).query(x[test], k=k)
        votes = coded[train][nearest.reshape(len(test), k)]
        counts = np.zeros((len(test), len(classes)), np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(test)), k), votes.ravel()), 1)
        # among tied labels, the one whose first vote is nearest
        best = counts == counts.max(1, keepdims=True)
        rank = np.full((len(test), len(classes)), k, np.int64)
        for col in range(k - 1, -1, -1):
            rank[np.arange(len(test)), votes[:, col]] = col
        predicted[test] = np.where(best, rank, k + 1).argmin(1)
    recall = {str(c): float((predicted[coded == i] == i).mean())
              for i, c in enumerate(classes)}
    return float(np.mean(list(recall.values()))), recall


def pca_features(windows: np.ndarray, n_components: int = 2, *, max_fit: int = 20000,
                 seed: int = 0, chunk: int = 8192) -> np.ndarray:
    """The first principal components of flattened windows: the linear baseline the
    latent plane is compared with.

    Parameters
    ----------
    windows : ndarray (N, w, w) or (N, c, w, w)
        A memory map works; it is read in chunks.
    n_components : int
    max_fit : int
        The components are fitted on at most this many windows (a seeded sample) and
        every window is projected on them.

    Returns
    -------
    ndarray (N, n_components), float64
    """
    n = len(windows)
    if n < 2:
        raise ValueError(f"need at least 2 windows for a PCA, got {n}")
    fit = np.sort(np.random.default_rng(seed).permutation(n)[:max_fit])
    sample = np.asarray(windows[fit], dtype=np.float64).reshape(len(fit), -1)
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    basis = vt[:n_components].T
    out = np.empty((n, basis.shape[1]))
    for start in range(0, n, chunk):
        block = np.asarray(windows[start:start + chunk], dtype=np.float64)
        out[start:start + len(block)] = (block.reshape(len(block), -1) - mean) @ basis
    return out


@dataclass(frozen=True)
class DiscoveryScore:
    """How well one kind of window's latent plane and map recover reference labels.

    Attributes
    ----------
    kind : {"atom", "hollow"}
    reference : str
        Where the labels come from: "graph" (the found atoms' bond graph) or "truth".
    n_windows, n_scored : int
        Windows of the kind, and those with a label that is scored.
    label_counts : dict
        Scored windows per label, most common first.
    excluded : dict
        Labels left out of the balanced accuracies (fewer than
        :data:`MIN_LABEL_WINDOWS` windows), with their counts.
    latent, pca2, pca10 : float
        5-fold 5-NN balanced accuracy of the label from ``(z1, z2)``, from a 2-D PCA
        and from a 10-D PCA of the same windows (NaN when fewer than two labels).
    latent_recall, pca2_recall : dict
        Per-label recall of the first two.
    map_agreement : dict
        Per label: share of its windows whose map class equals it.
    """

    kind: str
    reference: str
    n_windows: int
    n_scored: int
    label_counts: dict
    excluded: dict
    latent: float
    pca2: float
    pca10: float
    latent_recall: dict = field(default_factory=dict)
    pca2_recall: dict = field(default_factory=dict)
    map_agreement: dict = field(default_factory=dict)

    @property
    def gain_over_pca(self) -> float:
        """Balanced accuracy of the latent plane minus that of the 2-D PCA."""
        return self.latent - self.pca2

    def never_named(self, at_most: float = 0.0) -> list[str]:
        """Scored labels the map gives to at most this share of their windows."""
        return [label for label in self.label_counts if label not in self.excluded
                and self.map_agreement.get(label, 0.0) <= at_most]

    def weakly_named_common(self) -> dict[str, float]:
        """The :data:`COMMON_STRUCTURES` commonest scored labels that the map names for
        some, but fewer than :data:`COMMON_NAMED`, of their windows, with that share."""
        common = [label for label in self.label_counts
                  if label not in self.excluded][:COMMON_STRUCTURES]
        return {label: self.map_agreement.get(label, 0.0) for label in common
                if 0.0 < self.map_agreement.get(label, 0.0) < COMMON_NAMED}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DiscoveryScore:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(values)
        if missing:
            raise ValueError(f"discovery score lacks {sorted(missing)}")
        return cls(**{name: values[name] for name in names})

    def sentence(self) -> str:
        """One plain sentence on what the latent plane and the map recover."""
        what = {"atom": "atom-centred", "hollow": "hollow-site"}.get(self.kind, self.kind)
        source = "bond graph" if self.reference == "graph" else "truth"
        if np.isnan(self.latent):
            return (f"{what} windows: too few structures of the {source} to score the "
                    f"latent plane ({self.n_scored} windows scored).")
        gap = self.gain_over_pca
        if gap >= MARGIN:
            verdict = "separates the structures better than a 2-D PCA of the same windows"
        elif gap <= -MARGIN:
            verdict = "separates the structures WORSE than a 2-D PCA of the same windows"
        else:
            verdict = "separates the structures no better than a 2-D PCA of the same windows"
        line = (f"{what} windows: the latent plane {verdict} ({self.latent:.2f} vs "
                f"{self.pca2:.2f} balanced 5-NN accuracy of the {source}'s "
                f"{len(self.label_counts) - len(self.excluded)} structures")
        line += f"; 10-D PCA {self.pca10:.2f})"
        missed = self.never_named()
        if missed:
            line += "; the map never names " + ", ".join(missed)
        else:
            worst = min(self.map_agreement.items(), key=lambda kv: kv[1], default=None)
            if worst is not None:
                line += f"; the map names every structure (weakest: {worst[0]} " \
                        f"{worst[1]:.0%})"
        weak = self.weakly_named_common()
        if weak:
            # measured: the weakest common structure moves by up to 0.13 between
            # training seeds of the same windows (docs/chemical-space.md)
            one = len(weak) == 1
            line += ("; of the commonest it names " + ", ".join(
                f"{label} for only {share:.0%}" for label, share in weak.items())
                + f" of {'its' if one else 'their'} windows (a model trained from "
                  f"another seed may name {'it' if one else 'them'} better)")
        return line + "."


def score_discovery(latents: pd.DataFrame, windows: np.ndarray, labels: pd.Series, *,
                    kind: str, reference: str = "graph", k: int = 5, folds: int = 5,
                    seed: int = 0, min_windows: int = MIN_LABEL_WINDOWS) -> DiscoveryScore:
    """Latent purity and map agreement of one kind of window against reference labels.

    Parameters
    ----------
    latents : DataFrame
        A run's latent table: ``z1, z2`` and the map's class ``map_structure``; row i
        for window i.
    windows : ndarray (N, w, w)
        The windows the latents were encoded from (for the PCA baselines).
    labels : Series (N,)
        The reference label of each window (a structure name as
        :func:`latentpath.graph.ring_label` gives it), None or NaN where unscored;
        index aligned with ``latents``.
    kind : {"atom", "hollow"}
    reference : {"graph", "truth"}
    k, folds, seed
        As in :func:`knn_balanced_accuracy`.
    min_windows : int
        Labels with fewer windows are listed but not scored.

    Returns
    -------
    DiscoveryScore
    """
    if len(latents) != len(windows) or len(labels) != len(latents):
        raise ValueError(f"latents ({len(latents)}), windows ({len(windows)}) and labels "
                         f"({len(labels)}) must have one row per window")
    missing = {"z1", "z2", "map_structure"} - set(latents.columns)
    if missing:
        raise ValueError(f"the latent table lacks {sorted(missing)}")
    labels = pd.Series(np.asarray(labels, dtype=object), index=latents.index)
    has = labels.notna().to_numpy()
    counts = labels[has].value_counts()
    excluded = counts[counts < min_windows]
    scored = has & ~labels.isin(excluded.index).to_numpy()
    y = labels.to_numpy()[scored].astype(str)
    nan = float("nan")
    latent = pca2 = pca10 = nan
    latent_recall: dict = {}
    pca2_recall: dict = {}
    if len(np.unique(y)) >= 2 and len(y) >= folds * (k + 1):
        kw = {"k": k, "folds": folds, "seed": seed}
        latent, latent_recall = knn_balanced_accuracy(
            latents[["z1", "z2"]].to_numpy()[scored], y, **kw)
        pcs = pca_features(windows, min(10, int(np.prod(windows.shape[1:]))), seed=seed)
        pca2, pca2_recall = knn_balanced_accuracy(pcs[scored, :2], y, **kw)
        pca10, _ = knn_balanced_accuracy(pcs[scored], y, **kw)
    agreement = map_agreement(latents["map_structure"].to_numpy(), labels.to_numpy(),
                              counts.index)
    return DiscoveryScore(kind=kind, reference=reference, n_windows=len(latents),
                          n_scored=int(scored.sum()),
                          label_counts={str(a): int(b) for a, b in counts.items()},
                          excluded={str(a): int(b) for a, b in excluded.items()},
                          latent=latent, pca2=pca2, pca10=pca10,
                          latent_recall=latent_recall, pca2_recall=pca2_recall,
                          map_agreement=agreement)


def map_agreement(mapped: np.ndarray, labels: np.ndarray, names) -> dict[str, float]:
    """Per label of ``names``: the share of the windows with that reference label
    (``labels``, None where unscored) whose map class (``mapped``) is that label."""
    mapped = np.asarray(mapped).astype(str)
    labels = np.asarray(labels, dtype=object)
    return {str(name): float((mapped[labels == name] == str(name)).mean()) for name in names}


def graph_labels(table: pd.DataFrame, atoms: pd.DataFrame, rings: pd.DataFrame, kind: str,
                 *, edges: bool = False) -> pd.Series:
    """Each window's structure from the run's bond graph.

    Atom windows: the rings the centre atom belongs to ("6-6-6", "5-6-7", ...), for
    atoms inside the sheet (three rings found); with ``edges`` also the atoms of one or
    two rings at the rim of a hole ("6-6", "6", ...), as
    :func:`latentpath.evaluate.true_window_labels` names the truth's. Atoms of no ring
    get no label. Hollow windows: the size of the ring the window is centred on ("5",
    "6", ...).

    Parameters
    ----------
    table : DataFrame
        A window table with ``atom`` (row of ``atoms``) or ``ring`` (row of ``rings``).
    atoms : DataFrame
        ``n5..n8`` per atom (``atoms.parquet`` of a run).
    rings : DataFrame
        ``size`` per ring (``rings.parquet`` of a run).
    """
    from latentpath.graph import RING_SIZES, ring_label

    if kind == "atom":
        counts = atoms.loc[table["atom"].to_numpy(), [f"n{s}" for s in RING_SIZES]].to_numpy()
        names = [ring_label(c) if c.sum() == 3 or (edges and c.sum() > 0) else None
                 for c in counts]
    elif kind == "hollow":
        names = [str(int(s)) if s in RING_SIZES else None
                 for s in rings.loc[table["ring"].to_numpy(), "size"].to_numpy()]
    else:
        raise ValueError(f"kind must be 'atom' or 'hollow', got {kind!r}")
    return pd.Series(names, index=table.index, dtype=object)


def summary_sentence(scores: list[DiscoveryScore]) -> str:
    """The run summary's sentence: each kind's :meth:`DiscoveryScore.sentence`."""
    return " ".join(score.sentence() for score in scores)


def read_discovery(folder: str | Path) -> DiscoveryScore | None:
    """The ``discovery.json`` of a run's window folder; None if the run predates it."""
    path = Path(folder) / rundir.DISCOVERY
    if not path.is_file():
        return None
    try:
        return DiscoveryScore.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a discovery score ({err})") from None
