"""Atom finding on what users bring: small fields padded, a pixel size estimated from the
atoms and questioned, quality measures without truth, atoms outside the model's classes
and images outside its domain."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentpath.atoms import find_atoms, load_model
from latentpath.atoms.find import (
    MIN_FIELD_A,
    MIN_FRAME_A,
    describe_found,
    movie_pixel_size,
    pad_field,
)
from latentpath.atoms.locate import faint_atoms
from latentpath.atoms.model import SHIPPED_MODEL_DIR
from latentpath.atoms.quality import (
    MIN_LATTICE_ATOMS,
    bond_spacing,
    domain_problems,
    frame_quality,
    sublattice_contrast,
    unusual_frames,
)
from latentpath.atoms.species import HEAVY, label_heavy
from latentpath.evaluate import score_atoms
from latentpath.synth import synth_stem_movie

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import real_crops  # the shared real images' crops, with their Si checked by eye

shipped = pytest.mark.skipif(not (SHIPPED_MODEL_DIR / "config.json").is_file(),
                             reason="shipped weights not present")
real = pytest.mark.skipif(not real_crops.REAL.is_dir(),
                          reason=f"shared real images not found at {real_crops.REAL}")


def _sheet(n: int = 10, bond_A: float = 1.42, two_elements: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """A honeycomb's atoms (row, column) in angstrom, and their brightness."""
    a = bond_A * np.sqrt(3)
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    cells = np.column_stack([(a * (i + j / 2)).ravel(), (1.5 * bond_A * j).ravel()])
    xy = np.vstack([cells, cells + np.array([a / 2, bond_A / 2])])
    rng = np.random.default_rng(0)
    height = 1 + 0.1 * rng.standard_normal(len(xy))
    if two_elements:
        height[len(cells):] += 1.5
    return np.column_stack([xy[:, 1], xy[:, 0]]), height


@pytest.fixture(scope="module")
def movie():
    return synth_stem_movie(6, 192, seed=4321, final_disorder=0.3)


def test_bond_spacing_reads_a_honeycomb_and_not_noise():
    pos, _ = _sheet()
    bond, share = bond_spacing(pos[:, 0] / 0.1, pos[:, 1] / 0.1)
    assert bond * 0.1 == pytest.approx(1.42, rel=1e-6) and share == 1.0
    scatter = np.random.default_rng(1).uniform(0, 200, (300, 2))
    assert bond_spacing(scatter[:, 0], scatter[:, 1])[1] < 0.5
    assert np.isnan(bond_spacing(np.zeros(2), np.zeros(2))[0])


def test_sublattice_contrast_tells_two_elements_from_one():
    pos, height = _sheet()
    assert sublattice_contrast(pos[:, 0], pos[:, 1], height, 1.42) > -0.3
    pos, height = _sheet(two_elements=True)
    assert sublattice_contrast(pos[:, 0], pos[:, 1], height, 1.42) < -0.6


def test_heavy_atoms_are_named_and_si_is_not():
    atoms = pd.DataFrame({"frame": [0] * 10 + [1] * 3,
                          "species": ["C"] * 7 + ["Si", "C", "Si"] + ["C", "C", "Si"],
                          "intensity": [1.0] * 7 + [9.0, 40.0, np.nan] + [1.0, 50.0, 2.0]})
    named = label_heavy(atoms).species.tolist()
    assert named[7:10] == ["Si", HEAVY, "Si"]
    assert named[10:] == ["C", "C", "Si"]  # three atoms: no reference to judge by
    with pytest.raises(ValueError, match="ratio"):
        label_heavy(atoms, ratio=0.5)


def test_frame_quality_counts_doubles_isolated_and_empty():
    pos, height = _sheet(n=12)
    px = 0.1
    y, x = pos[:, 0] / px + 20, pos[:, 1] / px + 20
    clean = pd.DataFrame({"frame": 0, "y": y, "x": x, "species": "C", "intensity": height})
    doubled = pd.DataFrame({"frame": 1, "y": y + 3.0, "x": x, "species": "C",
                            "intensity": height})
    lonely = pd.DataFrame({"frame": 2, "y": [5.0, 260.0], "x": [5.0, 260.0],
                           "species": "C", "intensity": 1.0})
    table = pd.concat([clean, pd.concat([clean, doubled]).assign(frame=1), lonely])
    q = frame_quality(table, (300, 300), px, n_frames=4)
    assert list(q.frame) == [0, 1, 2, 3] and q.atoms.tolist()[3] == 0
    assert q.doubles[0] == 0 and q.doubles[1] == 1.0
    assert q.isolated[2] == 1.0 and q.isolated[0] == 0
    assert q.bond_A[0] == pytest.approx(1.42, rel=1e-6)
    assert q.empty_area[2] > 0.9 and q.empty_area[3] == 1.0 and q.empty_area[0] < q.empty_area[2]


def test_unusual_frames_are_named_with_the_measure():
    q = pd.DataFrame({"frame": range(8), "doubles": [0.01, 0.012, 0.011, 0.009, 0.01,
                                                     0.01, 0.3, 0.011],
                      "empty_area": [0.1] * 8})
    notes = unusual_frames(q)
    assert len(notes) == 1 and notes[0].startswith("frame 6: doubles 0.3")
    assert unusual_frames(q.head(4)) == []


def test_domain_problems_say_why():
    pos, height = _sheet(two_elements=True)
    atoms = pd.DataFrame({"frame": 0, "y": pos[:, 0] / 0.1, "x": pos[:, 1] / 0.1,
                          "species": ["C"] * len(pos), "intensity": height})
    q = frame_quality(atoms, (400, 400), 0.1)
    assert any("two elements" in p for p in domain_problems(atoms, q, pixel_size_known=True))
    wide = atoms.assign(y=atoms.y * 1.3, x=atoms.x * 1.3, intensity=1.0)
    q = frame_quality(wide, (500, 500), 0.1)
    said = domain_problems(wide, q, pixel_size_known=True)
    assert any("not graphene's" in p for p in said)
    assert not any("not graphene's" in p
                   for p in domain_problems(wide, q, pixel_size_known=False))


def test_scattered_atoms_are_no_lattice_but_a_few_are_not_judged():
    rng = np.random.default_rng(5)
    scattered = pd.DataFrame({"frame": 0, "y": rng.uniform(0, 300, 60),
                              "x": rng.uniform(0, 300, 60), "species": "C",
                              "intensity": 1.0})
    q = frame_quality(scattered, (300, 300), 0.1)
    assert any("no honeycomb" in p
               for p in domain_problems(scattered, q, pixel_size_known=False))
    few = scattered.head(4)
    q = frame_quality(few, (300, 300), 0.1)
    assert not any("no honeycomb" in p for p in domain_problems(few, q, pixel_size_known=False))


def test_pad_field_reflects_small_frames_only():
    frames = np.arange(2 * 50 * 80, dtype=np.float32).reshape(2, 50, 80)
    padded, (top, left) = pad_field(frames, 0.1)
    need = int(np.ceil(MIN_FRAME_A / 0.1))
    assert padded.shape == (2, need, need)
    assert np.array_equal(padded[:, top:top + 50, left:left + 80], frames)
    same, offset = pad_field(frames, 0.5)
    assert same is frames and offset == (0, 0)


@shipped
def test_small_fields_are_padded_and_tiny_ones_refused(movie):
    whole = find_atoms(movie.movie[:1], pixel_size_A=0.1, device="cpu")
    crop = movie.movie[:1, 40:120, 50:130]  # 8 A across
    found = find_atoms(crop, pixel_size_A=0.1, device="cpu")
    assert found.attrs["padded_to_px"] == [120, 120]
    assert found.y.between(0, 79).all() and found.x.between(0, 79).all()
    inner = whole[whole.y.between(52, 108) & whole.x.between(62, 118)]
    near = [np.hypot(found.y + 40 - r.y, found.x + 50 - r.x).min() for r in inner.itertuples()]
    assert np.mean(np.array(near) < 5) >= 0.95
    _, probs = find_atoms(crop, pixel_size_A=0.1, device="cpu", return_probabilities=True)
    assert probs.shape[2:] == (40, 40)  # the crop's field at the model's 0.2 A/px
    with pytest.raises(ValueError, match=f"less than {MIN_FIELD_A} A"):
        find_atoms(movie.movie[:1, :50, :50], pixel_size_A=0.1, device="cpu")


@shipped
def test_pixel_size_from_lattice_and_atoms(movie):
    size = movie_pixel_size(movie.movie[:2], None, model=load_model(), device="cpu")
    assert size.source == "lattice" and size.confidence == "high"
    assert size.pixel_size_A == pytest.approx(0.1, rel=0.03)
    assert size.atoms_A == size.pixel_size_A and size.bonded > 0.8
    with pytest.warns(UserWarning, match=r"disagrees by .*0\.1"):
        given = movie_pixel_size(movie.movie[:2], 0.5, device="cpu")
    assert given.confidence == "given" and given.lattice_A == pytest.approx(0.1, rel=0.08)


@shipped
def test_no_lattice_asks_for_the_pixel_size():
    noise = np.random.default_rng(2).poisson(20.0, (1, 200, 200)).astype(np.float32)
    with pytest.raises(ValueError, match="--pixel-size"):
        find_atoms(noise, device="cpu")


@shipped
def test_quality_and_heavy_atoms_in_a_found_table(movie):
    frames = movie.movie[:3].copy()
    yy, xx = np.mgrid[:192, :192]
    c_peak = np.percentile(frames[0], 99.5) - np.median(frames[0])
    for y, x in [(60.0, 70.0), (130.0, 120.0)]:
        frames[1] += 40 * c_peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 4.5**2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = find_atoms(frames, pixel_size_A=0.1, device="cpu")
    heavy = found[found.species == HEAVY]
    assert set(heavy.frame) == {1} and 1 <= len(heavy) <= 2
    assert any("heavy" in str(w.message) for w in caught)
    q = pd.DataFrame(found.attrs["quality"])
    assert list(q.frame) == [0, 1, 2] and q.heavy.tolist()[1] == len(heavy)
    assert (q.bonded > 0.8).all() and (q.bond_A.sub(1.42).abs() < 0.1).all()
    assert found.attrs["pixel_size"]["confidence"] == "given"
    assert "intensity" in found and "fit_residual" not in found


@shipped
def test_si_is_never_heavy_at_the_steepest_contrast():
    sim = synth_stem_movie(2, 256, seed=11, si_fraction=0.03, z_exponent=2.5,
                           dose_e_per_A2=2e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = find_atoms(sim.movie, pixel_size_A=0.1, device="cpu")
    assert (found.species == "Si").sum() >= 5 and (found.species == HEAVY).sum() == 0
    assert found.attrs["outside_domain"] == []


@real
@shipped
@pytest.mark.parametrize("crop", real_crops.CROPS, ids=[c.name for c in real_crops.CROPS])
def test_real_crops_none_refused_and_their_si_found(crop):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = find_atoms(real_crops.cut(crop), device="cpu")
    px = found.attrs["pixel_size_A"]
    assert px == pytest.approx(real_crops.pixel_size_A(crop), rel=0.06)
    assert found.attrs["outside_domain"] == []
    si = found[found.species == "Si"]
    assert len(si) == len(crop.si)
    for y, x in crop.si:
        assert np.hypot(si.y - y, si.x - x).min() * px < 0.5
    quality = pd.DataFrame(found.attrs["quality"])
    assert quality.doubles[0] == 0
    # a field of a few atoms (the trimer crop: four) shows no lattice either way
    if len(found) >= MIN_LATTICE_ATOMS:
        assert quality.bonded[0] > 0.6


@real
@shipped
def test_mos2_is_said_to_lie_outside_the_model():
    image = np.load(real_crops.REAL.parent / "mos2_stem" / "MoS2_stem_Exp-001-5.npy")
    with pytest.warns(UserWarning, match="outside what the atom model knows"):
        found = find_atoms(image[:256, :256].astype(np.float32), pixel_size_A=0.137,
                           device="cpu")
    assert any("not graphene's" in p for p in found.attrs["outside_domain"])
    # its dim S2 columns are no ghosts: outside the domain every atom is kept
    assert found.attrs["faint_dropped"] == 0
    with pytest.warns(UserWarning, match="two elements"):
        find_atoms(image[:256, :256].astype(np.float32), device="cpu")


def _lattice_frame(offset: float) -> tuple[np.ndarray, pd.DataFrame]:
    """A frame of bright atoms on the left half, vacuum with a weak ghost on the right."""
    yy, xx = np.mgrid[:64, :64]
    frame = np.full((64, 64), offset, np.float32)
    rows = []
    for y in range(6, 60, 6):
        for x in range(6, 30, 6):
            frame += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0).astype(np.float32)
            rows.append((y, x, 1.0))
    frame += 0.2 * np.exp(-((yy - 30) ** 2 + (xx - 48) ** 2) / 4.0).astype(np.float32)
    rows += [(30, 48, 0.8),   # a ghost: unsure, on vacuum
             (18, 18, 0.8)]   # unsure, but on the lattice's level
    atoms = pd.DataFrame(rows, columns=["y", "x", "score"]).assign(frame=0)
    return frame[None], atoms


@pytest.mark.parametrize("offset", [0.0, 5.0])
def test_faint_atoms_are_the_unsure_ones_on_dark_ground_whatever_the_offset(offset):
    frames, atoms = _lattice_frame(offset)
    faint = faint_atoms(frames, atoms, bond_px=4.0)
    assert np.flatnonzero(faint).tolist() == [len(atoms) - 2]
    # a sure atom is kept wherever it stands; no threshold keeps none
    sure = atoms.assign(score=1.0)
    assert not faint_atoms(frames, sure, bond_px=4.0).any()
    assert not faint_atoms(frames, atoms, bond_px=4.0, min_level=0.0).any()
    assert not faint_atoms(frames, atoms.iloc[:0], bond_px=4.0).any()


@shipped
def test_ghosts_in_holes_at_low_dose_are_dropped_and_counted():
    # the aperture-limited probe at 0.08 A/px and 2e4 e/A^2: the low-dose table's
    # movie with the most ghosts (docs/atoms.md)
    sim = synth_stem_movie(4, 384, pixel_size_A=0.08, seed=8_000_013, dose_e_per_A2=2e4,
                           render_model="aperture", z_exponent=2.0, final_disorder=0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = find_atoms(sim.movie, pixel_size_A=0.08, device="cpu")
        every = find_atoms(sim.movie, pixel_size_A=0.08, device="cpu", faint_level=None)
    shape = sim.movie.shape[1:]
    with_ghosts = score_atoms(every, sim.atoms, pixel_size_A=0.08, image_shape=shape)
    without = score_atoms(kept, sim.atoms, pixel_size_A=0.08, image_shape=shape)
    assert kept.attrs["faint_dropped"] == len(every) - len(kept) > 0
    assert every.attrs["faint_dropped"] == 0
    assert without["precision"] > with_ghosts["precision"]
    assert without["recall"] == with_ghosts["recall"]
    assert any("dropped as ghosts" in line for line in describe_found(kept))


def test_find_atoms_refuses_a_faint_level_outside_0_1():
    with pytest.raises(ValueError, match="faint_level must be <= 1"):
        find_atoms(np.random.default_rng(0).random((1, 64, 64), np.float32), pixel_size_A=0.1,
                   faint_level=2.0)
