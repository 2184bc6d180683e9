"""Structural events on a :class:`~latentpath.synth.sheet.Sheet`, as the beam drives them.

Every event is a change of topology (bonds made and broken, atoms removed or added)
followed by a local relaxation and a validity check; an event whose result is not a
plausible planar structure is undone, so the sheet is always a valid truth.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from latentpath.synth.sheet import (
    CC_BOND_A,
    REGION_AMORPHOUS,
    Sheet,
    is_valid,
    relax,
    topology_ok,
)

_HEAL_RADIUS_A = 2.75
_RELAX_RADIUS_A = 4.5


def attempt(sheet: Sheet, change: Callable[[Sheet], list[int] | None]) -> list[int] | None:
    """Apply ``change``, relax around it and keep it only if the result is valid.

    Parameters
    ----------
    sheet : Sheet
        Modified in place when the event is accepted.
    change : callable
        Changes the topology and returns the indices of the atoms it touched, or None
        when it does not apply.

    Returns
    -------
    list of int or None
        The touched atoms, or None when the event was rejected (sheet unchanged).
    """
    snap = sheet.snapshot()
    touched = change(sheet)
    # The topology is checked before the (costlier) relaxation.
    if not touched or not topology_ok(sheet, touched):
        sheet.restore(snap)
        return None
    alive = sheet.alive_indices()
    centres = sheet.pos[np.asarray(touched)]
    hits = cKDTree(sheet.pos[alive]).query_ball_point(centres, r=_RELAX_RADIUS_A)
    active = np.unique(np.concatenate([alive[h] for h in hits] + [np.zeros(0, np.int64)]))
    relax(sheet, active)
    if not is_valid(sheet, active):
        sheet.restore(snap)
        return None
    sheet.commit()
    return touched


def _within_hops(sheet: Sheet, i: int, j: int, hops: int) -> bool:
    frontier, seen = {i}, {i}
    for _ in range(hops):
        frontier = {n for f in frontier for n in sheet.nbrs[f]} - seen
        if j in frontier:
            return True
        seen |= frontier
    return False


def _max_coord(sheet: Sheet, i: int) -> int:
    return 4 if sheet.species[i] == 14 else 3


def heal(sheet: Sheet, candidates: list[int]) -> list[int]:
    """Bond under-coordinated atoms to each other, closest pairs first.

    This is how vacancies reconstruct: one of the three dangling atoms of a single
    vacancy pairs up (5-9), the four of a double vacancy pair up twice (5-8-5). A bond
    is made only where it closes a ring of at least five atoms.

    Returns
    -------
    list of int
        Atoms that got a new bond.
    """
    dangling = [i for i in set(candidates)
                if sheet.alive[i] and 0 < sheet.coordination(i) < _max_coord(sheet, i)]
    pairs = []
    for a_pos, a in enumerate(dangling):
        for b in dangling[a_pos + 1:]:
            d = float(np.linalg.norm(sheet.pos[a] - sheet.pos[b]))
            if d < _HEAL_RADIUS_A and b not in sheet.nbrs[a]:
                pairs.append((d, a, b))
    bonded = []
    for _, a, b in sorted(pairs):
        if (sheet.coordination(a) < _max_coord(sheet, a)
                and sheet.coordination(b) < _max_coord(sheet, b)
                and sheet.species[a] + sheet.species[b] < 28
                and not _within_hops(sheet, a, b, 3)):
            sheet.bond(a, b)
            bonded += [a, b]
    return bonded


def stone_wales(i: int, j: int) -> Callable[[Sheet], list[int] | None]:
    """Rotate the bond i-j by 90 degrees: four hexagons become 5-5-7-7 (or back).

    With ``a1, b1`` on one side of the bond and ``a2, b2`` on the other, the bonds
    a-a1 and b-b2 become b-a1 and a-b2: the faces on the bond lose an atom each and
    the faces at its ends gain one.
    """

    def change(sheet: Sheet) -> list[int] | None:
        if j not in sheet.nbrs[i] or sheet.coordination(i) != 3 or sheet.coordination(j) != 3:
            return None
        a, b = i, j
        pa, pb = sheet.pos[a], sheet.pos[b]
        axis = pb - pa

        def side(k: int) -> float:
            v = sheet.pos[k] - pa
            return float(axis[0] * v[1] - axis[1] * v[0])

        a_others = sorted(sheet.nbrs[a] - {b}, key=side)
        b_others = sorted(sheet.nbrs[b] - {a}, key=side)
        (a2, a1), (b2, b1) = a_others, b_others
        if side(a1) * side(a2) >= 0 or side(b1) * side(b2) >= 0:
            return None
        sheet.unbond(a, a1)
        sheet.unbond(b, b2)
        sheet.bond(b, a1)
        sheet.bond(a, b2)
        mid = (pa + pb) / 2
        normal = np.array([-axis[1], axis[0]]) / np.linalg.norm(axis)
        half = 0.5 * np.linalg.norm(axis)
        # a now binds the side of a2, b2 (negative side); b the side of a1, b1.
        sheet.pos[a] = mid - normal * half
        sheet.pos[b] = mid + normal * half
        return [a, b, a1, a2, b1, b2]

    return change


def remove_atoms(indices: list[int]) -> Callable[[Sheet], list[int] | None]:
    """Knock out atoms (single or double vacancy) and let the dangling bonds heal."""

    def change(sheet: Sheet) -> list[int] | None:
        if not all(sheet.alive[i] for i in indices):
            return None
        around = sorted({n for i in indices for n in sheet.nbrs[i]} - set(indices))
        for i in indices:
            sheet.remove(i)
        heal(sheet, around)
        return around

    return change


def swap_sites(i: int, j: int) -> Callable[[Sheet], list[int] | None]:
    """Exchange two bonded atoms (a Si hop: Si and a neighbouring C trade places)."""

    def change(sheet: Sheet) -> list[int] | None:
        if j not in sheet.nbrs[i] or sheet.species[i] == sheet.species[j]:
            return None
        for arr in (sheet.species, sheet.ids):
            arr[i], arr[j] = arr[j], arr[i]
        return [i, j]

    return change


def si_to_fourfold(si: int, carbon: int) -> Callable[[Sheet], list[int] | None]:
    """A 3-fold Si loses the C neighbour ``carbon`` and binds that atom's two neighbours."""

    def change(sheet: Sheet) -> list[int] | None:
        if (sheet.species[si] != 14 or sheet.coordination(si) != 3
                or carbon not in sheet.nbrs[si] or sheet.coordination(carbon) != 3):
            return None
        others = sorted(sheet.nbrs[carbon] - {si})
        sheet.remove(carbon)
        for o in others:
            sheet.bond(si, o)
        sheet.pos[si] = 0.5 * sheet.pos[si] + 0.5 * sheet.pos[carbon]
        return [si, *others, *sheet.nbrs[si]]

    return change


def _hops_avoiding(sheet: Sheet, a: int, b: int, avoid: int, max_hops: int = 8) -> int:
    """Shortest path length from a to b not passing through ``avoid`` (large if none)."""
    frontier, seen = {a}, {a, avoid}
    for hops in range(1, max_hops + 1):
        frontier = {n for f in frontier for n in sheet.nbrs[f]} - seen
        if b in frontier:
            return hops
        seen |= frontier
    return max_hops + 1


def si_to_threefold(si: int) -> Callable[[Sheet], list[int] | None]:
    """A 4-fold Si takes up a carbon adatom between two of its neighbours.

    The adatom goes between the neighbours ``d1, d2`` whose flanking rings are the
    smallest: those rings each gain the new atom, so the two pentagons of a 4-fold Si
    in a divacancy become hexagons again.
    """

    def change(sheet: Sheet) -> list[int] | None:
        if sheet.species[si] != 14 or sheet.coordination(si) != 4:
            return None
        nb = sorted(sheet.nbrs[si])
        vec = sheet.pos[nb] - sheet.pos[si]
        order = [nb[k] for k in np.argsort(np.arctan2(vec[:, 1], vec[:, 0]))]
        # Size of the ring between consecutive neighbours k and k+1.
        ring = [_hops_avoiding(sheet, order[k], order[(k + 1) % 4], si) + 2 for k in range(4)]
        k = int(np.argmin([ring[(k - 1) % 4] + ring[(k + 1) % 4] for k in range(4)]))
        d1, d2 = order[k], order[(k + 1) % 4]
        mid_dir = sheet.pos[d1] + sheet.pos[d2] - 2 * sheet.pos[si]
        mid_dir /= np.linalg.norm(mid_dir)
        c = sheet.add(sheet.pos[si] + mid_dir * CC_BOND_A, 6, sheet.region[si])
        sheet.pos[si] = sheet.pos[si] - mid_dir * 0.6
        sheet.unbond(si, d1)
        sheet.unbond(si, d2)
        for n in (si, d1, d2):
            sheet.bond(c, n)
        return [si, c, d1, d2]

    return change


def vacancy_hop(dangling: int) -> Callable[[Sheet], list[int] | None]:
    """A 2-fold atom next to a vacancy jumps into it; the vacancy moves one site."""

    def change(sheet: Sheet) -> list[int] | None:
        if sheet.coordination(dangling) != 2 or sheet.species[dangling] != 6:
            return None
        old = sorted(sheet.nbrs[dangling])
        out = 2 * sheet.pos[dangling] - sheet.pos[old].sum(0)
        norm = np.linalg.norm(out)
        if norm < 1e-6:
            return None
        site = sheet.pos[dangling] + out / norm * CC_BOND_A
        alive = sheet.alive_indices()
        near = [int(alive[h]) for h in cKDTree(sheet.pos[alive]).query_ball_point(site, 1.9)]
        near = [k for k in near if k != dangling]
        if not near:
            return None
        for k in near:
            for m in list(sheet.nbrs[k]):
                if m in near:
                    sheet.unbond(k, m)
        for o in old:
            sheet.unbond(dangling, o)
        sheet.pos[dangling] = site
        for k in near:
            if sheet.coordination(k) < _max_coord(sheet, k):
                sheet.bond(dangling, k)
        heal(sheet, old + near)
        return [dangling, *old, *near]

    return change


def amorphize_bond(i: int, j: int) -> Callable[[Sheet], list[int] | None]:
    """A Stone-Wales rotation whose atoms join the amorphous region."""
    rotate = stone_wales(i, j)

    def change(sheet: Sheet) -> list[int] | None:
        touched = rotate(sheet)
        if touched:
            sheet.region[touched] = REGION_AMORPHOUS
        return touched

    return change


def erode_edge(sheet: Sheet, edge: set[int], rng: np.random.Generator,
               keep_dangling: float = 0.15) -> list[int]:
    """Sputter one atom from a hole edge, least-bound atoms first.

    Atoms left with no bond are removed too, and atoms left with one bond are removed
    unless kept as dangling atoms with probability ``keep_dangling``. Sputtering the
    least-bound atoms first is what leaves real holes faceted with zigzag and
    armchair edges.

    Returns
    -------
    list of int
        Atoms removed (indices); ``edge`` is updated in place.
    """
    cand = np.array([e for e in edge if sheet.alive[e]], dtype=np.int64)
    if len(cand) == 0:
        return []
    coord = np.array([sheet.coordination(e) for e in cand])
    weight = np.choose(np.clip(coord, 0, 3), [50.0, 20.0, 3.0, 0.2])
    weight = weight * np.where(sheet.species[cand] == 14, 0.3, 1.0)
    pick = int(rng.choice(cand, p=weight / weight.sum()))
    removed, queue = [], [pick]
    while queue:
        k = queue.pop()
        if not sheet.alive[k]:
            continue
        nbrs = list(sheet.nbrs[k])
        sheet.remove(k)
        edge.discard(k)
        removed.append(k)
        for n in nbrs:
            edge.add(n)
            c = sheet.coordination(n)
            if c == 0 or (c == 1 and rng.random() > keep_dangling):
                queue.append(n)
    return removed
