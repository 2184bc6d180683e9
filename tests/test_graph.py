"""The bond graph: bonds by the distance rule, primitive rings as planar faces, ring
counts per atom, and the ring holding a hollow site."""

from __future__ import annotations

import numpy as np
import pytest

from latentpath.graph import (
    bond_frames,
    bond_window,
    estimate_bond_length,
    find_bonds,
    find_rings,
    ring_at_points,
    ring_counts,
    ring_label,
    structure_name,
)
from latentpath.synth.sheet import CC_BOND_A, graphene_sheet
from latentpath.synth.stem import synth_stem_movie


def _lattice(seed: int = 0, size_A: float = 30.0) -> np.ndarray:
    sheet = graphene_sheet((0, size_A, 0, size_A), angle_deg=17.0, ripple_amplitude_A=0.0,
                           rng=np.random.default_rng(seed))
    return sheet.pos[sheet.alive_indices()][:, ::-1]


def test_pristine_lattice_is_all_six_rings():
    pos = _lattice()
    assert estimate_bond_length(pos) == pytest.approx(CC_BOND_A, rel=0.01)
    bonds = find_bonds(pos)
    rings = find_rings(pos, bonds)
    assert set(rings["size"]) == {6}
    counts = ring_counts(len(pos), rings)
    centre = pos.mean(0)
    inner = np.linalg.norm(pos - centre, axis=1) < 8
    assert (counts.n6.to_numpy()[inner] == 3).all()
    # Centres of mass sit a bond length from each member.
    for m, y, x in zip(rings.members[:20], rings.y[:20], rings.x[:20], strict=True):
        d = np.linalg.norm(pos[list(m)] - [y, x], axis=1)
        assert np.allclose(d, CC_BOND_A, rtol=0.02)


def test_fused_pentagons_are_two_five_rings_not_an_eight_ring():
    # Pentalene: two regular pentagons sharing a vertical bond on x = 0.
    radius = CC_BOND_A / (2 * np.sin(np.pi / 5))
    theta = np.deg2rad(36 + 72 * np.arange(5))
    x = radius * np.cos(theta) - radius * np.cos(np.pi / 5)
    y = radius * np.sin(theta)
    left = np.stack([y, x], 1)
    right = left[[1, 2, 3]] * [1, -1]  # the three atoms not on the shared bond, mirrored
    pos = np.vstack([left, right])
    bonds = find_bonds(pos, bond_length=1.42)
    rings = find_rings(pos, bonds)
    assert sorted(rings["size"]) == [5, 5]
    assert len(bonds) == 9


def test_rings_equal_the_truth_ring_for_ring():
    sim = synth_stem_movie(3, 256, seed=1, final_disorder=0.4, si_fraction=0.03)
    field = 256 * sim.pixel_size_A
    assert (sim.atoms.species == "Si").any()
    for t in range(3):
        atoms = sim.atoms[sim.atoms.frame == t].reset_index(drop=True)
        pos, ids = atoms[["y_A", "x_A"]].to_numpy(), atoms.id.to_numpy()
        bonds = find_bonds(pos, atoms.species.to_numpy(), bond_length=CC_BOND_A)
        truth_bonds = sim.bonds[sim.bonds.frame == t]
        assert {frozenset(ids[b]) for b in bonds} == {
            frozenset(p) for p in zip(truth_bonds.id_a, truth_bonds.id_b, strict=True)}
        rings = find_rings(pos, bonds)
        rings = rings[rings.y.between(0, field) & rings.x.between(0, field)]
        truth = sim.rings[sim.rings.frame == t]
        assert sorted(tuple(sorted(ids[list(m)])) for m in rings.members) == sorted(
            tuple(sorted(map(int, m.split()))) for m in truth.members)
        # Ring counts of atoms whose rings are all in the list.
        counts = ring_counts(len(pos), find_rings(pos, bonds))
        inside = ((pos > 5) & (pos < field - 5)).all(1)
        for k in (5, 6, 7, 8):
            assert np.array_equal(counts[f"n{k}"].to_numpy()[inside],
                                  atoms[f"n{k}"].to_numpy()[inside])


def test_silicon_bonds_need_their_own_length():
    # A 4-fold Si with projected Si-C bonds of 1.9 A: too long for the C-C rule.
    pos = np.array([[0.0, 0.0], [1.9, 0.0], [-1.9, 0.0], [0.0, 1.9], [0.0, -1.9]])
    species = np.array(["Si", "C", "C", "C", "C"])
    assert len(find_bonds(pos, species, bond_length=1.42)) == 4
    assert len(find_bonds(pos, bond_length=1.42)) == 0


def test_hollow_sites_find_their_ring():
    pos = _lattice(size_A=20.0)
    rings = find_rings(pos, find_bonds(pos))
    centres = rings[["y", "x"]].to_numpy()
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.5, 0.5, centres.shape)
    assert np.array_equal(ring_at_points(centres + jitter, pos, rings), rings.ring.to_numpy())
    far = np.array([[-50.0, -50.0]])
    assert ring_at_points(far, pos, rings)[0] == -1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 2\)"):
        find_bonds(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        find_bonds(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="one name per atom"):
        find_bonds(np.zeros((3, 2)) + np.arange(3)[:, None], ["C"], bond_length=1.0)
    with pytest.raises(ValueError, match="at least 3 atoms"):
        estimate_bond_length(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="outside"):
        find_rings(np.zeros((3, 2)), np.array([[0, 5]]))
    assert len(find_bonds(np.zeros((1, 2)))) == 0
    assert len(find_rings(np.zeros((0, 2)), np.zeros((0, 2), int))) == 0


def _frame_angles_deg(pos: np.ndarray, bonds: np.ndarray, atom: int,
                      frames: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The directions of an atom's bonds in its bond frame, degrees, sorted."""
    turn, mirror = bond_frames(pos, bonds) if frames is None else frames
    others = np.concatenate([bonds[bonds[:, 0] == atom, 1], bonds[bonds[:, 1] == atom, 0]])
    d = pos[others] - pos[atom]
    theta = np.arctan2(d[:, 0], d[:, 1]) - turn[atom]
    return np.sort(np.degrees(-theta if mirror[atom] else theta) % 360)


def test_bond_frames_bring_both_sublattices_to_one_frame():
    pos = _lattice()
    bonds = find_bonds(pos)
    degree = np.bincount(bonds.ravel(), minlength=len(pos))
    inner = np.flatnonzero(degree == 3)
    assert len(inner) > 100
    frames = bond_frames(pos, bonds)
    for atom in inner[::7]:
        angles = _frame_angles_deg(pos, bonds, atom, frames)
        # 0 may come out as 359.99...
        assert np.allclose(np.sort((angles + 1) % 360 - 1), [0, 120, 240], atol=1e-6)


def test_bond_frames_make_turns_and_mirror_images_of_a_site_alike():
    """A 5-6-7-like site: bonds 108, 120 and 132 degrees apart. Every turn and its
    mirror image give the same bond directions in the frame: the narrowest angle
    centred on 180 degrees, the wider of its neighbours at 60."""
    star = np.radians([10.0, 118.0, 250.0])
    reference = None
    rng = np.random.default_rng(0)
    for turn in rng.uniform(0, 2 * np.pi, 6):
        for flip in (1, -1):
            angles = flip * star + turn
            pos = np.concatenate([[[0.0, 0.0]], np.stack([np.sin(angles), np.cos(angles)], 1)])
            bonds = np.array([[0, 1], [0, 2], [0, 3]])
            found = _frame_angles_deg(pos, bonds, 0)
            if reference is None:
                reference = found
            assert np.allclose(found, reference, atol=1e-6)
    sectors = np.diff(np.r_[reference, reference[0] + 360])
    middles = (reference + sectors / 2) % 360
    narrowest = np.argmin(sectors)
    assert middles[narrowest] == pytest.approx(180, abs=5)
    wider = max((narrowest + 1) % 3, (narrowest - 1) % 3, key=lambda k: sectors[k])
    assert middles[wider] == pytest.approx(60, abs=10)


def test_bond_frames_of_lone_and_singly_bonded_atoms():
    pos = np.array([[0.0, 0.0], [0.0, 1.4], [5.0, 5.0]])
    turn, mirror = bond_frames(pos, np.array([[0, 1]]))
    assert turn[2] == 0 and not mirror.any()
    # one bond: only the three-fold turn, which puts it on 0 degrees
    assert np.degrees(turn[0]) % 120 == pytest.approx(0, abs=1e-9)


def _ring_slots(pos, bonds, rings, frames):
    """Per atom in three rings: the ring sizes at about 180, 60 and 300 degrees of its
    bond frame (by the direction of each ring's centre)."""
    turn, mirror = frames
    slots = {}
    for members, size, y, x in zip(rings.members, rings["size"], rings.y, rings.x,
                                   strict=True):
        for atom in members:
            dy, dx = y - pos[atom, 0], x - pos[atom, 1]
            t = turn[atom]
            u = dx * np.cos(t) + dy * np.sin(t)
            v = (-1 if mirror[atom] else 1) * (-dx * np.sin(t) + dy * np.cos(t))
            slot = (round(np.degrees(np.arctan2(v, u)) % 360 / 120 - 0.5) % 3)
            slots.setdefault(atom, {})[(60, 180, 300)[slot]] = size
    return {a: s for a, s in slots.items() if len(s) == 3}


def test_bond_frames_put_the_smallest_ring_at_180_and_the_largest_at_60():
    sim = synth_stem_movie(2, 256, seed=2, initial_disorder=0.2, event_rate=3.0)
    atoms = sim.atoms[sim.atoms.frame == 1].reset_index(drop=True)
    pos = atoms[["y_A", "x_A"]].to_numpy()
    bonds = find_bonds(pos, atoms.species.to_numpy(), bond_length=CC_BOND_A)
    rings = find_rings(pos, bonds)
    by_rings = _ring_slots(pos, bonds, rings, bond_frames(pos, bonds, rings))
    by_angles = _ring_slots(pos, bonds, rings, bond_frames(pos, bonds))
    mixed = [a for a, s in by_rings.items() if len(set(s.values())) > 1]
    assert len(mixed) > 50
    standard = [s[180] == min(s.values()) and s[60] >= s[300] for s in
                (by_rings[a] for a in mixed)]
    assert np.mean(standard) == 1.0
    # the angles alone mistake some of them
    assert np.mean([by_angles[a][180] == min(by_angles[a].values()) and
                    by_angles[a][60] >= by_angles[a][300] for a in mixed]) < 0.95


def test_ring_label_names():
    assert ring_label([1, 0, 2, 0]) == "5-7-7"
    assert ring_label([0, 0, 0, 0]) == "no ring"
    assert ring_label([-1, -1, -1, -1]) == "unphysical"


def test_structures_are_named_as_a_chemist_would():
    named = {label: structure_name(label) for label in
             ("6-6-6", "5-6-7", "5-7-7", "5-6-6", "6-6-7", "5-6-8", "6-6", "5", "5-5-6-6",
              "no ring", "unphysical")}
    assert named["6-6-6"] == "graphene lattice"
    assert named["5-6-7"] == named["5-7-7"] == "5-7 pair (dislocation core, Stone-Wales)"
    assert named["5-6-6"].startswith("pentagon") and named["6-6-7"] == "heptagon"
    assert named["5-6-8"].startswith("8-ring") and named["5-5-6-6"].startswith("4-fold")
    assert named["6-6"] == named["5"] == "edge of a hole"
    assert named["no ring"].startswith("no ring") and named["unphysical"].startswith("no lattice")
    # around a hollow site the label is the one ring that holds it
    assert structure_name("6", "hollow") == "hexagon (graphene)"
    assert structure_name("7", "hollow") == "heptagon"


def test_the_bond_window_widens_with_the_scatter_of_the_found_atoms():
    pos = _lattice(seed=1, size_A=40.0)
    assert bond_window(pos, CC_BOND_A) == 1.2
    rng = np.random.default_rng(0)
    noisy = pos + rng.normal(0, 0.1, pos.shape)  # 0.14 A apart per bond, as at 2e4 e/A^2
    wide = bond_window(noisy, CC_BOND_A)
    assert 1.25 < wide < 1.45
    tight = find_bonds(noisy, bond_length=CC_BOND_A)
    loose = find_bonds(noisy, bond_length=CC_BOND_A, carbon_high=wide)
    lattice = find_bonds(pos, bond_length=CC_BOND_A)
    # the wider window keeps the lattice's bonds that the noise stretched, and adds none
    # that the lattice does not have
    as_set = {tuple(b) for b in lattice.tolist()}
    assert {tuple(b) for b in loose.tolist()} <= as_set
    assert len(loose) > len(tight)
    # pairs of other bond lengths (Si-C) keep the method's window
    species = np.array(["Si"] + ["C"] * (len(pos) - 1))
    si = find_bonds(noisy, species, bond_length=CC_BOND_A, carbon_high=wide)
    assert {tuple(b) for b in si.tolist() if 0 in b} == \
        {tuple(b) for b in find_bonds(noisy, species, bond_length=CC_BOND_A).tolist() if 0 in b}
