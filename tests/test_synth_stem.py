"""Synthetic STEM movies: geometry, topology, events, rendering and files."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from latentpath.cli import main
from latentpath.io import load_movie
from latentpath.synth import defects, render
from latentpath.synth.sheet import (
    CC_BOND_A,
    faces,
    graphene_sheet,
    is_valid,
    relax,
)
from latentpath.synth.stem import read_synth_stem, synth_stem_movie, write_synth_stem


@pytest.fixture(scope="module")
def movie():
    return synth_stem_movie(8, 192, seed=3, event_rate=3.0, si_fraction=0.03)


def _pristine(seed: int = 0, ripple: float = 0.0):
    rng = np.random.default_rng(seed)
    sheet = graphene_sheet((0, 30, 0, 30), angle_deg=13.0, ripple_amplitude_A=ripple, rng=rng)
    relax(sheet, sheet.alive_indices(), n_iter=150)
    return sheet


def _central_atom(sheet):
    centre = sheet.pos[sheet.alive_indices()].mean(0)
    return int(np.argmin(np.linalg.norm(sheet.pos - centre, axis=1)))


def _ring_sizes(sheet):
    return sorted(len(m) for m in faces(sheet).rings())


def _bond_lengths(sheet):
    b = sheet.bonds()
    return np.linalg.norm(sheet.pos[b[:, 0]] - sheet.pos[b[:, 1]], axis=1)


def test_pristine_graphene_geometry_and_rings():
    sheet = _pristine()
    assert np.allclose(_bond_lengths(sheet), CC_BOND_A, atol=0.01)
    sizes = _ring_sizes(sheet)
    assert set(sizes) == {6}
    i = _central_atom(sheet)
    assert sum(i in m for m in faces(sheet).rings()) == 3


def test_ripples_shorten_projected_bonds():
    flat = _bond_lengths(_pristine(ripple=0.0)).mean()
    rippled = _bond_lengths(_pristine(ripple=0.6)).mean()
    assert rippled < flat - 0.002
    assert rippled > 0.97 * CC_BOND_A


def _ring_delta(before, after):
    b, a = pd.Series(before).value_counts(), pd.Series(after).value_counts()
    return a.sub(b, fill_value=0).astype(int).loc[lambda s: s != 0].to_dict()


def test_stone_wales_makes_two_pentagons_and_two_heptagons():
    sheet = _pristine()
    i = _central_atom(sheet)
    j = sorted(sheet.nbrs[i])[0]
    before = _ring_sizes(sheet)
    assert defects.attempt(sheet, defects.stone_wales(i, j))
    assert _ring_delta(before, _ring_sizes(sheet)) == {5: 2, 6: -4, 7: 2}
    # Rotating the same bond again restores the hexagons.
    assert defects.attempt(sheet, defects.stone_wales(i, j))
    assert set(_ring_sizes(sheet)) == {6}


def test_double_vacancy_reconstructs_to_5_8_5():
    sheet = _pristine()
    i = _central_atom(sheet)
    j = sorted(sheet.nbrs[i])[0]
    before = _ring_sizes(sheet)
    assert defects.attempt(sheet, defects.remove_atoms([i, j]))
    assert _ring_delta(before, _ring_sizes(sheet)) == {5: 2, 6: -4, 8: 1}


def test_single_vacancy_reconstructs_to_5_9():
    sheet = _pristine()
    before = _ring_sizes(sheet)
    assert defects.attempt(sheet, defects.remove_atoms([_central_atom(sheet)]))
    # The 9-ring is larger than a primitive ring of the truth (at most 8).
    assert _ring_delta(before, _ring_sizes(sheet)) == {5: 1, 6: -3}
    coordination = [sheet.coordination(k) for k in sheet.alive_indices()]
    assert coordination.count(2) - [len(m) for m in faces(sheet).members].count(0) >= 1


def test_fourfold_si_sits_in_two_pentagons_and_two_hexagons():
    sheet = _pristine()
    i = _central_atom(sheet)
    sheet.species[i] = 14
    relax(sheet, sheet.alive_indices())
    threefold = [len(m) for m in faces(sheet).rings() if i in m]
    assert sorted(threefold) == [6, 6, 6]
    carbon = sorted(sheet.nbrs[i])[0]
    assert defects.attempt(sheet, defects.si_to_fourfold(i, carbon))
    assert sheet.coordination(i) == 4
    assert sorted(len(m) for m in faces(sheet).rings() if i in m) == [5, 5, 6, 6]
    assert defects.attempt(sheet, defects.si_to_threefold(i))
    assert sheet.coordination(i) == 3


def test_invalid_event_is_undone():
    sheet = _pristine()
    i = _central_atom(sheet)
    snapshot_pos = sheet.pos.copy()
    snapshot_nbrs = [set(s) for s in sheet.nbrs]

    def break_everything(s):
        # Bond an atom to a distant one: crossing, over-coordinated, far too long.
        far = int(np.argmax(np.linalg.norm(s.pos - s.pos[i], axis=1)))
        s.bond(i, far)
        return [i, far]

    assert defects.attempt(sheet, break_everything) is None
    assert np.array_equal(sheet.pos, snapshot_pos)
    assert sheet.nbrs == snapshot_nbrs


def test_movie_shapes_and_tables(movie):
    assert movie.movie.shape == (8, 192, 192)
    assert movie.movie.dtype == np.float32
    assert np.isfinite(movie.movie).all()
    assert {"frame", "id", "y", "x", "y_A", "x_A", "species", "coordination", "region",
            "n5", "n6", "n7", "n8", "ring_sizes", "in_image"} <= set(movie.atoms.columns)
    assert sorted(movie.atoms.frame.unique()) == list(range(8))
    assert np.allclose(movie.atoms.x_A, movie.atoms.x * movie.pixel_size_A)
    assert set(movie.atoms.species) == {"C", "Si"}
    assert movie.params["seed"] == 3


def test_ids_are_persistent_and_unique_per_frame(movie):
    assert not movie.atoms.duplicated(["frame", "id"]).any()
    first = set(movie.atoms[movie.atoms.frame == 0].id)
    last = set(movie.atoms[movie.atoms.frame == 7].id)
    assert len(first & last) > 0.3 * len(first)


def test_bonds_are_recoverable_from_projected_distances(movie):
    """Every C-C bond is shorter than 1.2 bond lengths and every other C-C pair longer."""
    for t in (0, 7):
        atoms = movie.atoms[movie.atoms.frame == t].reset_index(drop=True)
        carbon = atoms[atoms.species == "C"]
        xy = carbon[["x_A", "y_A"]].to_numpy()
        close = {tuple(sorted((int(carbon.id.iloc[a]), int(carbon.id.iloc[b]))))
                 for a, b in cKDTree(xy).query_pairs(1.2 * CC_BOND_A)}
        bonds = movie.bonds[movie.bonds.frame == t]
        cid = set(carbon.id)
        true_cc = {tuple(sorted(p)) for p in zip(bonds.id_a, bonds.id_b, strict=True)
                   if p[0] in cid and p[1] in cid}
        assert close == true_cc
        lengths = bonds.length_A.to_numpy()
        assert (lengths > 0.5 * CC_BOND_A).all()


def test_rings_match_atom_memberships_and_centres(movie):
    atoms = movie.atoms.set_index(["frame", "id"])
    for t in (0, 7):
        rings = movie.rings[movie.rings.frame == t]
        assert set(rings["size"]) <= {5, 6, 7, 8}
        for ring in rings.itertuples():
            ids = [int(k) for k in ring.members.split()]
            assert len(ids) == ring.size
            xy = atoms.loc[[(t, k) for k in ids], ["x", "y"]].to_numpy()
            assert np.allclose(xy.mean(0), [ring.x, ring.y], atol=1e-6)
        # Each ring of size k contributes one to n_k of each member.
        inside = rings[rings.in_image]
        counts = pd.Series([int(k) for m in inside.members for k in m.split()]).value_counts()
        frame_atoms = movie.atoms[movie.atoms.frame == t].set_index("id")
        total = frame_atoms.loc[counts.index, ["n5", "n6", "n7", "n8"]].sum(axis=1)
        assert (total >= counts).all()


def test_disorder_grows_to_the_target():
    result = synth_stem_movie(12, 192, seed=5, final_disorder=0.5)
    frames = result.frames
    assert frames.disorder_fraction.iloc[0] < 0.15
    assert frames.disorder_fraction.iloc[-1] > 0.35
    assert frames.hole_fraction.iloc[-1] > frames.hole_fraction.iloc[0]
    assert frames.amorphous_fraction.iloc[-1] > frames.amorphous_fraction.iloc[0]
    assert (result.atoms[result.atoms.frame == 11].region == "amorphous").any()
    last_rings = result.rings[result.rings.frame == 11]["size"]
    assert (last_rings != 6).mean() > (result.rings[result.rings.frame == 0]["size"] != 6).mean()


def test_events_are_recorded(movie):
    kinds = set(movie.events.kind)
    assert {"sputter", "amorphization"} <= kinds
    assert kinds & {"si_hop", "si_3_to_4_fold", "si_4_to_3_fold"}
    assert kinds & {"stone_wales", "vacancy", "divacancy", "vacancy_hop"}
    assert (movie.events.frame >= 1).all()
    assert movie.frames.n_events.iloc[1:].sum() == len(movie.events)


def test_same_seed_same_movie_other_seed_other_movie():
    a = synth_stem_movie(2, 96, seed=11)
    b = synth_stem_movie(2, 96, seed=11)
    c = synth_stem_movie(2, 96, seed=12)
    assert np.array_equal(a.movie, b.movie)
    pd.testing.assert_frame_equal(a.atoms, b.atoms)
    assert not np.array_equal(a.movie, c.movie)


def test_params_record_everything_needed_to_repeat_the_movie():
    first = synth_stem_movie(2, 96, seed=21)
    expected = set(inspect.signature(synth_stem_movie).parameters) - {"progress"}
    assert set(first.params) == expected
    again = synth_stem_movie(**first.params)
    assert np.array_equal(first.movie, again.movie)


def test_truth_positions_are_where_the_image_shows_atoms():
    clean = synth_stem_movie(2, 160, seed=4, dose_e_per_A2=1e9, jitter_px=0.0,
                             read_noise=0.0, background=0.0, probe_tail_weight=0.0)
    image = clean.movie[1].astype(np.float64)
    atoms = clean.atoms[(clean.atoms.frame == 1) & clean.atoms.in_image]
    atoms = atoms[(atoms.x > 8) & (atoms.x < 150) & (atoms.y > 8) & (atoms.y < 150)]
    errors = []
    yy, xx = np.mgrid[-3:4, -3:4]
    for a in atoms.itertuples():
        cy, cx = round(a.y), round(a.x)
        patch = image[cy - 3:cy + 4, cx - 3:cx + 4]
        patch = patch - patch.min()
        errors.append(np.hypot((patch * yy).sum() / patch.sum() + cy - a.y,
                               (patch * xx).sum() / patch.sum() + cx - a.x))
    # Neighbours 14 px away tilt a 7x7 centroid slightly; the atoms sit where drawn.
    assert np.median(errors) < 0.35


def test_si_is_brighter_than_carbon_by_z_contrast():
    rng = np.random.default_rng(0)
    pad = 20
    otf = render.probe_otf((100 + 2 * pad, 100 + 2 * pad), 0.1, tail_weight=0.0)
    img = render.ideal_adf(np.array([30.0, 70.0]), np.array([50.0, 50.0]),
                           np.array([6.0, 14.0]), (100, 100), otf, pad)
    assert img[30, 50] == pytest.approx(1.0, abs=0.02)
    assert img[70, 50] / img[30, 50] == pytest.approx((14 / 6) ** 1.7, rel=0.02)
    counts = render.detect(np.full((200, 200), 2.0), counts_per_unit=25.0, read_noise=0.0,
                           rng=rng)
    assert counts.mean() == pytest.approx(50, rel=0.02)
    assert counts.var() == pytest.approx(50, rel=0.1)


def test_every_frame_is_a_valid_planar_structure():
    result = synth_stem_movie(3, 128, seed=8, final_disorder=0.5)
    atoms = result.atoms[result.atoms.frame == 2]
    bonds = result.bonds[result.bonds.frame == 2]
    index = {k: n for n, k in enumerate(atoms.id)}
    xy = atoms[["x_A", "y_A"]].to_numpy()
    seg = np.array([(index[a], index[b]) for a, b in zip(bonds.id_a, bonds.id_b, strict=True)])
    p1, p2 = xy[seg[:, 0]], xy[seg[:, 1]]
    tree = cKDTree((p1 + p2) / 2)
    def side(origin, direction, point):
        v = point - origin
        return np.sign(direction[0] * v[1] - direction[1] * v[0])

    for k, other in tree.query_pairs(2 * 2.05):
        if len({*seg[k], *seg[other]}) < 4:
            continue
        d1, d2 = p2[k] - p1[k], p2[other] - p1[other]
        o1 = side(p1[k], d1, p1[other]) * side(p1[k], d1, p2[other])
        o2 = side(p1[other], d2, p1[k]) * side(p1[other], d2, p2[k])
        assert not (o1 < 0 and o2 < 0), "bonds cross"


def test_sheet_validity_check_accepts_relaxed_graphene():
    sheet = _pristine(ripple=0.3)
    assert is_valid(sheet, sheet.alive_indices()[:200])


def test_write_read_and_load(tmp_path, movie):
    path = write_synth_stem(movie, tmp_path / "sim")
    assert path.name == "sim.npz"
    back = read_synth_stem(path)
    assert np.array_equal(back.movie, movie.movie)
    for name in ("atoms", "rings", "bonds", "events", "frames"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(movie, name),
                                      check_dtype=False)
        assert (tmp_path / f"sim_{name}.parquet").exists()
    assert back.params == movie.params
    loaded = load_movie(path)
    assert loaded.data.shape == movie.movie.shape
    assert loaded.pixel_size_in("A") == pytest.approx(movie.pixel_size_A)


def test_write_refuses_to_overwrite(tmp_path, movie):
    path = write_synth_stem(movie, tmp_path / "sim.npz")
    stamp = path.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synth_stem(movie, path)
    assert path.stat().st_mtime_ns == stamp
    write_synth_stem(movie, path, overwrite=True)


def test_read_rejects_other_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, movie=np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="not a latentpath synthetic STEM movie"):
        read_synth_stem(other)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        read_synth_stem(tmp_path / "missing.npz")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_frames": 0}, "n_frames"),
    ({"size": 8}, "size"),
    ({"pixel_size_A": -0.1}, "pixel_size_A"),
    ({"final_disorder": 1.5}, "final_disorder"),
    ({"dose_e_per_A2": float("nan")}, "dose_e_per_A2"),
    ({"jitter_px": -1.0}, "jitter_px"),
    ({"z_exponent": 0.9}, "z_exponent must be >= 1.0"),
    ({"z_exponent": 2.6}, "z_exponent must be <= 2.5"),
    ({"z_exponent": float("nan")}, "z_exponent"),
    ({"render_model": "airy"}, "render_model must be one of gauss-tail, aperture; got 'airy'"),
])
def test_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synth_stem_movie(**{"n_frames": 2, "size": 64, **kwargs})


# -- the contrast exponent and the "aperture" rendering model ------------------------------

def test_default_movie_is_unchanged():
    """Values recorded from the code before z_exponent and render_model existed."""
    sim = synth_stem_movie(2, 64, seed=0)
    assert sim.params["z_exponent"] == 1.7
    assert sim.params["render_model"] == "gauss-tail"
    movie = sim.movie.astype(np.float64)
    assert movie.sum() == pytest.approx(205857.27593439817, rel=1e-6)
    assert movie[1].sum() == pytest.approx(85995.57961541414, rel=1e-6)
    np.testing.assert_allclose(sim.movie[1, 30, 28:36], [9.948398, 6.6567745, 15.455192,
                                                         22.024628, 16.741964, 14.276126,
                                                         15.192329, 25.907677], rtol=1e-5)
    np.testing.assert_allclose(sim.movie[0, 10, 5:9], [24.52947, 27.95263, 29.880808,
                                                       22.256712], rtol=1e-5)
    assert len(sim.atoms) == 132
    assert sim.atoms.x.sum() == pytest.approx(4559.844951726228, rel=1e-9)
    assert sim.atoms.y.sum() == pytest.approx(4414.796890110225, rel=1e-9)
    explicit = synth_stem_movie(2, 64, seed=0, z_exponent=1.7, render_model="gauss-tail")
    assert explicit.movie.tobytes() == sim.movie.tobytes()


@pytest.mark.parametrize("exponent", [1.0, 1.5, 2.0, 2.5])
@pytest.mark.parametrize("probe", [render.probe_otf, render.aperture_probe_otf])
def test_z_exponent_sets_the_si_to_carbon_peak_ratio(exponent, probe):
    pad = 20
    otf = probe((128 + 2 * pad, 128 + 2 * pad), 0.1, tail_weight=0.0)
    # 6 A apart: the neighbour's probe (Airy rings included) adds < 0.1 % at the peak.
    img = render.ideal_adf(np.array([34.0, 94.0]), np.array([64.0, 64.0]),
                           np.array([6.0, 14.0]), (128, 128), otf, pad, z_exponent=exponent)
    assert img[34, 64] == pytest.approx(1.0, abs=0.02)
    assert img[94, 64] / img[34, 64] == pytest.approx((14 / 6) ** exponent, rel=0.02)


def test_z_exponent_reaches_the_movie():
    low = synth_stem_movie(1, 64, seed=1, z_exponent=1.2, si_fraction=0.05)
    high = synth_stem_movie(1, 64, seed=1, z_exponent=2.2, si_fraction=0.05)
    assert low.params["z_exponent"] == 1.2
    pd.testing.assert_frame_equal(low.atoms, high.atoms)
    assert high.movie.sum() > low.movie.sum()


@pytest.mark.parametrize(("fwhm", "pixel_size"), [(1.05, 0.1), (0.8, 0.06), (1.4, 0.15)])
def test_aperture_probe_has_unit_integral_and_the_asked_fwhm(fwhm, pixel_size):
    shape = (160, 160)
    otf = render.aperture_probe_otf(shape, pixel_size, fwhm_A=fwhm, tail_weight=0.15)
    assert otf.shape == (160, 81)
    assert otf.dtype == np.complex128
    assert otf[0, 0].real == pytest.approx(1.0, abs=1e-12)
    kernel = np.fft.irfft2(otf, s=shape)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-9)
    assert kernel.min() > -1e-6 * kernel.max()
    # FWHM of the whole probe (halo included) from the area above half maximum.
    area = (kernel >= 0.5 * kernel.max()).sum() * pixel_size**2
    assert 2 * np.sqrt(area / np.pi) == pytest.approx(fwhm, rel=0.1)
    # The aperture's band limit: without the halo nothing passes beyond the cutoff.
    bare = render.aperture_probe_otf(shape, pixel_size, fwhm_A=fwhm, tail_weight=0.0)
    q = np.hypot(np.fft.fftfreq(160, pixel_size)[:, None], np.fft.rfftfreq(160, pixel_size))
    cutoff = render.aperture_cutoff(fwhm, fwhm / 2)
    assert np.abs(bare[q > cutoff]).max() < 1e-12
    assert np.abs(bare[q < 0.5 * cutoff]).min() > 0.1


def test_aperture_model_images_the_same_truth_differently():
    kw = {"initial_disorder": 0.0, "final_disorder": 0.0}
    plain = synth_stem_movie(2, 96, seed=2, **kw)
    aperture = synth_stem_movie(2, 96, seed=2, render_model="aperture", **kw)
    assert aperture.params["render_model"] == "aperture"
    assert aperture.movie.dtype == np.float32
    for name in ("atoms", "rings", "bonds", "events", "frames"):
        pd.testing.assert_frame_equal(getattr(plain, name), getattr(aperture, name))
    assert not np.array_equal(plain.movie, aperture.movie)
    again = synth_stem_movie(**aperture.params)
    assert np.array_equal(again.movie, aperture.movie)
    for t in (0, 1):
        image = aperture.movie[t].astype(np.float64)
        atoms = aperture.atoms[(aperture.atoms.frame == t) & aperture.atoms.in_image]
        rings = aperture.rings[(aperture.rings.frame == t) & aperture.rings.in_image]
        on = image[np.round(atoms.y).astype(int).clip(0, 95),
                   np.round(atoms.x).astype(int).clip(0, 95)].mean()
        between = image[np.round(rings.y).astype(int), np.round(rings.x).astype(int)].mean()
        assert len(rings) > 5
        assert on > 2.5 * between


def test_aperture_model_draws_atoms_where_the_truth_says():
    clean = synth_stem_movie(2, 128, seed=4, dose_e_per_A2=1e9, jitter_px=0.0,
                             read_noise=0.0, background=0.0, probe_tail_weight=0.0,
                             initial_disorder=0.02, final_disorder=0.05,
                             render_model="aperture")
    image = clean.movie[1].astype(np.float64)
    atoms = clean.atoms[(clean.atoms.frame == 1) & clean.atoms.in_image]
    atoms = atoms[(atoms.x > 8) & (atoms.x < 119) & (atoms.y > 8) & (atoms.y < 119)]
    assert len(atoms) > 20
    yy, xx = np.mgrid[-3:4, -3:4]
    errors, along_x = [], []
    for a in atoms.itertuples():
        cy, cx = round(a.y), round(a.x)
        patch = image[cy - 3:cy + 4, cx - 3:cx + 4]
        patch = patch - patch.min()
        dy = (patch * yy).sum() / patch.sum() + cy - a.y
        dx = (patch * xx).sum() / patch.sum() + cx - a.x
        errors.append(np.hypot(dy, dx))
        along_x.append(dx)
    assert np.median(errors) < 0.35
    # The detector's lag delays the signal along the fast scan by a fraction of a pixel.
    assert 0.0 < np.mean(along_x) < 0.3


def test_aperture_line_jitter_is_correlated():
    offsets = render.line_offsets(20000, 0.4, np.random.default_rng(1), glitch_rate=0.0)
    assert offsets.std() == pytest.approx(0.4, rel=0.1)
    lag1 = np.corrcoef(offsets[:-1], offsets[1:])[0, 1]
    assert lag1 == pytest.approx(np.exp(-1 / 6), abs=0.03)
    glitched = render.line_offsets(20000, 0.4, np.random.default_rng(1))
    jumps = np.abs(glitched - offsets) > 0
    assert 10 < jumps.sum() < 80
    assert (np.abs(glitched - offsets)[jumps] >= 1.6 - 1e-9).all()
    assert not render.line_offsets(64, 0.0, np.random.default_rng(1)).any()
    flyback = render.flyback_profile(256, 0.5, np.random.default_rng(2))
    assert 0.3 <= abs(flyback[0]) <= 0.7
    assert np.abs(flyback[-64:]).max() < 0.05


def test_aperture_resampling_moves_content_by_the_offsets():
    x = np.arange(64, dtype=np.float64)
    image = np.tile(np.exp(-0.5 * ((x - 30) / 3) ** 2), (4, 1))
    moved = render.resample_scan(image, np.array([0.0, 1.0, -2.0, 0.5]), np.zeros(64))
    centres = (moved * x).sum(1) / moved.sum(1)
    np.testing.assert_allclose(centres, [30.0, 31.0, 28.0, 30.5], atol=0.01)


def test_scintillator_detector_noise_and_fast_scan_lowpass():
    rng = np.random.default_rng(0)
    counts = render.detect_scintillator(np.full((300, 300), 2.0), counts_per_unit=25.0,
                                        read_noise=0.0, rng=rng)
    assert counts.dtype == np.float32
    assert counts.mean() == pytest.approx(50, rel=0.01)
    # Gamma gain of shape 3 adds a third to the shot-noise variance; the exponential
    # response (a = exp(-2)) keeps (1 - a) / (1 + a) of it.
    a = np.exp(-2.0)
    assert counts.var() == pytest.approx(50 * (4 / 3) * (1 - a) / (1 + a), rel=0.1)
    c = counts - counts.mean()
    along_x = (c[:, 1:] * c[:, :-1]).mean() / c.var()
    along_y = (c[1:] * c[:-1]).mean() / c.var()
    assert along_x == pytest.approx(a, abs=0.02)
    assert abs(along_y) < 0.02
    dark = render.detect_scintillator(np.zeros((400, 400)), counts_per_unit=25.0,
                                      read_noise=2.0, rng=rng)
    # Read noise (2 counts) plus a dark-level offset per line (0.3 of it): streaks.
    assert dark.std() == pytest.approx(2.0 * np.sqrt(1 + 0.3**2), rel=0.1)
    assert dark.mean(axis=1).std() == pytest.approx(0.6, rel=0.2)


def test_aperture_probe_rejects_a_source_wider_than_the_probe():
    with pytest.raises(ValueError, match="source_fwhm_A"):
        render.aperture_probe_otf((64, 64), 0.1, fwhm_A=1.0, source_fwhm_A=0.95)


def test_cli_passes_the_imaging_options(tmp_path, capsys):
    out = tmp_path / "look.npz"
    assert main(["synth", "stem", str(out), "--frames", "1", "--size", "64",
                 "--render-model", "aperture", "--z-exponent", "2.0", "--probe-fwhm", "0.9",
                 "--probe-tail", "0.2", "--jitter-px", "0.1", "--read-noise", "2.5"]) == 0
    params = read_synth_stem(out).params
    assert params["render_model"] == "aperture"
    assert (params["z_exponent"], params["probe_fwhm_A"], params["probe_tail_weight"],
            params["jitter_px"], params["read_noise"]) == (2.0, 0.9, 0.2, 0.1, 2.5)
    assert main(["synth", "stem", str(tmp_path / "bad"), "--z-exponent", "3"]) == 2
    assert "z_exponent" in capsys.readouterr().err
