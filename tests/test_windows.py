"""Windows: sub-pixel centring, edges, the table, memory-mapped output, sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentpath.windows import cut_windows, sample_points


def _gaussian_frame(y0: float, x0: float, size: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * 2.0**2)).astype(np.float32)


def test_atoms_sit_in_the_centre_at_sub_pixel_positions():
    stack = np.stack([_gaussian_frame(17.3, 21.6), _gaussian_frame(12.8, 9.45)])
    points = pd.DataFrame({"frame": [0, 1], "y": [17.3, 12.8], "x": [21.6, 9.45],
                           "species": ["C", "Si"]})
    windows, table = cut_windows(stack, points, 9, order=3)
    assert windows.shape == (2, 9, 9) and windows.dtype == np.float32
    for w in windows:
        # Symmetric about the centre pixel to interpolation accuracy.
        assert np.allclose(w, w[::-1, ::-1], atol=0.01)
        assert np.unravel_index(w.argmax(), w.shape) == (4, 4)
    assert list(table.columns) == ["point", "frame", "y", "x", "species"]


def test_edges_skip_or_pad():
    frame = np.ones((20, 20), np.float32)
    points = pd.DataFrame({"y": [1.0, 10.0, 18.5], "x": [10.0, 10.0, 10.0]})
    windows, table = cut_windows(frame, points, 6)
    assert table.point.tolist() == [1]
    windows, table = cut_windows(frame, points, 6, edge="constant")
    assert len(table) == 3 and windows[0, 0].max() == 0 and windows[1].min() == 1
    windows, _ = cut_windows(frame, points, 6, edge="reflect")
    assert np.allclose(windows, 1)


def test_memory_mapped_output_is_never_overwritten(tmp_path):
    frame = np.random.default_rng(0).random((30, 30)).astype(np.float32)
    points = pd.DataFrame({"y": [10.0, 15.5], "x": [12.0, 14.25]})
    out = tmp_path / "w.npy"
    windows, _ = cut_windows(frame, points, 8, out=out)
    assert np.array_equal(np.load(out), np.asarray(windows))
    with pytest.raises(FileExistsError):
        cut_windows(frame, points, 8, out=out)


def test_bad_input_is_named():
    frame = np.zeros((10, 10), np.float32)
    with pytest.raises(ValueError, match="columns y and x"):
        cut_windows(frame, pd.DataFrame({"y": [1.0]}), 4)
    with pytest.raises(ValueError, match="NaN"):
        cut_windows(frame, pd.DataFrame({"y": [np.nan], "x": [1.0]}), 4)
    with pytest.raises(ValueError, match="frames outside"):
        cut_windows(frame, pd.DataFrame({"frame": [3], "y": [5.0], "x": [5.0]}), 4)
    with pytest.raises(ValueError, match="shape"):
        cut_windows(np.zeros((2, 2, 2, 2)), pd.DataFrame({"y": [1.0], "x": [1.0]}), 4)
    with pytest.raises(ValueError, match="edge"):
        cut_windows(frame, pd.DataFrame({"y": [5.0], "x": [5.0]}), 4, edge="wrap")


def test_sampling_per_frame_and_species_is_seeded():
    rng = np.random.default_rng(0)
    points = pd.DataFrame({"frame": np.repeat([0, 1], 500),
                           "species": np.where(rng.random(1000) < 0.05, "Si", "C"),
                           "y": rng.random(1000), "x": rng.random(1000)})
    chosen = sample_points(points, {"C": 100, "Si": None}, seed=3)
    counts = chosen.groupby(["frame", "species"]).size()
    assert counts.loc[(0, "C")] == 100 and counts.loc[(1, "C")] == 100
    assert (chosen.species == "Si").sum() == (points.species == "Si").sum()
    assert chosen.equals(sample_points(points, {"C": 100, "Si": None}, seed=3))
    assert not chosen.equals(sample_points(points, {"C": 100, "Si": None}, seed=4))
    assert len(sample_points(points, 50)) == 100
    assert sample_points(points, None) is points
    with pytest.raises(ValueError, match="no column"):
        sample_points(points.drop(columns="species"), {"C": 1})


def test_step_resamples_a_window_of_fixed_extent():
    frame = _gaussian_frame(20.0, 20.0)
    points = pd.DataFrame({"y": [20.0], "x": [20.0]})
    fine, _ = cut_windows(frame, points, 17, step_px=1.0)
    coarse, _ = cut_windows(frame, points, 9, step_px=2.0)
    # Every second sample of the fine window is a sample of the coarse one.
    assert np.allclose(coarse[0], fine[0][::2, ::2], atol=1e-6)
    _, table = cut_windows(frame, points.assign(y=5.0), 9, step_px=2.0)
    assert len(table) == 0
    with pytest.raises(ValueError, match="step_px"):
        cut_windows(frame, points, 9, step_px=0)


def test_circular_taper_keeps_the_centre_and_drops_the_corners():
    from latentpath.windows import circular_taper

    taper = circular_taper(24)
    assert taper.shape == (24, 24) and taper.dtype == np.float32
    assert taper[11:13, 11:13].min() == 1 and taper[0, 0] == 0
    assert np.allclose(taper, taper.T) and np.allclose(taper, taper[::-1])
    with pytest.raises(ValueError, match="flat"):
        circular_taper(24, flat=1.2)


def test_turned_and_mirrored_windows_follow_their_frame():
    rng = np.random.default_rng(2)
    image = rng.random((40, 40)).astype(np.float32)
    points = pd.DataFrame({"y": [20.0, 20.0, 20.0], "x": [19.0, 19.0, 19.0]})
    windows, _ = cut_windows(image, points, 9, turn_rad=np.array([0, np.pi / 2, 0]),
                             mirror=np.array([False, False, True]))
    upright = image[16:25, 15:24]
    assert np.allclose(windows[0], upright, atol=1e-5)
    assert np.allclose(windows[1], np.rot90(upright), atol=1e-5)
    assert np.allclose(windows[2], np.flipud(upright), atol=1e-5)
    # a window turned by 45 degrees needs its corners inside the frame
    near = pd.DataFrame({"y": [5.0, 5.0], "x": [20.0, 20.0]})
    _, kept = cut_windows(image, near, 9, turn_rad=np.array([0.0, np.pi / 4]))
    assert kept.point.tolist() == [0]
    # unless its corners are to be dropped: then its inscribed disc must be inside
    _, kept = cut_windows(image, near, 9, turn_rad=np.array([0.0, np.pi / 4]),
                          round_patch=True)
    assert kept.point.tolist() == [0, 1]
    with pytest.raises(ValueError, match="turn_rad must have one value per point"):
        cut_windows(image, near, 9, turn_rad=np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        cut_windows(image, near, 9, turn_rad=np.array([0.0, np.nan]))
