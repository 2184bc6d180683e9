"""Latent maps: what each point of a trained skip-rVAE's content-latent plane means.

- :func:`manifold` decodes a grid of ``(z1, z2)`` into images (the method's Fig. 2a, 4a).
- :func:`chemical_space_map` decodes every point of a fine grid, finds the atoms in
  each decoded image (intensity above 0.5 of the normalised image), builds one bond
  graph over all images at once and counts the 5-, 6-, 7- and 8-rings at the image
  centre: around the centre atom for atom-centred windows, the ring holding the centre
  for hollow-site windows; -1 marks unphysical images (Fig. 2c-e, 3b, 4b). The
  published notebook decodes and analyses one grid point at a time; here decoding is
  batched and the graph work is vectorised over all images.
- :func:`encoded_image` paints each window's latent value at its place on its frame.
- :func:`labels_at` reads the map's class at each window's encoded latent point.

Content latents are called ``z1, z2`` as in the latent tables of
:func:`latentpath.rvae.encode`. Decoded images are in the units of the training
windows; pixel distances here are in pixels of the decoded images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy import ndimage, sparse
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from latentpath.checks import check_float
from latentpath.graph import (
    KINDS,
    RING_SIZES,
    find_bonds,
    find_rings,
    ring_at_points,
    ring_counts,
    ring_label,
)
from latentpath.rvae import SkipRVAE, decode

#: Class of an unphysical decoded image.
UNPHYSICAL = -1
#: How far from a decoded image's centre, in bond lengths, the rings it is read for
#: reach, with a margin for distortion: those through a centre atom to 2.6 l (an
#: 8-ring's far atom), the one around a hollow site to 1.3 l (an 8-ring's corners).
#: Smeared atoms make the image unphysical only within it: one in the next shell of a
#: hollow window had made 27 % of the reference movie's 5-ring windows unphysical.
RING_REACH = MappingProxyType({"atom": 2.5, "hollow": 1.6})

#: a smeared atom is larger than this many times its image's typical atom
SMEAR_RATIO = 1.5
#: a missing ring atom is stood in for where the image at its place is this bright:
#: chosen on the twelve kept runs of the discovery benchmark (docs/chemical-space.md)
STAND_IN_LEVEL = 0.3
#: atoms of a decoded image are bonded up to this many bond lengths apart (the method's
#: window for found atoms ends at 1.2): where the windows a decoder averages disagree,
#: at the edge of a structure's part of the plane, it draws that structure's ring
#: strained towards its neighbour's, a side 1.2-1.3 l long. Second neighbours stand at
#: 1.73 l. Chosen on the twelve kept runs of the discovery benchmark's seeds 0 and 1
#: (docs/chemical-space.md)
DECODED_BOND_HIGH = 1.3
#: the longest bond window a reading takes: a stand-in joins atoms farther apart
BOND_HIGH_MAX = 1.45


def map_reading() -> dict[str, float]:
    """The constants a map is read with by default, for the key of a step that reads
    one: a run resumed after they change reads its maps again."""
    return {"bond_high": DECODED_BOND_HIGH, "stand_in_level": STAND_IN_LEVEL,
            "smear_ratio": SMEAR_RATIO}


def _check_bond_high(bond_high: float) -> float:
    return check_float("bond_high", bond_high, minimum=1, maximum=BOND_HIGH_MAX, strict=True)


def latent_grid(latents: pd.DataFrame, n: int, *, columns: tuple[str, str] = ("z1", "z2"),
                quantile: float = 0.005, margin: float = 0.05
                ) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced values of two latents that cover the encoded windows.

    Parameters
    ----------
    latents : DataFrame
        Latent table with ``columns``.
    n : int
        Points per axis.
    quantile : float
        The range runs from this quantile to its complement, so a few outliers do not
        stretch the map.
    margin : float
        Extra room on each side, as a share of the range.

    Returns
    -------
    (ndarray (n,), ndarray (n,))
        Values of the first and of the second latent, ascending.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    missing = [c for c in columns if c not in latents.columns]
    if missing:
        raise ValueError(f"latent table has no column(s) {missing}")
    if len(latents) == 0:
        raise ValueError("latent table is empty")
    axes = []
    for c in columns:
        values = latents[c].to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"latent column {c!r} holds NaN or infinite values")
        lo, hi = np.quantile(values, [quantile, 1 - quantile])
        pad = margin * max(hi - lo, 1e-6)
        axes.append(np.linspace(lo - pad, hi + pad, n))
    return axes[0], axes[1]


def _plane(z1: np.ndarray, z2: np.ndarray, latent_dim: int) -> np.ndarray:
    """Grid points (len(z2) * len(z1), latent_dim): row-major over (z2, z1), further
    content latents at their prior mean 0."""
    g1, g2 = np.meshgrid(z1, z2)
    return _points(g1.ravel(), g2.ravel(), latent_dim)


def _points(z1: np.ndarray, z2: np.ndarray, latent_dim: int) -> np.ndarray:
    """Latent points (M, latent_dim) at ``(z1[m], z2[m])``, further content latents at
    their prior mean 0."""
    z = np.zeros((len(z1), latent_dim), np.float32)
    z[:, 0], z[:, 1] = z1, z2
    return z


def _check_side(name: str, value: int | None) -> None:
    """An image side a caller asked for: None or an integer of at least 4 pixels."""
    if value is not None and (int(value) != value or value < 4):
        raise ValueError(f"{name} must be an integer of at least 4, got {value}")


def _check_model(model: SkipRVAE) -> None:
    if model.config.latent_dim < 2:
        raise ValueError("latent maps need a model with at least 2 content latents, this "
                         f"one has {model.config.latent_dim}")


def manifold(model: SkipRVAE, z1: np.ndarray, z2: np.ndarray, *, size: int | None = None,
             read_px: int | None = None, batch_size: int = 1024) -> np.ndarray:
    """Decoded images of a grid of content latents, upright and centred.

    Parameters
    ----------
    model : SkipRVAE
    z1, z2 : ndarray (n1,), (n2,)
        Values of the first two content latents (others are 0).
    size : int, optional
        Side of each decoded image, pixels (default: the window size).
    read_px : int, optional
        Resample single-channel images to this side (:func:`resample_images`), as
        :func:`chemical_space_map` does before reading them. None: as decoded.

    Returns
    -------
    ndarray (n2, n1, s, s), or (n2, n1, c, s, s) for c > 1 channels, float32
        ``[i, j]`` is the image at ``(z1[j], z2[i])``.
    """
    _check_model(model)
    z = _plane(z1, z2, model.config.latent_dim)
    images = decode(model, z, size=size, batch_size=batch_size)
    if read_px is not None:
        images = resample_images(images, read_px)
    return images.reshape(len(z2), len(z1), *images.shape[1:])


def mosaic(images: np.ndarray, gap_px: int = 1) -> np.ndarray:
    """Tile a (n2, n1, s, s) manifold into one image, z2 increasing upwards.

    Gaps are NaN, so that a figure draws them as background.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n2, n1, s, s), got {images.shape}")
    n2, n1, s, _ = images.shape
    step = s + gap_px
    out = np.full((n2 * step - gap_px, n1 * step - gap_px), np.nan, np.float32)
    for i in range(n2):
        row = (n2 - 1 - i) * step
        for j in range(n1):
            out[row:row + s, j * step:j * step + s] = images[i, j]
    return out


def find_decoded_atoms(images: np.ndarray, *, threshold: float = 0.5,
                       method: str = "peaks", min_area_px: int = 2) -> pd.DataFrame:
    """Atoms of decoded images.

    Parameters
    ----------
    images : ndarray (M, s, s)
        Normalised images (atoms near 1, background near 0).
    threshold : float
        Atoms are brighter than this.
    method : {"peaks", "blobs"}
        "peaks": every local maximum (3 x 3) above ``threshold`` is an atom, so atoms
        that a bright bond joins above the threshold stay apart (a decoder's average
        of many windows draws such bonds). "blobs": each connected set of pixels above
        ``threshold`` is one atom.
    min_area_px : int
        Blobs smaller than this are noise ("blobs" only).

    Returns
    -------
    DataFrame
        ``image, y, x, area`` (pixels; position = centre weighted by the intensity
        above the threshold). ``area``: pixels of the blob, shared equally among the
        peaks in it ("peaks"), so that a smeared atom is a large one. "peaks" adds
        ``ridge``: the peak is as bright (within 5 %) as its two neighbours on some
        line through it, atoms smeared into a streak.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (M, s, s), got {images.shape}")
    if method not in ("peaks", "blobs"):
        raise ValueError(f"method must be 'peaks' or 'blobs', got {method!r}")
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within an image, never across images
    labels, n = ndimage.label(images > threshold, structure=structure)
    if n == 0:
        return pd.DataFrame({"image": np.zeros(0, np.int64), "y": np.zeros(0),
                             "x": np.zeros(0), "area": np.zeros(0, np.int64)})
    if method == "peaks":
        return _peak_atoms(images, labels, n, threshold)
    flat = labels.ravel()
    on = flat > 0
    lab = flat[on] - 1
    # Weights fall to zero at the threshold, so the pixels that just make it in (which
    # come in uneven sets around a sub-pixel centre) barely pull the centre.
    weight = images.ravel()[on].astype(np.float64) - threshold
    idx = np.flatnonzero(on)
    img, rem = np.divmod(idx, images.shape[1] * images.shape[2])
    yy, xx = np.divmod(rem, images.shape[2])
    area = np.bincount(lab, minlength=n)
    total = np.bincount(lab, weight, minlength=n)
    table = pd.DataFrame({
        "image": np.bincount(lab, img, minlength=n) // np.maximum(area, 1),
        "y": np.bincount(lab, weight * yy, minlength=n) / total,
        "x": np.bincount(lab, weight * xx, minlength=n) / total,
        "area": area})
    table["image"] = table["image"].astype(np.int64)
    return table[table.area >= min_area_px].reset_index(drop=True)


#: a peak whose two neighbours on a line through it are this bright is on a ridge
RIDGE = 0.95


def _peak_atoms(images: np.ndarray, labels: np.ndarray, n_blobs: int, threshold: float
                ) -> pd.DataFrame:
    """:func:`find_decoded_atoms` with ``method="peaks"``, given the blobs."""
    top = ndimage.maximum_filter(images, size=(1, 3, 3), mode="constant", cval=-np.inf)
    img, y, x = np.nonzero((images == top) & (labels > 0))
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="constant",
                    constant_values=threshold)
    dy, dx = (d.ravel() for d in np.mgrid[-1:2, -1:2])
    around = padded[img[:, None], y[:, None] + 1 + dy, x[:, None] + 1 + dx]
    # A flat top gives equal maxima side by side: keep the first in raster order.
    earlier = np.arange(9) < 4
    single = ~(around[:, earlier] == images[img, y, x][:, None]).any(1)
    img, y, x, around = img[single], y[single], x[single], around[single]
    weight = np.clip(around - threshold, 0, None).astype(np.float64) + 1e-12
    blob = labels[img, y, x] - 1
    peaks_in_blob = np.bincount(blob, minlength=n_blobs)
    blob_area = np.bincount(labels.ravel(), minlength=n_blobs + 1)[1:]
    # A peak on a ridge (as bright on both sides along some line) is atoms smeared
    # into a streak, not one atom.
    peak = around[:, 4:5]
    opposite = np.minimum(around[:, :4], around[:, :4:-1])
    ridge = (opposite >= RIDGE * peak).any(1)
    return pd.DataFrame({
        "image": img.astype(np.int64),
        "y": y + (weight * dy).sum(1) / weight.sum(1),
        "x": x + (weight * dx).sum(1) / weight.sum(1),
        "area": blob_area[blob] / peaks_in_blob[blob],
        "ridge": ridge})


def centre_rings(atoms: pd.DataFrame, n_images: int, size_px: int, bond_length_px: float, *,
                 kind: str = "atom", smeared_area_px: float | None = None,
                 smear_reach: float | None = None, smear_ratio: float | None = SMEAR_RATIO,
                 max_ring: int = max(RING_SIZES), bridge_gaps: bool = False,
                 images: np.ndarray | None = None, stand_in_level: float | None = None,
                 bond_high: float = DECODED_BOND_HIGH) -> np.ndarray:
    """Rings of each size at the centre of every image, from its atoms.

    All images' atoms go into one graph (each image shifted far from the others), so
    bonds, rings and counts are found in one vectorised pass.

    Parameters
    ----------
    atoms : DataFrame
        ``image, y, x, area`` from :func:`find_decoded_atoms`.
    n_images, size_px : int
        Number of images and their side, pixels.
    bond_length_px : float
        C-C bond length l in pixels of the images.
    kind : {"atom", "hollow"}
        "atom": rings containing the atom at the centre (within 0.4 l of it); "hollow":
        the ring whose polygon holds the centre point.
    smeared_area_px : float, optional
        Blobs larger than this near the centre are smeared or merged atoms and make
        the image unphysical; default the area of a disc of radius 0.45 l.
    smear_reach : float, optional
        How near the centre, in bond lengths, a smeared atom makes the image
        unphysical (default :data:`RING_REACH` of ``kind``: as far as the rings read).
    smear_ratio : float, optional
        A blob counts as smeared only if it is also larger than this many times the
        median area of its image's atoms within ``smear_reach`` (default
        :data:`SMEAR_RATIO`). A broad probe or a coarse pixel draws every atom of a
        movie broad: on the coarsest movie of the benchmark the decoded atoms' median
        area was 0.9 of the fixed disc, and 41 % of its 5-6-7 sites read as unphysical
        for atoms no broader than their neighbours. None: the fixed area alone.
    bridge_gaps : bool
        Stand in for one missing atom of a ring: two atoms with fewer than three bonds,
        no bond or neighbour in common, within the rings at the centre and as far apart
        as atoms two steps round a 5- to 8-ring (1.45-2.05 l) are joined through a
        stand-in atom between them (:func:`bridge_missing_atoms`). A decoder draws
        the far atom of a rarer ring dim where the windows it averages disagree; the
        two atoms beside it still say where the ring runs.
    images : ndarray (n_images, size_px, size_px), optional
        The images the atoms were found in; needed for ``stand_in_level``.
    stand_in_level : float, optional
        Stand in only where the image is at least this bright at the missing atom's
        place (one bond length from both atoms, on their side away from the centre):
        a decoder draws a rarer ring's far atom dim, and past a hole's rim it draws
        the next row of the lattice faint and the atom beyond it darker still, so
        that a stand-in there closes a ring across the hole. None: anywhere.
    bond_high : float
        Atoms closer than this many bond lengths (and farther than 0.5) are bonded
        (default :data:`DECODED_BOND_HIGH`; the method's 1.2 for found atoms); above 1
        and at most :data:`BOND_HIGH_MAX`, where the stand-in's pairs begin.

    Returns
    -------
    ndarray (n_images, 4) of int
        Counts of 5-, 6-, 7- and 8-rings (:data:`RING_SIZES`); rows of -1 for
        unphysical images: no atom at the centre ("atom"), centre atom without a bond,
        no ring around the centre or an atom on it ("hollow"), or smeared atoms near
        the centre.
    """
    bond_high = _check_bond_high(bond_high)
    return _centre_structure(atoms, n_images, size_px, bond_length_px, kind=kind,
                             smeared_area_px=smeared_area_px, smear_reach=smear_reach,
                             smear_ratio=smear_ratio, max_ring=max_ring,
                             bridge_gaps=bridge_gaps, images=images,
                             stand_in_level=stand_in_level, bond_high=bond_high)[0]


def _centre_structure(atoms: pd.DataFrame, n_images: int, size_px: int,
                      bond_length_px: float, *, kind: str, smeared_area_px: float | None,
                      smear_reach: float | None, smear_ratio: float | None, max_ring: int,
                      bridge_gaps: bool, images: np.ndarray | None = None,
                      stand_in_level: float | None = None,
                      bond_high: float = DECODED_BOND_HIGH) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centre_rings`, and the bonds of each image's centre atom (0 where there is
    none, and for hollow windows)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not bond_length_px > 0:
        raise ValueError(f"bond_length_px must be positive, got {bond_length_px}")
    out = np.full((n_images, len(RING_SIZES)), UNPHYSICAL, np.int64)
    centre_bonds = np.zeros(n_images, np.int64)
    if len(atoms) == 0:
        return out, centre_bonds
    centre = (size_px - 1) / 2
    image = atoms["image"].to_numpy()
    yx = atoms[["y", "x"]].to_numpy(np.float64)
    r = np.hypot(yx[:, 0] - centre, yx[:, 1] - centre)
    smeared_area = np.pi * (0.45 * bond_length_px) ** 2 if smeared_area_px is None \
        else smeared_area_px
    near = r < (RING_REACH[kind] if smear_reach is None else smear_reach) * bond_length_px
    area = atoms["area"].to_numpy()
    if smear_ratio is not None:
        # A broad probe draws every atom broad: a smeared atom is one broad for its image.
        typical = pd.Series(area[near]).groupby(image[near]).median()
        own = np.zeros(n_images)
        own[typical.index.to_numpy()] = typical.to_numpy()
        smeared_area = np.maximum(smeared_area, smear_ratio * own[image])
    smeared = area > smeared_area
    if "ridge" in atoms.columns:
        smeared |= atoms["ridge"].to_numpy(bool)
    bad = np.zeros(n_images, bool)
    bad[image[near & smeared]] = True
    # Lay the images side by side, far enough apart that no bond crosses between them.
    pitch = size_px + 4 * bond_length_px
    pos = yx + np.stack([np.zeros(len(image)), image * pitch], 1)
    bonds = find_bonds(pos, bond_length=bond_length_px, high=bond_high)
    if bridge_gaps:
        # within an atom window's reach for either kind: a hollow site's ring lies
        # inside it, and a stand-in only counts where it closes the centre's rings
        drawn = None
        if stand_in_level is not None:
            check_float("stand_in_level", stand_in_level, minimum=0, maximum=1)
            if images is None or np.shape(images) != (n_images, size_px, size_px):
                raise ValueError(f"stand_in_level needs the {n_images} images of "
                                 f"{size_px} x {size_px} px the atoms were found in, got "
                                 f"{None if images is None else np.shape(images)}")

            def drawn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
                apex = _missing_atom(yx[a], yx[b], bond_length_px, centre)
                at = ndimage.map_coordinates(
                    images, [image[a], apex[:, 0], apex[:, 1]], order=1, mode="nearest")
                return at >= stand_in_level
        pos, bonds = bridge_missing_atoms(pos, bonds, bond_length_px,
                                          r < RING_REACH["atom"] * bond_length_px, keep=drawn)
    rings = find_rings(pos, bonds, max_size=max_ring)
    if kind == "atom":
        counts = ring_counts(len(pos), rings, sizes=RING_SIZES).to_numpy()
        degree = np.bincount(bonds.ravel(), minlength=len(pos))
        candidates = np.flatnonzero(r < 0.4 * bond_length_px)
        # The atom nearest the centre of each image.
        order = candidates[np.lexsort((r[candidates], image[candidates]))]
        first = order[np.unique(image[order], return_index=True)[1]]
        centre_bonds[image[first]] = degree[first]
        good = first[(degree[first] > 0) & ~bad[image[first]]]
        out[image[good]] = counts[good]
    else:
        points = np.stack([np.full(n_images, centre), centre + np.arange(n_images) * pitch], 1)
        holder = ring_at_points(points, pos, rings)
        # A hollow site has no atom on it.
        bad[image[r < 0.4 * bond_length_px]] = True
        good = np.flatnonzero((holder >= 0) & ~bad)
        sizes = rings["size"].to_numpy()[holder[good]]
        out[good] = 0
        for j, k in enumerate(RING_SIZES):
            out[good[sizes == k], j] = 1
        out[good[~np.isin(sizes, RING_SIZES)]] = UNPHYSICAL
    return out, centre_bonds


def _missing_atom(a_yx: np.ndarray, b_yx: np.ndarray, bond_length: float, centre: float
                  ) -> np.ndarray:
    """Where the atom bonded to both of each pair would sit: one bond length from each,
    on the side of the pair away from the image's centre (outside the ring through it)."""
    mid = (a_yx + b_yx) / 2
    chord = b_yx - a_yx
    half = np.hypot(*chord.T) / 2
    normal = np.stack([-chord[:, 1], chord[:, 0]], 1) / (2 * half[:, None])
    out = np.sign(((mid - centre) * normal).sum(1))
    out[out == 0] = 1
    rise = np.sqrt(np.clip(bond_length**2 - half**2, 0, None))
    return mid + (out * rise)[:, None] * normal


def bridge_missing_atoms(positions: np.ndarray, bonds: np.ndarray, bond_length: float,
                         inner: np.ndarray, *,
                         keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Add a stand-in atom, bonded to both, between each pair of atoms that a single
    missing atom of a ring would leave: fewer than three bonds each, not bonded and
    without a common neighbour, 1.45 to 2.05 bond lengths apart (atoms two steps round
    a 5- to 8-ring: 1.62-1.85 l, with room for strain), both ``inner``.

    ``keep(a, b)``, where given, says which of the candidate pairs (indices into
    ``positions``) to join. Returns the positions with the stand-ins appended (at each
    pair's midpoint, so that no new bond crosses another) and the bonds with theirs.
    """
    n = len(positions)
    degree = np.bincount(bonds.ravel(), minlength=n)
    open_end = np.flatnonzero((degree < 3) & inner)
    if len(open_end) < 2:
        return positions, bonds
    pairs = cKDTree(positions[open_end]).query_pairs(2.05 * bond_length, output_type="ndarray")
    a, b = open_end[pairs[:, 0]], open_end[pairs[:, 1]]
    far = np.hypot(*(positions[a] - positions[b]).T) > 1.45 * bond_length
    a, b = a[far], b[far]
    ends = (bonds.ravel(), bonds[:, ::-1].ravel())
    adjacency = sparse.coo_matrix((np.ones(2 * len(bonds)), ends), shape=(n, n)).tocsr()
    shared = np.asarray(adjacency[a].multiply(adjacency[b]).sum(1)).ravel()
    a, b = a[shared == 0], b[shared == 0]
    if keep is not None and len(a):
        chosen = keep(a, b)
        a, b = a[chosen], b[chosen]
    stand_in = n + np.arange(len(a))
    positions = np.concatenate([positions, (positions[a] + positions[b]) / 2])
    bonds = np.concatenate([bonds, np.stack([a, stand_in], 1), np.stack([stand_in, b], 1)])
    return positions, bonds


@dataclass
class ChemicalSpaceMap:
    """Rings at the centre of the decoded image at every point of a latent grid.

    Attributes
    ----------
    z1, z2 : ndarray (n1,), (n2,)
        Grid values of the first two content latents.
    counts : ndarray (n2, n1, 4) of int
        5-, 6-, 7-, 8-ring counts at ``(z1[j], z2[i])``; -1 where unphysical.
    kind : {"atom", "hollow"}
    """

    z1: np.ndarray
    z2: np.ndarray
    counts: np.ndarray
    kind: str

    @property
    def physical(self) -> np.ndarray:
        """(n2, n1) bool: the decoded image is a physical structure."""
        return (self.counts >= 0).all(-1)

    def classes(self) -> pd.DataFrame:
        """Each distinct structure with its share of the physical map, largest first."""
        flat = self.counts.reshape(-1, len(RING_SIZES))
        unique, n = np.unique(flat, axis=0, return_counts=True)
        table = pd.DataFrame(unique, columns=[f"n{k}" for k in RING_SIZES])
        table.insert(0, "structure", [ring_label(u) for u in unique])
        table["points"] = n
        table["share"] = n / n.sum()
        return table.sort_values("points", ascending=False, ignore_index=True)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"z1": self.z1, "z2": self.z2, "counts": self.counts,
                "kind": np.array(self.kind)}

    @classmethod
    def from_arrays(cls, data: dict) -> ChemicalSpaceMap:
        return cls(np.asarray(data["z1"]), np.asarray(data["z2"]),
                   np.asarray(data["counts"]), str(data["kind"]))


def chemical_space_map(model: SkipRVAE, z1: np.ndarray, z2: np.ndarray, *,
                       bond_length_px: float, kind: str = "atom",
                       value_range: tuple[float, float] | None = None, threshold: float = 0.5,
                       retry_threshold: float | None = 0.4, bridge_gaps: bool = True,
                       stand_in_level: float | None = STAND_IN_LEVEL,
                       smear_ratio: float | None = SMEAR_RATIO, retry_edges: bool = False,
                       bond_high: float = DECODED_BOND_HIGH,
                       method: str = "peaks", size: int | None = None,
                       read_px: int | None = None, coarse_step: int | None = None,
                       batch_size: int = 4096, progress: bool = False) -> ChemicalSpaceMap:
    """Rings at the centre of the decoded image at every point of a latent grid.

    Parameters
    ----------
    model : SkipRVAE
    z1, z2 : ndarray (n1,), (n2,)
        Grid values, e.g. from :func:`latent_grid` (200 each for the method's map).
    bond_length_px : float
        C-C bond length in pixels of the training windows.
    kind : {"atom", "hollow"}
        What the windows were centred on.
    value_range : (float, float), optional
        Intensities of background and of an atom in the training windows' units, by
        which decoded images are normalised before thresholding. None (default): each
        image is scaled to its own range, darkest 0 and brightest 1. A decoder draws
        atoms dimmer where the windows it averages disagree (away from the centre, in
        rare structures), and its own range keeps them above the threshold.
    threshold : float
        Atoms are brighter than this share of the normalised intensity (the method's
        0.5).
    retry_threshold : float, optional
        Images whose structure does not close at ``threshold`` are read again at this
        share (:func:`read_structures`). None: one reading.
    bridge_gaps : bool
        Images that close at neither share are read a third time with one missing
        ring atom stood in for (:func:`read_structures`).
    stand_in_level : float, optional
        Only where the image is at least this bright at the missing atom's place
        (:func:`centre_rings`); None: wherever two atoms leave room for one.
    smear_ratio : float, optional
        A smeared atom is also larger than this many times its image's typical atom
        (:func:`centre_rings`); None: any blob larger than a disc of 0.45 bond lengths.
    retry_edges : bool
        Read again also the images whose centre atom has one or two bonds
        (:func:`read_structures`).
    bond_high : float
        Decoded atoms closer than this many bond lengths are bonded
        (:func:`read_structures`).
    method : {"peaks", "blobs"}
        How atoms are found (:func:`find_decoded_atoms`). On the demo's atom windows
        the map's classes matched the truth for 0.85 of the commonest structures'
        windows read as peaks of each image's range, 0.77 as blobs at a fixed range
        (docs/chemical-space.md).
    size : int, optional
        Decode on an s x s grid instead of the window's w x w: fewer pixels, same
        field of view (atoms need about 3 pixels per bond length to stay apart). The
        decoder is fit only on its training grid; on a finer one it draws what no
        window showed (a model of 16 x 16 windows decoded on 24 x 24 read the lattice
        as 6-6-6 for 0.2 % of its windows): to read finer, use ``read_px``.
    read_px : int, optional
        Resample every decoded image to ``read_px`` a side (:func:`resample_images`)
        before its atoms are found: the reading's thresholds and peak search want
        about 4 pixels per bond length, which small training windows do not give.
        None: read the images as decoded.
    coarse_step : int, optional
        Read every ``coarse_step``-th point of the grid first, then, halving the step,
        only inside the grid cells whose four corners differ (a quadtree); a cell
        whose corners all read alike takes their class. The map stays the same
        along every boundary between classes and loses only islands that fall
        between the corners of a cell; the maps of a run are mostly large regions,
        so far fewer images are decoded (:func:`refined_grid`). None: every point.
    batch_size : int
        Images decoded and analysed together.

    Returns
    -------
    ChemicalSpaceMap

    Examples
    --------
    An untrained decoder draws no atoms, so every point of its map is unphysical; a
    trained one's map holds the structures of its windows (a STEM run's
    ``RUN/atom/maps.npz``).

    >>> import torch
    >>> from latentpath.rvae import RVAEConfig
    >>> with torch.random.fork_rng():
    ...     _ = torch.manual_seed(0)
    ...     model = SkipRVAE(RVAEConfig(window_px=16, hidden=32, layers=2))
    >>> space = chemical_space_map(model, np.linspace(-2, 2, 5), np.linspace(-2, 2, 4),
    ...                            bond_length_px=2.7, read_px=24)
    >>> space.counts.shape
    (4, 5, 4)
    >>> space.classes()[["structure", "points"]].to_dict("records")
    [{'structure': 'unphysical', 'points': 20}]
    """
    _check_side("read_px", read_px)
    _check_bond_high(bond_high)
    w = model.config.window_px
    s = w if size is None else int(size)
    # The decoder's grid spans the window's field of view edge pixel to edge pixel.
    scale = ((s if read_px is None else read_px) - 1) / (w - 1)
    z1, z2 = np.asarray(z1), np.asarray(z2)

    def read(images: np.ndarray) -> np.ndarray:
        if read_px is not None:
            images = resample_images(images, read_px)
        return read_structures(images, bond_length_px * scale, kind=kind,
                               threshold=threshold, retry_threshold=retry_threshold,
                               bridge_gaps=bridge_gaps, stand_in_level=stand_in_level,
                               smear_ratio=smear_ratio, retry_edges=retry_edges,
                               bond_high=bond_high, method=method)

    if coarse_step is None:
        counts = np.concatenate([read(images) for images in decoded_grid(
            model, z1, z2, value_range=value_range, size=size, batch_size=batch_size,
            progress=progress)]).reshape(len(z2), len(z1), len(RING_SIZES))
    else:
        def read_points(i: np.ndarray, j: np.ndarray) -> np.ndarray:
            z = _points(z1[j], z2[i], model.config.latent_dim)
            return np.concatenate([read(images) for images in _decoded_batches(
                model, z, value_range, s, batch_size)])

        counts = refined_grid(read_points, (len(z2), len(z1)), coarse_step,
                              progress=progress)
    return ChemicalSpaceMap(z1, z2, counts, kind)


def refined_grid(read: Callable[[np.ndarray, np.ndarray], np.ndarray], shape: tuple[int, int],
                 coarse_step: int, *, progress: bool = False) -> np.ndarray:
    """A grid of classes read coarse to fine, only where the classes change.

    Every ``coarse_step``-th point (and the last row and column) is read first. Then,
    halving the step each round, each cell whose four corners differ is split in four
    and its new corners are read; a cell whose corners agree takes their class for
    the points inside it that were not read. Boundaries between classes are followed
    to single points; an island of a class that falls entirely between the corners of
    a cell is missed.

    Parameters
    ----------
    read : callable (i, j) -> ndarray (M, c)
        The class of grid points ``(i[m], j[m])`` as c numbers.
    shape : (n_rows, n_cols)
    coarse_step : int
        Grid points between the first round's corners (1: read every point).

    Returns
    -------
    ndarray (n_rows, n_cols, c)
        In the dtype ``read`` returns.

    Examples
    --------
    >>> disc = lambda i, j: ((i - 20) ** 2 + (j - 20) ** 2 < 100)[:, None].astype(int)
    >>> grid = refined_grid(disc, (40, 40), 8)
    >>> exact = disc(*np.indices((40, 40)).reshape(2, -1)).reshape(40, 40, 1)
    >>> bool((grid == exact).all())
    True
    """
    n_rows, n_cols = shape
    if int(coarse_step) != coarse_step or coarse_step < 1:
        raise ValueError(f"coarse_step must be a positive integer, got {coarse_step}")
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if min(shape) < 2:
        coarse_step = 1  # no cells to split: every point is a corner
    known = np.zeros(shape, bool)
    values = None
    bar = tqdm(total=n_rows * n_cols, desc="chemical-space map", unit="point",
               disable=not progress)

    def visit(i: np.ndarray, j: np.ndarray) -> None:
        nonlocal values
        flat = np.unique(i * n_cols + j)
        flat = flat[~known.ravel()[flat]]
        if not len(flat):
            return
        i, j = np.divmod(flat, n_cols)
        read_here = np.asarray(read(i, j))
        if values is None:
            values = np.zeros((*shape, read_here.shape[1]), read_here.dtype)
        values[i, j] = read_here
        known[i, j] = True
        bar.update(len(flat))

    rows = np.unique(np.r_[0:n_rows:coarse_step, n_rows - 1])
    cols = np.unique(np.r_[0:n_cols:coarse_step, n_cols - 1])
    visit(*(g.ravel() for g in np.meshgrid(rows, cols, indexing="ij")))
    # cells as rows (i0, i1, j0, j1) of corner indices, all four corners read; a grid
    # one point wide or high has none, and every point of it is a corner
    i0, j0 = np.meshgrid(rows[:-1], cols[:-1], indexing="ij")
    i1, j1 = np.meshgrid(rows[1:], cols[1:], indexing="ij")
    cells = np.stack([i0.ravel(), i1.ravel(), j0.ravel(), j1.ravel()], 1)
    filled = []
    while len(cells):
        i0, i1, j0, j1 = cells.T
        corners = values[[i0, i0, i1, i1], [j0, j1, j0, j1]]
        alike = (corners == corners[0]).all(axis=(0, 2))
        filled += list(zip(cells[alike], corners[0][alike], strict=True))
        split = cells[~alike & ((i1 - i0 > 1) | (j1 - j0 > 1))]
        i0, i1, j0, j1 = split.T
        im, jm = (i0 + i1) // 2, (j0 + j1) // 2
        cells = np.concatenate([np.stack(c, 1) for c in (
            (i0, im, j0, jm), (i0, im, jm, j1), (im, i1, j0, jm), (im, i1, jm, j1))])
        cells = cells[(cells[:, 0] < cells[:, 1]) & (cells[:, 2] < cells[:, 3])]
        visit(np.r_[cells[:, 0], cells[:, 0], cells[:, 1], cells[:, 1]],
              np.r_[cells[:, 2], cells[:, 3], cells[:, 2], cells[:, 3]])
    # Filled last, so that no point read in a later round is overwritten; two cells
    # that share an edge and both take their corners' class agree on it.
    for (a, b, c, d), value in filled:
        block = np.s_[a:b + 1, c:d + 1]
        values[block][~known[block]] = value
    bar.update(n_rows * n_cols - bar.n)
    bar.close()
    return values


def decoded_grid(model: SkipRVAE, z1: np.ndarray, z2: np.ndarray, *,
                 value_range: tuple[float, float] | None = None, size: int | None = None,
                 batch_size: int = 4096, progress: bool = False) -> Iterator[np.ndarray]:
    """The normalised images decoded at every point of a latent grid, batch by batch, as
    :func:`chemical_space_map` reads them.

    Parameters
    ----------
    model : SkipRVAE
    z1, z2 : ndarray (n1,), (n2,)
        Grid values; points run row-major over (z2, z1), further content latents at 0.
    value_range, size, batch_size, progress
        As in :func:`chemical_space_map`.

    Returns
    -------
    iterator of ndarray (B, s, s), float32
        Background near 0 and atoms near 1.
    """
    _check_model(model)
    if value_range is not None and not value_range[1] > value_range[0]:
        raise ValueError(f"value_range must be (background, atom) with atom > background, "
                         f"got {value_range}")
    _check_side("size", size)
    s = model.config.window_px if size is None else int(size)
    z = _plane(z1, z2, model.config.latent_dim)
    return _decoded_batches(model, z, value_range, s, batch_size, progress=progress)


def _decoded_batches(model: SkipRVAE, z: np.ndarray, value_range: tuple[float, float] | None,
                     size: int, batch_size: int, *, progress: bool = False
                     ) -> Iterator[np.ndarray]:
    """The normalised images decoded at content latents ``z`` (M, k), batch by batch."""
    return (_normalise(decode(model, z[start:start + batch_size], size=size,
                              precision="auto", batch_size=batch_size), value_range)
            for start in tqdm(range(0, len(z), batch_size), desc="chemical-space map",
                              unit="batch", disable=not progress))


def resample_images(images: np.ndarray, size: int) -> np.ndarray:
    """Square images resampled to ``size`` a side by cubic splines, corner pixel centres
    kept in place (the decoder's grid spans its field of view edge pixel to edge pixel).

    Parameters
    ----------
    images : ndarray (N, s, s)
    size : int
        Side of the resampled images, pixels.

    Returns
    -------
    ndarray (N, size, size), float32

    Examples
    --------
    The splines pass through the samples: every other pixel of a 5 -> 9 resampling is
    an input pixel.

    >>> image = np.random.default_rng(0).random((1, 5, 5), dtype=np.float32)
    >>> fine = resample_images(image, 9)
    >>> fine.shape
    (1, 9, 9)
    >>> bool(np.allclose(fine[:, ::2, ::2], image, atol=1e-5))
    True
    """
    _check_side("size", size)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, s, s), got shape {images.shape}")
    s = images.shape[-1]
    if size == s:
        return images
    # The spline resampling is linear: one (size, s) matrix per axis does every image.
    rows = np.stack([ndimage.zoom(e, size / s, order=3, grid_mode=False, mode="nearest")
                     for e in np.eye(s, dtype=np.float64)], axis=1).astype(np.float32)
    return rows @ images @ rows.T


def _normalise(images: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    if value_range is None:
        lo = images.min(axis=(1, 2), keepdims=True)
        hi = np.maximum(images.max(axis=(1, 2), keepdims=True), lo + 1e-6)
    else:
        lo, hi = value_range
    return (images - lo) / (hi - lo)


def read_structures(images: np.ndarray, bond_length_px: float, *, kind: str = "atom",
                    threshold: float = 0.5, retry_threshold: float | None = 0.4,
                    bridge_gaps: bool = True, method: str = "peaks",
                    smear_reach: float | None = None,
                    smear_ratio: float | None = SMEAR_RATIO, retry_edges: bool = False,
                    stand_in_level: float | None = STAND_IN_LEVEL,
                    bond_high: float = DECODED_BOND_HIGH) -> np.ndarray:
    """Rings at the centre of normalised decoded images, read again at a lower threshold
    where the structure does not close.

    Parameters
    ----------
    images : ndarray (M, s, s)
        Decoded images scaled to atoms near 1 and background near 0.
    bond_length_px : float
        C-C bond length in pixels of the images.
    kind : {"atom", "hollow"}
    threshold : float
        Atoms are brighter than this (:func:`find_decoded_atoms`).
    retry_threshold : float, optional
        Images whose structure does not close at ``threshold`` (an atom window's centre
        in fewer than three rings, a hollow window's centre in no ring) are read again
        at this lower share, and the second reading is kept where it closes. A decoder
        draws the far atoms of a 7- or 8-ring dimmer where the windows it averages
        disagree; images that close at ``threshold`` keep their reading, so the lattice
        is never read from the dimmer level. On two held-out movies the atom map named
        6-6-7 for 0.42 -> 0.46 and 0.26 -> 0.31 of its windows, 5-7-7 for 0.04 -> 0.27
        and 0.47 -> 0.58, and no structure less often (docs/chemical-space.md). None:
        one reading.
    bridge_gaps : bool
        Images that close at neither level are read a third time at
        ``retry_threshold`` (or ``threshold``) with one missing atom of a ring stood in
        for (:func:`centre_rings`), kept where the structure then closes. On six kept
        runs' atom maps it named no structure less often and 6-6-7 for up to 0.20,
        5-7-7 for up to 0.38 more of their windows (docs/chemical-space.md); see
        ``stand_in_level`` for the atoms at a hole's rim.
    method : {"peaks", "blobs"}
    smear_reach, smear_ratio : float, optional
        As in :func:`centre_rings`.
    retry_edges : bool
        Read again also the atom images whose centre atom has one or two bonds at
        ``threshold``. False (default): such an atom is at the rim of a hole and keeps
        its first reading, since the retries, chosen for the dim far atoms of a rarer
        ring, close a ring across the hole instead.
    stand_in_level : float, optional
        The third reading stands in for a missing atom only where the image is at
        least this bright at its place (:func:`centre_rings`; default
        :data:`STAND_IN_LEVEL`). None: wherever two atoms leave room for one.
    bond_high : float
        Atoms closer than this many bond lengths are bonded, at every reading (default
        :data:`DECODED_BOND_HIGH`). At the method's 1.2 the decoder's strained rings
        stay open where it draws the edge of a structure's part of the plane; on the
        discovery benchmark's 24 kept runs 1.3 named each run's three commonest
        structures for 0.80 of their windows on 21 runs instead of 17
        (docs/chemical-space.md).

    Returns
    -------
    ndarray (M, 4) of int
        :func:`centre_rings` counts of 5-, 6-, 7- and 8-rings.

    Examples
    --------
    An image without atoms reads as unphysical (-1) at both levels:

    >>> read_structures(np.zeros((1, 16, 16), np.float32), 4.0).tolist()
    [[-1, -1, -1, -1]]
    """
    if retry_threshold is not None and not 0 < retry_threshold < threshold:
        raise ValueError(f"retry_threshold must lie between 0 and threshold ({threshold}), "
                         f"got {retry_threshold}")
    if stand_in_level is not None:
        check_float("stand_in_level", stand_in_level, minimum=0, maximum=1)
    bond_high = _check_bond_high(bond_high)
    images = np.asarray(images, np.float32)
    size = images.shape[-1]
    shared = {"smeared_area_px": None, "smear_reach": smear_reach,
              "smear_ratio": smear_ratio, "max_ring": max(RING_SIZES), "bond_high": bond_high}
    atoms = find_decoded_atoms(images, threshold=threshold, method=method)
    counts, centre_bonds = _centre_structure(atoms, len(images), size, bond_length_px,
                                             kind=kind, bridge_gaps=False, **shared)
    whole = 3 if kind == "atom" else 1
    open_ = counts.sum(1) != whole
    if not retry_edges:
        # An atom drawn with one or two bonds is at a hole's rim: a lower level or a
        # stand-in would close a ring across the hole.
        open_ &= ~np.isin(centre_bonds, (1, 2))
    readings = ([(retry_threshold, False)] if retry_threshold is not None else []) + (
        [(retry_threshold or threshold, True)] if bridge_gaps else [])
    for level, bridge in readings:
        again = np.flatnonzero(open_)
        subset = images[again]
        atoms = find_decoded_atoms(subset, threshold=level, method=method)
        later = centre_rings(atoms, len(again), size, bond_length_px, kind=kind,
                             bridge_gaps=bridge, images=subset,
                             stand_in_level=stand_in_level, **shared)
        closed = later.sum(1) == whole
        counts[again[closed]] = later[closed]
        open_[again[closed]] = False
    return counts


def labels_at(space: ChemicalSpaceMap, latents: pd.DataFrame) -> pd.DataFrame:
    """The map's class at each window's encoded ``(z1, z2)`` (nearest grid point).

    Returns
    -------
    DataFrame
        ``n5, n6, n7, n8, structure`` per row of ``latents`` (same index); points
        outside the grid take the class of the nearest edge point.
    """
    missing = {"z1", "z2"} - set(latents.columns)
    if missing:
        raise ValueError(f"latent table has no column(s) {sorted(missing)}")
    j = nearest_index(space.z1, latents["z1"].to_numpy(np.float64))
    i = nearest_index(space.z2, latents["z2"].to_numpy(np.float64))
    counts = space.counts[i, j]
    table = pd.DataFrame(counts, columns=[f"n{k}" for k in RING_SIZES], index=latents.index)
    unique, inverse = np.unique(counts, axis=0, return_inverse=True)
    names = np.array([ring_label(u) for u in unique], dtype=object)
    table["structure"] = names[inverse.ravel()] if len(counts) else []
    return table


def nearest_index(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the grid point of an ascending ``axis`` nearest to each value (values
    outside the axis take its end points)."""
    k = np.clip(np.searchsorted(axis, values), 1, len(axis) - 1)
    return np.where(np.abs(values - axis[k - 1]) <= np.abs(axis[k] - values), k - 1, k)


def encoded_image(shape: tuple[int, int], windows: pd.DataFrame, values: np.ndarray, *,
                  radius_px: float) -> np.ndarray:
    """One frame's windows drawn as discs of their latent value at their centres.

    Parameters
    ----------
    shape : (H, W)
        Frame size, pixels.
    windows : DataFrame
        ``y, x`` (pixels) of the frame's windows.
    values : ndarray (N,)
        The latent (or any per-window number) to draw.
    radius_px : float
        Disc radius; where discs overlap the nearest window wins.

    Returns
    -------
    ndarray (H, W), float32
        NaN away from every window.
    """
    values = np.asarray(values, np.float32)
    if len(values) != len(windows):
        raise ValueError(f"{len(values)} values for {len(windows)} windows")
    out = np.full(shape, np.nan, np.float32)
    if len(windows) == 0:
        return out
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    pix = np.stack([yy.ravel(), xx.ravel()], 1)
    dist, nearest = cKDTree(windows[["y", "x"]].to_numpy(np.float64)).query(
        pix, distance_upper_bound=radius_px)
    inside = np.isfinite(dist)
    out.ravel()[inside] = values[nearest[inside]]
    return out
