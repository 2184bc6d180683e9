"""Tests for latentpath.synth.pfm: synthetic PFM switching movies and their truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from latentpath.synth.pfm import SynthPFM, read_synth_pfm, synth_pfm_movie, write_synth_pfm

T, N = 12, 96

# A single straight wall (normal along x) under a constant uniform field: the one
# geometry whose velocity can be read off the images exactly.
STRAIGHT = dict(
    mode="field", initial="wall", initial_switched=0.25, n_nucleation=0, n_pinning=0,
    random_field=0.0, side_friction=0.0, needle_axis_deg=0.0, drift_px_per_frame=0.0,
    field_range=(0.5, 0.5), sim_time=40.0,
)


@pytest.fixture(scope="module")
def tip_movie() -> SynthPFM:
    return synth_pfm_movie(T, N, seed=1, mode="tip")


@pytest.fixture(scope="module")
def field_movie() -> SynthPFM:
    return synth_pfm_movie(T, N, seed=2, mode="field")


def _boundary(pol: np.ndarray) -> np.ndarray:
    """Reference wall mask: +1 pixels with a 4-neighbour of -1 (no wrap at edges)."""
    pos = pol == 1
    neg = np.pad(pol == -1, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    near = neg[:, :-2, 1:-1] | neg[:, 2:, 1:-1] | neg[:, 1:-1, :-2] | neg[:, 1:-1, 2:]
    return pos & near


def _circ_diff_deg(a: float, b: float) -> float:
    return float(abs((a - b + 180.0) % 360.0 - 180.0))


def _circ_abs(d: np.ndarray) -> np.ndarray:
    return np.abs((d + 180.0) % 360.0 - 180.0)


def _circ_mean_deg(x: np.ndarray) -> float:
    r = np.deg2rad(x)
    return float(np.rad2deg(np.arctan2(np.sin(r).mean(), np.cos(r).mean())))


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_shapes_and_dtypes(mode, tip_movie, field_movie):
    r = tip_movie if mode == "tip" else field_movie
    assert isinstance(r, SynthPFM)
    for name in ("phase", "amplitude", "wall_velocity"):
        arr = getattr(r, name)
        assert arr.shape == (T, N, N) and arr.dtype == np.float32, name
    assert r.polarization.shape == (T, N, N) and r.polarization.dtype == np.int8
    assert set(np.unique(r.polarization)) <= {-1, 1}
    assert r.walls.shape == (T, N, N) and r.walls.dtype == bool
    assert r.field.dtype == np.float32
    assert r.field.shape == ((T, N, N) if mode == "tip" else (T,))
    assert np.isfinite(r.phase).all() and np.isfinite(r.amplitude).all()
    assert (r.amplitude >= 0).all()
    lo = r.params["wrap_low_deg"]
    assert r.phase.min() >= lo and r.phase.max() < lo + 360.0
    cols = ["frame", "switched_fraction", "n_domains", "wall_length_px",
            "mean_abs_wall_velocity", "field"]
    assert list(r.frames.columns[: len(cols)]) == cols
    assert len(r.frames) == T
    assert (r.frames["frame"].to_numpy() == np.arange(T)).all()
    assert r.pixel_size_nm == 8.0
    # params: complete and JSON-serialisable
    assert json.loads(json.dumps(r.params)) == r.params
    assert r.params["seed"] in (1, 2) and r.params["mode"] == mode
    assert r.params["n_frames"] == T and r.params["size"] == N


def test_frame_table_matches_truth(tip_movie):
    r = tip_movie
    fr = r.frames
    np.testing.assert_allclose(fr["switched_fraction"], (r.polarization == 1).mean(axis=(1, 2)))
    np.testing.assert_array_equal(fr["wall_length_px"], r.walls.sum(axis=(1, 2)))
    for t in range(T):
        v = r.wall_velocity[t][r.walls[t]]
        if v.size:
            assert fr["mean_abs_wall_velocity"][t] == pytest.approx(np.abs(v).mean(), rel=1e-5)
    np.testing.assert_allclose(fr["field"], r.field.mean(axis=(1, 2)), rtol=1e-5)
    # tip mode: the tip sits where the applied field peaks
    for t in (0, T // 2, T - 1):
        y, x = np.unravel_index(np.argmax(r.field[t]), r.field[t].shape)
        assert abs(y - fr["tip_y"][t]) <= 3 and abs(x - fr["tip_x"][t]) <= 3


def test_single_frame_and_progress():
    r = synth_pfm_movie(1, 32, seed=0, mode="field", progress=True)
    assert r.phase.shape == (1, 32, 32) and len(r.frames) == 1


# ------------------------------------------------------------------ randomness


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = synth_pfm_movie(6, 64, seed=5, mode="tip")
    b = synth_pfm_movie(6, 64, seed=5, mode="tip")
    c = synth_pfm_movie(6, 64, seed=6, mode="tip")
    for name in ("phase", "amplitude", "polarization", "walls", "field"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.wall_velocity, b.wall_velocity)  # NaNs compare equal
    pd.testing.assert_frame_equal(a.frames, b.frames)
    assert not np.array_equal(a.phase, c.phase)
    assert not np.array_equal(a.polarization, c.polarization)


def test_global_rng_state_untouched():
    # The legacy global state is read on purpose: the generator must not touch it.
    np.random.seed(123)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    synth_pfm_movie(3, 32, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


# ------------------------------------------------------------------ imaging


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_phase_has_two_populations_180_apart(mode, tip_movie, field_movie):
    r = tip_movie if mode == "tip" else field_movie
    pol = r.polarization
    # away from walls (the tip's blur mixes the two levels there)
    wall_zone = np.zeros_like(r.walls)
    for t in range(T):
        wall_zone[t] = ndimage.binary_dilation(_boundary(pol[t : t + 1])[0]
                                               | _boundary(-pol[t : t + 1])[0], iterations=3)
    up = r.phase[(pol == -1) & ~wall_zone]
    sw = r.phase[(pol == 1) & ~wall_zone]
    assert up.size > 1000 and sw.size > 1000
    m_up, m_sw = _circ_mean_deg(up), _circ_mean_deg(sw)
    assert _circ_diff_deg(m_up, r.params["phase_offset_deg"]) < 15
    assert _circ_diff_deg(m_sw, m_up) == pytest.approx(180.0, abs=15.0)
    # each population is tight around its level: the truth classifies the image
    assert np.median([_circ_diff_deg(v, m_up) for v in up[::7]]) < 20
    assert np.median([_circ_diff_deg(v, m_sw) for v in sw[::7]]) < 20
    # the amplitude drops at walls
    amp_wall = r.amplitude[r.walls].mean()
    amp_far = r.amplitude[~wall_zone].mean()
    assert amp_wall < 0.8 * amp_far


def test_phase_wrapping_option():
    r = synth_pfm_movie(3, 64, seed=0, mode="field", phase_offset_deg=-180.0,
                        wrap_low_deg=-180.0, noise=0.3)
    up = r.phase[r.polarization == -1]
    # the unswitched level sits on the wrap: values on both ends of the window
    assert (up < -150).mean() > 0.25 and (up > 150).mean() > 0.25
    assert r.phase.min() >= -180.0 and r.phase.max() < 180.0


# ------------------------------------------------------------------ truth


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_walls_are_exactly_the_mask_boundaries(mode, tip_movie, field_movie):
    r = tip_movie if mode == "tip" else field_movie
    np.testing.assert_array_equal(r.walls, _boundary(r.polarization))
    assert r.walls.any()


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_switched_fraction_grows(mode, tip_movie, field_movie):
    r = tip_movie if mode == "tip" else field_movie
    frac = r.frames["switched_fraction"].to_numpy()
    assert frac[0] < 0.25
    assert frac[-1] - frac[0] > 0.2
    # more switched at the end of each half than at its start
    assert frac[T // 2] > frac[0] and frac[-1] > frac[T // 2]


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_wall_velocity_nan_off_wall_finite_on_wall_and_positive(mode, tip_movie, field_movie):
    r = tip_movie if mode == "tip" else field_movie
    v = r.wall_velocity
    assert np.isnan(v[~r.walls]).all()
    assert np.isfinite(v[r.walls]).all()
    frac = r.frames["switched_fraction"].to_numpy()
    growing = np.flatnonzero(np.diff(frac) > 0.01)
    assert growing.size >= T // 3
    means = [np.mean(v[t][r.walls[t]]) for t in growing]
    assert np.mean(means) > 0
    assert np.mean(np.array(means) > 0) >= 0.7


def test_velocity_agrees_with_wall_displacement_straight_wall():
    r = synth_pfm_movie(T, N, seed=0, **STRAIGHT)
    area = (r.polarization == 1).sum(axis=(1, 2)).astype(float)
    length = r.walls.sum(axis=(1, 2)).astype(float)
    assert (length == N).all()  # one straight wall across the image
    measured = (area[-1] - area[0]) / (length[:-1].mean() * (T - 1))
    assert measured > 1.0  # the wall moved over 10 px
    truth = np.mean([np.nanmean(r.wall_velocity[t]) for t in range(T - 1)])
    assert truth == pytest.approx(measured, rel=0.2)
    # per-frame area change also agrees with the truth, frame by frame on average
    per_frame = np.diff(area) / length[:-1]
    assert np.mean(per_frame) == pytest.approx(truth, rel=0.2)


def test_pinning_makes_velocity_non_uniform():
    def cv(res: SynthPFM) -> float:
        vals = []
        for t in range(T):
            v = res.wall_velocity[t][res.walls[t]]
            vals.append(v.std() / max(abs(v.mean()), 1e-6))
        return float(np.mean(vals))

    free = synth_pfm_movie(T, N, seed=0, **STRAIGHT)
    pinned = synth_pfm_movie(T, N, seed=0, **{**STRAIGHT, "n_pinning": 40})
    assert cv(free) < 0.05
    assert cv(pinned) > 0.3
    # pinning slows the wall down on average
    assert (np.nanmean(pinned.wall_velocity) < np.nanmean(free.wall_velocity))


def test_drift_moves_image_and_truth_together():
    # Everything frozen (huge coercivity): only the drift changes the frames.
    r = synth_pfm_movie(T, N, seed=3, mode="field", coercivity=50.0, n_nucleation=0,
                        drift_px_per_frame=1.0, initial_switched=0.2, scan_lines=0.0)
    dy = r.frames["drift_y"].to_numpy()
    dx = r.frames["drift_x"].to_numpy()
    assert dy[0] == 0 and dx[0] == 0
    assert np.hypot(dy[-1], dx[-1]) >= 5
    p0 = r.polarization[0]
    for t in range(1, T):
        sy, sx = int(dy[t]), int(dx[t])
        # content of frame 0 at (y, x) appears in frame t at (y + sy, x + sx)
        a = p0[max(0, -sy): N - max(0, sy), max(0, -sx): N - max(0, sx)]
        b = r.polarization[t][max(0, sy): N - max(0, -sy), max(0, sx): N - max(0, -sx)]
        np.testing.assert_array_equal(a, b)
        # the image moved the same way: it matches the shifted frame 0 far better
        ia = r.phase[0][max(0, -sy): N - max(0, sy), max(0, -sx): N - max(0, sx)]
        ib = r.phase[t][max(0, sy): N - max(0, -sy), max(0, sx): N - max(0, -sx)]
        shifted = np.mean(_circ_abs(ia - ib) < 60)
        unshifted = np.mean(_circ_abs(r.phase[0] - r.phase[t]) < 60)
        if (sy, sx) != (0, 0):
            assert shifted > unshifted
        assert shifted > 0.9
    # truth walls and polarisation agree in every frame (alignment)
    np.testing.assert_array_equal(r.walls, _boundary(r.polarization))


# ------------------------------------------------------------------ files


def test_write_read_roundtrip(tmp_path, tip_movie):
    path = write_synth_pfm(tip_movie, tmp_path / "pfm.npz")
    assert path == tmp_path / "pfm.npz" and path.is_file()
    table = tmp_path / "pfm_frames.parquet"
    assert table.is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(table), tip_movie.frames)
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        assert {"movie", "amplitude", "polarization", "walls", "wall_velocity", "field",
                "pixel_size", "pixel_unit", "channel", "params_json"} <= names
        assert "phase" not in names  # the movie is stored once, as "movie"
        assert npz["movie"].dtype == np.float32
        assert float(npz["pixel_size"]) == 8.0 and str(npz["pixel_unit"]) == "nm"
        assert str(npz["channel"]) == "phase"
        assert json.loads(str(npz["params_json"]))["seed"] == 1
        assert "frames.switched_fraction" in names
    back = read_synth_pfm(path)
    for name in ("phase", "amplitude", "polarization", "walls", "wall_velocity", "field"):
        got, want = getattr(back, name), getattr(tip_movie, name)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    pd.testing.assert_frame_equal(back.frames, tip_movie.frames)
    assert back.params == tip_movie.params
    assert back.pixel_size_nm == tip_movie.pixel_size_nm


def test_write_adds_suffix_and_field_mode_roundtrip(tmp_path, field_movie):
    path = write_synth_pfm(field_movie, tmp_path / "movie")
    assert path.name == "movie.npz"
    back = read_synth_pfm(path)
    assert back.field.shape == (T,)
    np.testing.assert_array_equal(back.field, field_movie.field)


def test_no_overwrite(tmp_path, field_movie):
    path = tmp_path / "pfm.npz"
    write_synth_pfm(field_movie, path)
    stamp = path.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite") as err:
        write_synth_pfm(field_movie, path)
    assert str(path) in str(err.value)
    assert path.stat().st_mtime_ns == stamp
    # the parquet alone also blocks a write, and nothing is written then
    path2 = tmp_path / "other.npz"
    (tmp_path / "other_frames.parquet").write_text("keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synth_pfm(field_movie, path2)
    assert not path2.exists()
    assert (tmp_path / "other_frames.parquet").read_text() == "keep"
    write_synth_pfm(field_movie, path, overwrite=True)
    assert read_synth_pfm(path).n_frames == T
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other_frames.parquet", "pfm.npz", "pfm_frames.parquet"]


def test_read_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_synth_pfm(tmp_path / "nope.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, movie=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="missing"):
        read_synth_pfm(foreign)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_frames": 0}, "n_frames"),
        ({"n_frames": 2.5}, "n_frames"),
        ({"size": 16}, "size"),
        ({"mode": "laser"}, "mode"),
        ({"initial": "chaos"}, "initial"),
        ({"noise": -0.1}, "noise"),
        ({"n_pinning": -1}, "n_pinning"),
        ({"n_nucleation": -3}, "n_nucleation"),
        ({"anisotropy": 0.5}, "anisotropy"),
        ({"pixel_size_nm": 0.0}, "pixel_size_nm"),
        ({"drift_px_per_frame": -1.0}, "drift_px_per_frame"),
        ({"field_range": (0.1,)}, "field_range"),
        ({"tip_bias": (-1.0, 2.0)}, "tip_bias"),
        ({"initial_switched": 1.5}, "initial_switched"),
        ({"scan_lines": 2.0}, "scan_lines"),
        ({"seed": -1}, "seed"),
        ({"stripes": "yes"}, "stripes"),
        ({"needle_axis_deg": float("nan")}, "needle_axis_deg"),
    ],
)
def test_argument_validation(kwargs, name):
    args = {"n_frames": 2, "size": 32, **kwargs}
    n_frames, size = args.pop("n_frames"), args.pop("size")
    with pytest.raises(ValueError, match=name):
        synth_pfm_movie(n_frames, size, **args)
