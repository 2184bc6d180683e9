"""A 2-D carbon sheet with explicit bonds: the atomic model behind synthetic STEM movies.

The sheet keeps its topology (who is bonded to whom) explicitly, so that the
rings of the ground truth are exact faces of a planar bond graph, not a guess made
from distances. Geometry follows the topology through a small valence force field
(bond springs plus angle springs, Keating-like) evaluated on 3-D bond vectors: the
out-of-plane height of a rippled sheet and of puckered 3-fold Si shortens the
projected bonds as it does in real images.

Coordinates are ``(x, y)`` in angstrom in the frame of the sheet; the movie maker
maps them to image pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from latentpath.graph import CC_BOND_A, is_ring, planar_faces

SI_C_BOND_3FOLD_A = 1.77
SI_C_BOND_4FOLD_A = 1.85
SI_PUCKER_3FOLD_A = 0.9
"""Height of a 3-fold Si above the sheet: it sits out of plane, the 4-fold one does not."""

REGION_LATTICE = 0
REGION_AMORPHOUS = 1

# Geometric limits an accepted structure must satisfy in projection. They keep the
# truth graph recoverable from positions alone: every C-C bond is shorter than
# 1.2 bond lengths and every non-bonded C-C pair clearly longer.
_CC_BOND_MIN_A = 1.15
_CC_BOND_MAX_A = 1.64
_SI_BOND_MAX_A = 2.05
_NONBONDED_MIN_A = 1.85
_NONBONDED_SI_MIN_A = 2.3


@dataclass
class Sheet:
    """Atoms of a sheet and their bonds.

    Attributes
    ----------
    pos : ndarray, shape (N, 2)
        In-plane positions ``(x, y)`` in angstrom (float64).
    species : ndarray, shape (N,)
        Atomic number per atom (6 for C, 14 for Si).
    ids : ndarray, shape (N,)
        Persistent atom ids; an atom keeps its id for the whole movie.
    region : ndarray, shape (N,)
        ``REGION_LATTICE`` or ``REGION_AMORPHOUS``.
    alive : ndarray, shape (N,)
        False for atoms removed from the sheet (slots are never reused, so that
        indices stay stable while events are applied).
    nbrs : list of set of int
        Bonded neighbours of each atom, by index.
    ripple : tuple of ndarray
        Plane waves ``(k (M, 2) per angstrom, amplitude (M,) angstrom, phase (M,))``
        of the sheet's out-of-plane height.
    """

    pos: np.ndarray
    species: np.ndarray
    ids: np.ndarray
    region: np.ndarray
    alive: np.ndarray
    nbrs: list[set[int]]
    ripple: tuple[np.ndarray, np.ndarray, np.ndarray]
    next_id: int = field(default=0)
    _journal: dict[int, set[int]] | None = field(default=None, repr=False)

    @property
    def n_slots(self) -> int:
        return len(self.pos)

    def alive_indices(self) -> np.ndarray:
        return np.flatnonzero(self.alive)

    def coordination(self, i: int) -> int:
        return len(self.nbrs[i])

    def _touch(self, i: int) -> None:
        if self._journal is not None and i not in self._journal:
            self._journal[i] = set(self.nbrs[i])

    def bond(self, i: int, j: int) -> None:
        self._touch(i)
        self._touch(j)
        self.nbrs[i].add(j)
        self.nbrs[j].add(i)

    def unbond(self, i: int, j: int) -> None:
        self._touch(i)
        self._touch(j)
        self.nbrs[i].discard(j)
        self.nbrs[j].discard(i)

    def remove(self, i: int) -> None:
        for j in list(self.nbrs[i]):
            self.unbond(i, j)
        self.alive[i] = False

    def add(self, xy: np.ndarray, species: int, region: int) -> int:
        """Append an atom with a new id; return its index."""
        self.pos = np.vstack([self.pos, np.asarray(xy, float)[None]])
        self.species = np.append(self.species, np.int8(species))
        self.ids = np.append(self.ids, self.next_id)
        self.region = np.append(self.region, np.int8(region))
        self.alive = np.append(self.alive, True)
        self.nbrs.append(set())
        self.next_id += 1
        return self.n_slots - 1

    def bonds(self) -> np.ndarray:
        """Bonds as index pairs ``(i, j)`` with ``i < j``, shape (B, 2)."""
        pairs = [(i, j) for i in self.alive_indices() for j in self.nbrs[i] if i < j]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def heights(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Out-of-plane height in angstrom: the ripple plus the pucker of 3-fold Si."""
        idx = np.arange(self.n_slots) if idx is None else idx
        k, amp, phase = self.ripple
        z = (amp * np.cos(self.pos[idx] @ k.T + phase)).sum(axis=1)
        coord = np.fromiter((len(self.nbrs[i]) for i in idx), int, len(idx))
        puckered = (self.species[idx] == 14) & (coord == 3)
        return z + SI_PUCKER_3FOLD_A * puckered

    def snapshot(self) -> tuple:
        """Start recording changes so that :meth:`restore` can undo them.

        Arrays are copied (cheap); neighbour sets are journaled as they change, since
        an event touches a handful of atoms among thousands.
        """
        self._journal = {}
        return (self.pos.copy(), self.species.copy(), self.ids.copy(), self.region.copy(),
                self.alive.copy(), self.next_id)

    def restore(self, snap: tuple) -> None:
        """Undo every change since :meth:`snapshot`."""
        (self.pos, self.species, self.ids, self.region, self.alive, self.next_id) = snap
        del self.nbrs[len(self.pos):]
        for i, old in (self._journal or {}).items():
            if i < len(self.nbrs):
                self.nbrs[i] = old
        self._journal = None

    def commit(self) -> None:
        """Keep the changes since :meth:`snapshot`."""
        self._journal = None


def graphene_sheet(
    extent_A: tuple[float, float, float, float],
    *,
    angle_deg: float,
    ripple_amplitude_A: float,
    rng: np.random.Generator,
) -> Sheet:
    """Pristine graphene covering a rectangle, at any orientation.

    Parameters
    ----------
    extent_A : (x0, x1, y0, y1)
        Rectangle to cover, angstrom.
    angle_deg : float
        Rotation of the lattice (zigzag direction against +x), degrees.
    ripple_amplitude_A : float
        RMS out-of-plane height of the ripples, angstrom.
    rng : numpy.random.Generator
    """
    x0, x1, y0, y1 = extent_A
    a = CC_BOND_A * np.sqrt(3.0)
    a1 = np.array([a, 0.0])
    a2 = np.array([a / 2, a * np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], [a / 2, a / (2 * np.sqrt(3))]])
    theta = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    half = 0.5 * np.hypot(x1 - x0, y1 - y0) + 2 * a
    n = int(np.ceil(half / a * 1.2)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    pts = (cells[:, None, :] + basis[None]).reshape(-1, 2) @ rot.T + centre
    keep = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    pts = pts[keep]
    nbrs: list[set[int]] = [set() for _ in range(len(pts))]
    for p, q in cKDTree(pts).query_pairs(CC_BOND_A * 1.1):
        nbrs[p].add(q)
        nbrs[q].add(p)
    n_waves = 4
    wavelength = rng.uniform(18.0, 45.0, n_waves)
    direction = rng.uniform(0, np.pi, n_waves)
    k = (2 * np.pi / wavelength)[:, None] * np.stack([np.cos(direction), np.sin(direction)], 1)
    amp = np.full(n_waves, ripple_amplitude_A * np.sqrt(2.0 / n_waves))
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    count = len(pts)
    return Sheet(
        pos=pts, species=np.full(count, 6, np.int8), ids=np.arange(count, dtype=np.int64),
        region=np.zeros(count, np.int8), alive=np.ones(count, bool), nbrs=nbrs,
        ripple=(k, amp, phase), next_id=count,
    )


def _rest_length(species_a: np.ndarray, species_b: np.ndarray, si_coord: np.ndarray) -> np.ndarray:
    has_si = (species_a == 14) | (species_b == 14)
    si_len = np.where(si_coord >= 4, SI_C_BOND_4FOLD_A, SI_C_BOND_3FOLD_A)
    return np.where(has_si, si_len, CC_BOND_A)


def relax(sheet: Sheet, active: np.ndarray, *, n_iter: int = 80, step: float = 0.12) -> None:
    """Move the ``active`` atoms to a minimum of the valence force field.

    The energy is ``sum k_b (|r_ij| - l_ij)^2 + sum k_a (|r_jk| - 2 l sin(theta/2))^2`` over
    bonds and over pairs of neighbours of a common atom (an angle spring towards 120
    degrees, 90 for 4-fold Si), with ``r`` the 3-D vectors between atoms on the rippled
    sheet. Atoms outside ``active`` stay fixed and act as the boundary.

    Parameters
    ----------
    sheet : Sheet
        Modified in place.
    active : ndarray of int
        Indices of the atoms that may move.
    n_iter : int
        Iterations of damped gradient descent.
    step : float
        Step length per unit force, angstrom^2 per energy unit.
    """
    active = np.unique(np.asarray(active, dtype=np.int64))
    active = active[sheet.alive[active]]
    if len(active) == 0:
        return
    is_active = np.zeros(sheet.n_slots, bool)
    is_active[active] = True
    bond_pairs = {(min(i, j), max(i, j)) for i in active for j in sheet.nbrs[i]}
    centres = set(active.tolist())
    for i in active:
        centres.update(sheet.nbrs[i])
    angle_pairs, angle_len = [], []
    for c in centres:
        nb = sorted(sheet.nbrs[c])
        if len(nb) < 2:
            continue
        is_si4 = sheet.species[c] == 14 and len(nb) >= 4
        theta = np.pi / 2 if is_si4 else 2 * np.pi / 3
        for u in range(len(nb)):
            for v in range(u + 1, len(nb)):
                p, q = nb[u], nb[v]
                if not (is_active[p] or is_active[q]):
                    continue
                # In 4-fold Si the opposite neighbours are 180 degrees apart: only the
                # closest pairs get a 90-degree spring.
                if is_si4 and _opposite(sheet, c, p, q):
                    continue
                angle_pairs.append((p, q, c))
                angle_len.append(theta)
    bp = np.array(sorted(bond_pairs), dtype=np.int64).reshape(-1, 2)
    coord = np.array([len(s) for s in sheet.nbrs])
    si_coord = np.maximum(coord[bp[:, 0]] * (sheet.species[bp[:, 0]] == 14),
                          coord[bp[:, 1]] * (sheet.species[bp[:, 1]] == 14))
    bond_rest = _rest_length(sheet.species[bp[:, 0]], sheet.species[bp[:, 1]], si_coord)
    ap = np.array(angle_pairs, dtype=np.int64).reshape(-1, 3)
    if len(ap):
        arm = np.where(
            (sheet.species[ap[:, 2]] == 14),
            np.where(coord[ap[:, 2]] >= 4, SI_C_BOND_4FOLD_A, SI_C_BOND_3FOLD_A), CC_BOND_A)
        angle_rest = 2 * arm * np.sin(np.asarray(angle_len) / 2)
    else:
        angle_rest = np.zeros(0)
    pairs = np.concatenate([bp, ap[:, :2]])
    rest = np.concatenate([bond_rest, angle_rest])
    stiff = np.concatenate([np.ones(len(bp)), np.full(len(ap), 0.25)])
    touched = np.unique(pairs)
    local = np.full(sheet.n_slots, -1)
    local[touched] = np.arange(len(touched))
    li, lj = local[pairs[:, 0]], local[pairs[:, 1]]
    xy = sheet.pos[touched].copy()
    movable = is_active[touched][:, None]
    z = sheet.heights(touched)
    dz = z[lj] - z[li]
    velocity = np.zeros_like(xy)
    for _ in range(n_iter):
        d = xy[lj] - xy[li]
        r = np.sqrt((d**2).sum(1) + dz**2)
        f = (2 * stiff * (r - rest) / np.maximum(r, 1e-6))[:, None] * d
        grad = np.zeros_like(xy)
        for axis in range(2):
            grad[:, axis] = (np.bincount(li, -f[:, axis], len(xy))
                             + np.bincount(lj, f[:, axis], len(xy)))
        velocity = 0.5 * velocity - step * grad
        xy += velocity * movable
    sheet.pos[touched] = np.where(movable, xy, sheet.pos[touched])


def _opposite(sheet: Sheet, c: int, p: int, q: int) -> bool:
    u = sheet.pos[p] - sheet.pos[c]
    v = sheet.pos[q] - sheet.pos[c]
    return float(u @ v) < -0.5 * np.linalg.norm(u) * np.linalg.norm(v)


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Whether segments p1-p2 and q1-q2 properly intersect, vectorised over rows."""

    def orient(a, b, c):
        return np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                       - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    return ((orient(p1, p2, q1) * orient(p1, p2, q2) < 0)
            & (orient(q1, q2, p1) * orient(q1, q2, p2) < 0))


def topology_ok(sheet: Sheet, around: Iterable[int]) -> bool:
    """No atom near ``around`` over-coordinated (C at most 3, Si at most 4), and no
    ring of three or four atoms (they do not occur in these sheets)."""
    region = set()
    for i in around:
        if sheet.alive[i]:
            region.add(int(i))
            region.update(sheet.nbrs[i])
    for i in region:
        nb = sheet.nbrs[i]
        if len(nb) > (4 if sheet.species[i] == 14 else 3):
            return False
        for p in nb:
            if nb & sheet.nbrs[p] or any(len(sheet.nbrs[p] & sheet.nbrs[q] - {i}) > 0
                                         for q in nb if q != p):
                return False
    return True


def is_valid(sheet: Sheet, around: np.ndarray) -> bool:
    """Check the structure near the atoms ``around`` in projection.

    Valid means: no atom over-coordinated (C at most 3, Si at most 4), no ring of
    three or four atoms, every bond of plausible length, no two non-bonded atoms
    closer than a bond could be, and no two bonds crossing. These rules keep bonds
    recoverable from positions and the bond graph planar, so that its faces are the
    rings.
    """
    around = np.asarray(around, dtype=np.int64)
    around = around[sheet.alive[around]]
    if len(around) == 0:
        return True
    if not topology_ok(sheet, around):
        return False
    region = set(around.tolist())
    for i in around:
        region.update(sheet.nbrs[i])
    region_idx = np.array(sorted(region))
    # Only atoms within reach of the region can violate a distance or cross a bond.
    reach = 2 * _SI_BOND_MAX_A
    lo = sheet.pos[region_idx].min(0) - reach
    hi = sheet.pos[region_idx].max(0) + reach
    alive = sheet.alive_indices()
    box = alive[((sheet.pos[alive] >= lo) & (sheet.pos[alive] <= hi)).all(1)]
    local = np.full(sheet.n_slots, -1)
    local[box] = np.arange(len(box))
    bonded = np.zeros((len(box), len(box)), bool)
    box_bonds = [(i, j) for i in box for j in sheet.nbrs[i] if i < j and local[j] >= 0]
    bb = np.array(box_bonds, dtype=np.int64).reshape(-1, 2)
    bonded[local[bb[:, 0]], local[bb[:, 1]]] = True
    bonded |= bonded.T
    ri = local[region_idx]
    d = np.linalg.norm(sheet.pos[region_idx][:, None] - sheet.pos[box][None], axis=2)
    si = sheet.species[box] == 14
    has_si = si[ri][:, None] | si[None, :]
    is_bond = bonded[ri]
    bond_max = np.where(has_si, _SI_BOND_MAX_A, _CC_BOND_MAX_A)
    if (is_bond & ((d < _CC_BOND_MIN_A) | (d > bond_max))).any():
        return False
    nonbond_min = np.where(has_si, _NONBONDED_SI_MIN_A, _NONBONDED_MIN_A)
    not_self = box[None, :] != region_idx[:, None]
    if (~is_bond & not_self & (d < nonbond_min)).any():
        return False
    # Crossing test: bonds touching the region against every bond in the box.
    in_region = np.zeros(sheet.n_slots, bool)
    in_region[region_idx] = True
    mine = bb[in_region[bb[:, 0]] | in_region[bb[:, 1]]]
    a = np.repeat(mine, len(bb), axis=0)
    b = np.tile(bb, (len(mine), 1))
    distinct = ((a[:, :1] != b) & (a[:, 1:] != b)).all(1)
    a, b = a[distinct], b[distinct]
    p = sheet.pos
    return not _segments_cross(p[a[:, 0]], p[a[:, 1]], p[b[:, 0]], p[b[:, 1]]).any()


@dataclass
class Faces:
    """Faces of the planar bond graph.

    Attributes
    ----------
    members : list of ndarray
        Atom indices around each face, in boundary order.
    simple : ndarray of bool
        The boundary visits each atom once (no dangling bond inside the face).
    area_A2 : ndarray
        Signed area, angstrom^2; bounded faces are positive.
    """

    members: list[np.ndarray]
    simple: np.ndarray
    area_A2: np.ndarray

    def rings(self, max_size: int = 8) -> list[np.ndarray]:
        """Faces that are rings: simple, bounded, at most ``max_size`` members."""
        sizes = np.array([len(m) for m in self.members])
        ring = is_ring(self.simple, self.area_A2, sizes, max_size)
        return [m for m, keep in zip(self.members, ring, strict=True) if keep]


def faces(sheet: Sheet, max_size: int = 12) -> Faces:
    """Trace every face of the bond graph in its planar embedding.

    Faces of up to ``max_size`` atoms list them in boundary order; longer ones (hole
    and sheet boundaries) list their atoms unordered and are never simple.
    """
    traced = planar_faces(sheet.pos[:, ::-1], sheet.bonds(), max_size=max_size)
    members = [row[:n] for row, n in zip(traced.walk, traced.size, strict=True)]
    for f in np.flatnonzero(traced.size > max_size):
        members[f] = np.unique(traced.edge_atom[traced.edge_face == f])
    return Faces(members, traced.simple, traced.area)
