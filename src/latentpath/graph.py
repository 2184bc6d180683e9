"""The bond graph of a frame's atoms: bonds, primitive rings, ring centres, and the
rings next to any point.

Bonds join atoms closer than ``high`` and farther than ``low`` times the bond length
(0.5 l < d < 1.2 l, the method's rule), found with a KD-tree. Bonds to Si are longer
than C-C bonds (projected Si-C is 1.5-1.9 A against 1.42 A), so every species pair
has its own bond length: ``pair_scale`` times the C-C one.

Rings are the faces of the bond graph drawn in the plane: each directed bond
``u -> v`` is followed by ``v -> w``, with ``w`` the neighbour of ``v`` next clockwise
from ``u``; the cycles of this permutation are the faces. A face has no bond inside it,
so it is a primitive (chordless) ring: two fused pentagons are two 5-rings, never an
8-ring around both. The outer boundary of the sheet and of holes are faces too; they
wind the other way round and are dropped, as are faces of more than ``max_size``
atoms. Everything is vectorised over all atoms at once.

Positions are ``(y, x)`` rows, in any unit, as long as the bond length is in the same
unit (pixels or angstrom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Carbon-carbon bond length of graphene, angstrom.
CC_BOND_A = 1.42

#: Ring sizes the structures are named by, in the order of ring-count arrays
#: (``n5..n8`` of an atom table, the ``counts`` axis of a chemical-space map).
RING_SIZES = (5, 6, 7, 8)
#: What a STEM run's windows are centred on: atoms, or the hollow sites of rings.
KINDS = ("atom", "hollow")
#: Bond length of a species pair relative to C-C. Si-C is about 1.85 A in 3-D and
#: 1.5-1.9 A projected. Si-Si (2.3 A) gets the same scale: a longer one would bond two
#: Si dopants that are second neighbours on one ring (2.6 A apart in projection).
PAIR_SCALE = {("C", "Si"): 1.3, ("Si", "Si"): 1.3}


def _check_positions(positions: np.ndarray, name: str = "positions") -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (y, x), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return pos


def estimate_bond_length(positions: np.ndarray) -> float:
    """Bond length from the nearest-neighbour distances, in the unit of ``positions``.

    The median distance to the nearest neighbour: robust to a few missed or spurious
    atoms, since most atoms of a sheet have their nearest neighbour at one bond length.
    """
    pos = _check_positions(positions)
    if len(pos) < 3:
        raise ValueError(f"need at least 3 atoms to estimate a bond length, got {len(pos)}")
    dist, _ = cKDTree(pos).query(pos, k=2)
    nearest = dist[:, 1]
    nearest = nearest[nearest > 0]
    if len(nearest) == 0:
        raise ValueError("all atoms sit on the same point; no bond length")
    return float(np.median(nearest))


#: how many standard deviations of the found bond lengths the C-C bond window reaches
#: past one bond length (:func:`bond_window`)
BOND_SPREAD_REACH = 4.0


def bond_window(positions: np.ndarray, bond_length: float, *, high: float = 1.2) -> float:
    """Upper end of the C-C bond window, in bond lengths, for atoms found this precisely.

    The method's window ends at ``high`` (1.2 l). Where the found positions scatter,
    bonds scatter with them: on a movie of 0.15 A/px at 2e4 e/A^2 the found atoms lie
    0.12 A from the true ones on average, 4 % of the true bonds measure more than 1.2 l
    between the found atoms, and the bond graph closed the three rings of only 62 % of
    the atoms inside the sheet. The window then reaches ``1 + BOND_SPREAD_REACH * s``,
    where ``s`` is the robust standard deviation (1.4826 MAD) of the distances from
    each atom to its three nearest neighbours that lie within 0.8-1.2 l: 1.29 l there
    (88 % closed, the same share named as the truth names it), 1.2 l on movies whose
    atoms are found to 0.04 l (docs/chemical-space.md).

    Parameters
    ----------
    positions : ndarray (N, 2)
        Atom positions ``(y, x)``, in the unit of ``bond_length``.
    bond_length : float
        C-C bond length l.
    high : float
        The window's end where the atoms are precise, in bond lengths.

    Returns
    -------
    float
        ``max(high, 1 + BOND_SPREAD_REACH * s)``; ``high`` for fewer than 4 atoms.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cells = np.mgrid[0:12, 0:12].reshape(2, -1).T.astype(float)
    >>> lattice = np.concatenate([cells @ [[1.5, 0.866], [0, 1.732]],
    ...                           cells @ [[1.5, 0.866], [0, 1.732]] + [1.0, 0.0]])
    >>> bond_window(lattice, 1.0)
    1.2
    >>> round(bond_window(lattice + rng.normal(0, 0.06, lattice.shape), 1.0), 1)
    1.3
    """
    pos = _check_positions(positions)
    if not bond_length > 0:
        raise ValueError(f"bond_length must be positive, got {bond_length}")
    if len(pos) < 4:
        return float(high)
    dist, _ = cKDTree(pos).query(pos, k=4)
    near = dist[:, 1:].ravel() / bond_length
    near = near[(near > 0.8) & (near < 1.2)]
    if len(near) < 10:
        return float(high)
    spread = 1.4826 * np.median(np.abs(near - np.median(near)))
    return float(max(high, 1 + BOND_SPREAD_REACH * spread))


def find_bonds(positions: np.ndarray, species: np.ndarray | None = None, *,
               bond_length: float | None = None, low: float = 0.5, high: float = 1.2,
               pair_scale: dict[tuple[str, str], float] | None = None,
               carbon_high: float | None = None) -> np.ndarray:
    """Bonds between atoms at ``low * l < d < high * l``.

    Parameters
    ----------
    positions : ndarray (N, 2)
        Atom positions ``(y, x)``.
    species : array of str (N,), optional
        Species names; with them, a pair's bond length is ``l * pair_scale[pair]``.
        Without them every atom is treated as carbon.
    bond_length : float, optional
        C-C bond length l in the unit of ``positions``; estimated from the
        nearest-neighbour distances when not given.
    low, high : float
        The bond window, in bond lengths (the method's 0.5 and 1.2).
    pair_scale : dict, optional
        Bond length of each species pair (sorted names) relative to C-C; pairs not
        listed use 1. Default :data:`PAIR_SCALE`.
    carbon_high : float, optional
        The end of the window of the pairs of bond length l (C-C), where it differs
        from ``high`` (:func:`bond_window`). The scaled pairs keep ``high``: a wider
        Si-C window would reach a Si atom's second neighbours (2.46 A).

    Returns
    -------
    ndarray (M, 2) of int
        Atom index pairs ``i < j``, sorted.
    """
    pos = _check_positions(positions)
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    if len(pos) < 2:
        return np.zeros((0, 2), np.int64)
    cc = estimate_bond_length(pos) if bond_length is None else float(bond_length)
    if not cc > 0:
        raise ValueError(f"bond_length must be positive, got {bond_length}")
    scale = PAIR_SCALE if pair_scale is None else pair_scale
    longest = max([1.0, *scale.values()]) if species is not None else 1.0
    top = high if carbon_high is None else carbon_high
    if not top > low:
        raise ValueError(f"need carbon_high > low, got {carbon_high}")
    pairs = cKDTree(pos).query_pairs(max(high * longest, top) * cc, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    pair_l = np.full(len(pairs), cc)
    if species is not None:
        names = np.asarray(species).astype(str)
        if names.shape != (len(pos),):
            raise ValueError(f"species must have one name per atom ({len(pos)}), got "
                             f"shape {names.shape}")
        a, b = names[pairs[:, 0]], names[pairs[:, 1]]
        first, second = np.where(a < b, a, b), np.where(a < b, b, a)
        for (s1, s2), factor in scale.items():
            lo, hi = min(s1, s2), max(s1, s2)
            pair_l[(first == lo) & (second == hi)] = cc * factor
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    reach = np.where(pair_l == cc, top, high)
    keep = (d > low * pair_l) & (d < reach * pair_l)
    bonds = np.sort(pairs[keep], axis=1)
    return bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]


def find_rings(positions: np.ndarray, bonds: np.ndarray, *, max_size: int = 8
               ) -> pd.DataFrame:
    """Primitive rings: the bounded faces of the planar bond graph, up to ``max_size``.

    Parameters
    ----------
    positions : ndarray (N, 2)
        Atom positions ``(y, x)``.
    bonds : ndarray (M, 2) of int
        Atom index pairs, from :func:`find_bonds`.
    max_size : int
        Largest ring kept; larger faces are holes or edges, not rings.

    Returns
    -------
    DataFrame
        One row per ring: ``ring`` (0..R-1), ``size``, ``y, x`` (centre of mass of the
        members, unit of ``positions``), ``members`` (tuple of atom indices in
        boundary order).
    """
    pos = _check_positions(positions)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) and (bonds.min() < 0 or bonds.max() >= len(pos)):
        raise ValueError(f"bonds refer to atoms outside 0..{len(pos) - 1}")
    if max_size < 3:
        raise ValueError(f"max_size must be at least 3, got {max_size}")
    faces = planar_faces(pos, bonds, max_size=max_size)
    keep = is_ring(faces.simple, faces.area, faces.size, max_size)
    walk, sizes = faces.walk[keep], faces.size[keep]
    members = [tuple(row[:n].tolist()) for row, n in zip(walk, sizes, strict=True)]
    valid = walk >= 0
    centre = (pos[np.where(valid, walk, 0)] * valid[..., None]).sum(1) / sizes[:, None]
    return pd.DataFrame({"ring": np.arange(len(sizes)), "size": sizes,
                         "y": centre[:, 0], "x": centre[:, 1], "members": members})


def is_ring(simple: np.ndarray, area: np.ndarray, size: np.ndarray, max_size: int = 8
            ) -> np.ndarray:
    """Which faces are rings: simple, bounded and of 3 to ``max_size`` atoms.

    Bounded faces wind counter-clockwise in (x, y), i.e. have positive area; holes and
    the outer boundary wind the other way.
    """
    size = np.asarray(size)
    return np.asarray(simple) & (np.asarray(area) > 0) & (size >= 3) & (size <= max_size)


@dataclass
class Faces:
    """Faces of a bond graph drawn in the plane.

    Attributes
    ----------
    walk : ndarray (F, max_size) of int
        Atoms around each face in boundary order, padded with -1; faces longer than
        ``max_size`` hold only their first ``max_size`` atoms.
    size : ndarray (F,)
        Number of directed bonds around each face (its atoms, for a simple face).
    simple : ndarray (F,) of bool
        At most ``max_size`` long and visits each atom once (no dangling bond inside).
    area : ndarray (F,)
        Signed area in the unit of the positions squared: positive for faces that wind
        counter-clockwise in (x, y), which bounded faces do.
    edge_face, edge_atom : ndarray (H,)
        Face and origin atom of every directed bond, to list all atoms of long faces.
    """

    walk: np.ndarray
    size: np.ndarray
    simple: np.ndarray
    area: np.ndarray
    edge_face: np.ndarray
    edge_atom: np.ndarray


def planar_faces(positions: np.ndarray, bonds: np.ndarray, *, max_size: int = 8) -> Faces:
    """Trace every face of the bond graph in its planar embedding (see module notes).

    Parameters
    ----------
    positions : ndarray (N, 2)
        Atom positions ``(y, x)``.
    bonds : ndarray (M, 2) of int
    max_size : int
        Faces are walked in order up to this many atoms.
    """
    pos = _check_positions(positions)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    n = len(pos)
    if len(bonds) == 0:
        none = np.zeros(0, np.int64)
        return Faces(np.zeros((0, max_size), np.int64), none, np.zeros(0, bool),
                     np.zeros(0), none, none)
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    d = pos[dst] - pos[src]
    order = np.lexsort((np.arctan2(d[:, 0], d[:, 1]), src))
    src, dst = src[order], dst[order]
    n_half = len(src)
    start = np.searchsorted(src, np.arange(n))
    degree = np.bincount(src, minlength=n)
    rank = np.arange(n_half) - start[src]
    key = src * n + dst
    by_key = np.argsort(key)
    twin = by_key[np.searchsorted(key[by_key], dst * n + src)]
    nxt = start[dst] + (rank[twin] - 1) % degree[dst]
    graph = sp.coo_matrix((np.ones(n_half), (np.arange(n_half), nxt)),
                          shape=(n_half, n_half))
    n_faces, label = connected_components(graph, directed=True, connection="strong")
    sizes = np.bincount(label, minlength=n_faces)
    first = np.full(n_faces, -1)
    first[label[::-1]] = np.arange(n_half)[::-1]
    # Walk all faces at once, max_size steps.
    walk = np.full((n_faces, max_size), -1, np.int64)
    h = first.copy()
    for k in range(max_size):
        on = k < sizes
        walk[on, k] = src[h[on]]
        h = nxt[h]
    filled = walk >= 0
    x, y = pos[np.where(filled, walk, 0), 1], pos[np.where(filled, walk, 0), 0]
    # Shoelace over the members, closing each face at its own last member.
    last = np.minimum(sizes, max_size) - 1
    x_next = np.where(np.arange(max_size) < last[:, None], np.roll(x, -1, axis=1),
                      x[:, :1])
    y_next = np.where(np.arange(max_size) < last[:, None], np.roll(y, -1, axis=1),
                      y[:, :1])
    area = 0.5 * np.where(filled, x * y_next - x_next * y, 0).sum(1)
    distinct = np.sort(np.where(filled, walk, -1), axis=1)
    repeated = ((distinct[:, 1:] == distinct[:, :-1]) & (distinct[:, 1:] >= 0)).any(1)
    simple = ~repeated & (sizes <= max_size)
    return Faces(walk, sizes, simple, area, label, src)


def bond_frames(positions: np.ndarray, bonds: np.ndarray, rings: pd.DataFrame | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The turn and mirror that bring each atom's bonds into a standard frame.

    A window cut in this frame shows every atom of one structure alike: the two
    sublattices of graphene (one a 60 degree turn of the other), the three turns of a
    5-6-6 site, and the two mirror images of a 5-6-7 site all look the same. The bonds
    go to about 0, 120 and 240 degrees (their three-fold orientation); the sector
    between neighbouring bonds that holds the smallest ring is centred on 180 degrees,
    and of the two next to it the one with the larger ring lies at 60 degrees
    (mirrored if needed). Without ``rings``, or between rings of one size, the
    sectors' angles decide: the narrowest at 180, the wider neighbour at 60.

    The rings decide where they are known because the angles alone do not say which
    ring is which: strain and noise move an atom's bond angles by as much as a 5-,
    6- and 7-ring differ (108, 120, 129 degrees). On three synthetic movies the angles
    put the rings of a 6-6-7 site in the standard order for 0.50-0.52 of its atoms (a
    mirror by chance), of 5-6-7 sites for 0.53-0.71 (docs/chemical-space.md).

    Parameters
    ----------
    positions : ndarray (N, 2)
        Atom positions ``(y, x)``.
    bonds : ndarray (M, 2) of int
        From :func:`find_bonds`.
    rings : DataFrame, optional
        From :func:`find_rings` on the same atoms and bonds; a sector holds the ring
        whose members include the atom and both bonds' neighbours. Sectors without a
        ring (edges, holes) count as larger than any ring.

    Returns
    -------
    turn_rad : ndarray (N,)
        Angle of the frame's x axis in the image, radians, from +x towards +y.
    mirror : ndarray (N,) of bool
        The frame's y axis is reversed.
    Atoms with one bond get only the three-fold turn; atoms without bonds turn by 0.
    A window sample at ``(u, v)`` of the frame lies at ``position + u * (cos t, sin t)
    + s * v * (-sin t, cos t)`` of the image (in ``(x, y)``), ``s = -1`` if mirrored.
    """
    pos = _check_positions(positions)
    bonds = np.asarray(bonds, np.int64).reshape(-1, 2)
    n = len(pos)
    turn, mirror = np.zeros(n), np.zeros(n, bool)
    if len(bonds) == 0:
        return turn, mirror
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    d = pos[dst] - pos[src]
    theta = np.arctan2(d[:, 0], d[:, 1]) % (2 * np.pi)
    threefold = np.zeros(n, complex)
    np.add.at(threefold, src, np.exp(3j * theta))
    turn = np.angle(threefold) / 3
    # each atom's bonds in angular order, and the sector from each to the next
    order = np.lexsort((theta, src))
    src, theta = src[order], theta[order]
    degree = np.bincount(src, minlength=n)
    first = np.concatenate([[0], np.cumsum(degree)[:-1]])
    rank = np.arange(len(src)) - first[src]
    following = first[src] + (rank + 1) % degree[src]
    width = (theta[following] - theta) % (2 * np.pi)
    width[degree[src] == 1] = 2 * np.pi
    middle = theta + width / 2
    ring = np.full(len(src), np.iinfo(np.int64).max)
    if rings is not None and len(rings):
        ring = _sector_ring_sizes(n, src, dst[order][following], dst[order], rings, ring)
    atoms = np.flatnonzero(degree >= 2)
    narrowest = np.lexsort((width, ring, src))[first[atoms]]
    # the three-fold turn (a multiple of 120 degrees) that puts the narrowest sector
    # nearest 180 degrees
    third = 2 * np.pi / 3
    turn[atoms] += np.round((middle[narrowest] - turn[atoms] - np.pi) / third) * third
    after = first[atoms] + (rank[narrowest] + 1) % degree[atoms]
    before = first[atoms] + (rank[narrowest] - 1) % degree[atoms]
    larger = ring[after] > ring[before]
    same = ring[after] == ring[before]
    mirror[atoms] = larger | (same & (width[after] > width[before] + 1e-9))
    return (turn + np.pi) % (2 * np.pi) - np.pi, mirror


def _sector_ring_sizes(n: int, src: np.ndarray, ahead: np.ndarray, behind: np.ndarray,
                       rings: pd.DataFrame, default: np.ndarray) -> np.ndarray:
    """Size of the ring in each sector (atom ``src`` between its bonds to ``behind``
    and ``ahead``), ``default`` where no ring has the three as consecutive members."""
    sizes, keys = [], []
    for members, size in zip(rings["members"], rings["size"], strict=True):
        m = np.asarray(members, np.int64)
        prev, nxt = np.roll(m, 1), np.roll(m, -1)
        keys.append((m * n + np.minimum(prev, nxt)) * n + np.maximum(prev, nxt))
        sizes.append(np.full(len(m), size))
    keys, sizes = np.concatenate(keys), np.concatenate(sizes)
    by_key = np.argsort(keys)
    keys, sizes = keys[by_key], sizes[by_key]
    wanted = (src * n + np.minimum(ahead, behind)) * n + np.maximum(ahead, behind)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, sizes[at], default)


def ring_counts(n_atoms: int, rings: pd.DataFrame, sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
                ) -> pd.DataFrame:
    """How many rings of each size every atom belongs to: columns ``n3..n8``."""
    counts = np.zeros((n_atoms, max(sizes) + 1), np.int64)
    if len(rings):
        members = np.concatenate([np.asarray(m, np.int64) for m in rings.members])
        size_of = np.repeat(rings["size"].to_numpy(), rings["size"].to_numpy())
        np.add.at(counts, (members, np.minimum(size_of, max(sizes))), 1)
    return pd.DataFrame({f"n{k}": counts[:, k] for k in sizes})


def ring_at_points(points: np.ndarray, positions: np.ndarray, rings: pd.DataFrame
                   ) -> np.ndarray:
    """The ring containing each point (a hollow site), or -1.

    Parameters
    ----------
    points : ndarray (P, 2)
        ``(y, x)`` in the unit of ``positions``.
    positions : ndarray (N, 2)
        Atom positions.
    rings : DataFrame
        From :func:`find_rings`.

    Returns
    -------
    ndarray (P,) of int
        Row number in ``rings`` of the ring whose polygon contains the point.
    """
    pts = _check_positions(points, "points")
    pos = _check_positions(positions)
    found = np.full(len(pts), -1, np.int64)
    if len(rings) == 0 or len(pts) == 0:
        return found
    centres = rings[["y", "x"]].to_numpy()
    # A point lies in a ring only if it is near that ring's centre: test the 4 nearest.
    k = min(4, len(rings))
    _, near = cKDTree(centres).query(pts, k=k)
    near = near.reshape(len(pts), k)
    size = rings["size"].to_numpy()
    width = int(size.max())
    poly = np.full((len(rings), width), -1, np.int64)
    for r, m in enumerate(rings.members):
        poly[r, :len(m)] = m
    for j in range(k - 1, -1, -1):
        cand = near[:, j]
        inside = _in_polygon(pts, pos, poly[cand], size[cand])
        found[inside] = cand[inside]
    return found


def _in_polygon(pts: np.ndarray, pos: np.ndarray, poly: np.ndarray, size: np.ndarray
                ) -> np.ndarray:
    """Even-odd rule, one polygon per point; ``poly`` rows padded with -1."""
    width = poly.shape[1]
    idx = np.where(poly >= 0, poly, poly[:, :1])
    nxt_col = (np.arange(width)[None] + 1) % size[:, None]
    a = pos[idx]
    b = pos[np.take_along_axis(idx, nxt_col, axis=1)]
    py, px = pts[:, None, 0], pts[:, None, 1]
    crosses = ((a[..., 0] > py) != (b[..., 0] > py)) & (
        px < (b[..., 1] - a[..., 1]) * (py - a[..., 0]) / (b[..., 0] - a[..., 0] + 1e-300)
        + a[..., 1])
    crosses &= np.arange(width)[None] < size[:, None]
    return crosses.sum(1) % 2 == 1


def ring_label(counts: np.ndarray) -> str:
    """Name of a structure from its ring counts: "6-6-6", "5-7-7", "6" (one 6-ring),
    "no ring", or "unphysical"."""
    counts = np.asarray(counts)
    if (counts < 0).any():
        return "unphysical"
    parts = [str(k) for k, c in zip(RING_SIZES, counts, strict=True) for _ in range(int(c))]
    return "-".join(parts) if parts else "no ring"


def structure_name(label: str, kind: str = "atom") -> str:
    """What a chemist calls a structure named by :func:`ring_label`.

    Parameters
    ----------
    label : str
        Ring sizes at the centre, e.g. "6-6-6", "5-6-7", "6", "no ring", "unphysical".
    kind : {"atom", "hollow"}
        "atom": the rings an atom belongs to (three inside a sheet, fewer at an edge);
        "hollow": the ring around a hollow site.

    Examples
    --------
    >>> structure_name("5-6-7")
    '5-7 pair (dislocation core, Stone-Wales)'
    >>> structure_name("5", "hollow")
    'pentagon'
    """
    if label == "unphysical":
        return "no lattice (blurred or empty image)"
    if label == "no ring":
        return "no ring (hole or amorphous carbon)"
    sizes = [int(k) for k in label.split("-")]
    if kind == "hollow":
        names = {5: "pentagon", 6: "hexagon (graphene)", 7: "heptagon", 8: "octagon"}
        return " + ".join(names.get(k, f"{k}-ring") for k in sizes)
    if len(sizes) < 3:
        return "edge of a hole"
    if len(sizes) > 3:
        return "4-fold site (e.g. Si in a divacancy)"
    if 8 in sizes:
        return "8-ring (divacancy, 5-8-5)"
    if 5 in sizes and 7 in sizes:
        return "5-7 pair (dislocation core, Stone-Wales)"
    if 5 in sizes:
        return "pentagon (reconstructed vacancy)"
    if 7 in sizes:
        return "heptagon"
    return "graphene lattice"
