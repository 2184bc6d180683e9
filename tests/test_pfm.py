"""PFM domain walls: phase normalisation, frame registration and Canny walls, on
synthetic movies with exact truth and on the real PZT switching sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from latentpath.io import load_movie
from latentpath.pfm import align_frames, find_walls, normalize_phase, register_frames
from latentpath.synth import synth_pfm_movie

PZT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "pzt_pfm"


@pytest.fixture(scope="module")
def sim():
    return synth_pfm_movie(12, 192, seed=1)


def test_phase_becomes_the_polarisation_whatever_the_wrap(sim):
    signal = normalize_phase(sim.phase)
    assert signal.dtype == np.float32 and signal.shape == sim.phase.shape
    agree = ((signal > 0) == (sim.polarization > 0)).mean(axis=(1, 2))
    assert agree.min() > 0.98
    # another instrument offset and wrap: the same signal
    turned = (sim.phase + 123.0) % 360.0 - 180.0
    assert np.allclose(normalize_phase(turned), signal, atol=1e-4)
    # the state covering most of the first frame is the unswitched one
    assert np.median(signal[0]) < 0


def test_phase_without_two_states_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="two states"):
        normalize_phase(rng.uniform(-180, 180, (2, 64, 64)))


def test_registration_recovers_a_known_drift(sim):
    frame = normalize_phase(sim.phase)[6]
    moves = [(0.0, 0.0), (2.4, -1.3), (5.1, 0.6)]
    stack = np.stack([ndimage.shift(frame, m, order=1, mode="nearest") for m in moves])
    drift = register_frames(stack)
    assert list(drift.frame) == [0, 1, 2]
    assert np.abs(drift[["dy", "dx"]].to_numpy() - np.array(moves)).max() < 0.15
    aligned, valid = align_frames(stack, drift)
    inner = valid.all(axis=0)
    inner[:8] = inner[-8:] = False
    inner[:, :8] = inner[:, -8:] = False
    assert np.abs(aligned[2] - aligned[0])[inner].mean() < 0.05
    assert not valid[2].all() and valid[0].all()
    with pytest.raises(ValueError, match="max_shift_px"):
        register_frames(stack, max_shift_px=3.0)


def wall_scores(found: np.ndarray, truth: np.ndarray, tolerance_px: float = 2.0):
    flat = (-1, truth.shape[-1])
    to_truth = ndimage.distance_transform_edt(~truth.reshape(flat)).reshape(truth.shape)
    to_found = ndimage.distance_transform_edt(~found.reshape(flat)).reshape(found.shape)
    return (to_truth[found] <= tolerance_px).mean(), (to_found[truth] <= tolerance_px).mean()


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_walls_match_the_truth(mode):
    sim = synth_pfm_movie(10, 192, seed=2, mode=mode)
    walls = find_walls(normalize_phase(sim.phase))
    assert walls.dtype == bool and walls.shape == sim.walls.shape
    precision, recall = wall_scores(walls, sim.walls)
    assert precision > 0.97 and recall > 0.97


def test_a_single_domain_has_no_walls():
    rng = np.random.default_rng(1)
    signal = np.full((2, 96, 96), -1.0, np.float32) + rng.normal(0, 0.2, (2, 96, 96))
    signal[0, 30:60, 30:60] = 1.0
    walls = find_walls(signal)
    assert walls[0].sum() > 80 and walls[1].sum() == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="NaN"):
        normalize_phase(np.full((2, 32, 32), np.nan))
    with pytest.raises(ValueError, match="shape"):
        find_walls(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="too small"):
        register_frames(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="sigma_px"):
        find_walls(np.zeros((32, 32)), sigma_px=0.0)
    with pytest.raises(ValueError, match="one row per frame"):
        import pandas as pd

        align_frames(np.zeros((2, 32, 32)), pd.DataFrame({"dy": [0.0], "dx": [0.0]}))


@pytest.mark.skipif(not PZT.is_dir(), reason="shared real data not present")
def test_real_pzt_switching_sequence():
    files = sorted(PZT.glob("PZT_final000*.h5"))
    phase = load_movie(files, channel="PhaseRetrace").data
    signal = normalize_phase(phase)
    switched = (signal > 0).mean(axis=(1, 2))
    # the film switches: more of it is in the second state in the later frames
    assert switched[0] < 0.2 and switched[2] > switched[0] + 0.1
    walls = find_walls(signal)
    assert (walls.sum(axis=(1, 2)) > 500).all()
    drift = register_frames(signal)
    assert np.isfinite(drift[["dy", "dx"]].to_numpy()).all()
