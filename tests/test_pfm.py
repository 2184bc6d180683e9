"""PFM domain walls: phase normalisation, frame registration and Canny walls, on
synthetic movies with exact truth and on the real PZT switching sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from latentpath.evaluate import score_walls
from latentpath.io import load_movie
from latentpath.pfm import (
    align_frames,
    find_walls,
    follow_wall,
    level_set_curvature,
    normalize_phase,
    register_frames,
    registration_doubts,
    wall_curves,
    wall_points,
    window_physics,
)
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


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_a_drift_is_doubted_where_it_cannot_be_trusted(mode):
    sim = synth_pfm_movie(20, 160, seed=1, mode=mode)
    # the amplitude of one place: trusted
    assert registration_doubts(sim.amplitude, register_frames(sim.amplitude)) == []
    # a noise frame in the middle
    noisy = sim.amplitude.copy()
    noisy[10] = np.random.default_rng(0).normal(noisy.mean(), noisy.std(), noisy[10].shape)
    doubts = registration_doubts(noisy, register_frames(noisy))
    assert any("frame(s) [10] hold nothing of their reference" in d for d in doubts)
    # frames of two places, one after the other
    other = synth_pfm_movie(4, 160, seed=9, mode=mode)
    two = np.concatenate([sim.amplitude[:4], other.amplitude])
    doubts = registration_doubts(two, register_frames(two))
    assert any("[4, 5, 6, 7] hold nothing" in d for d in doubts)
    assert any("may not show one place" in d for d in doubts)
    # the phase chained frame to frame follows the walls
    signal = normalize_phase(sim.phase)
    doubts = registration_doubts(signal, register_frames(signal, reference="previous"))
    assert any("with registering each frame directly to the first" in d for d in doubts)


@pytest.mark.skipif(not PZT.is_dir(), reason="shared real data not present")
def test_three_real_scans_of_one_place_are_trusted():
    amplitude = load_movie(sorted(PZT.glob("*.h5")), channel="AmplitudeRetrace").data
    assert registration_doubts(amplitude, register_frames(amplitude)) == []


def test_amplitude_registers_the_movie_to_its_first_frame(sim):
    drift = register_frames(sim.amplitude)
    truth = sim.frames[["drift_y", "drift_x"]].to_numpy()
    assert np.abs(drift[["dy", "dx"]].to_numpy() - truth).max() < 0.5
    with pytest.raises(ValueError, match="reference"):
        register_frames(sim.amplitude, reference="last")
    with pytest.raises(ValueError, match="offsets"):
        register_frames(sim.amplitude, offsets=(0, 1))


def test_pairs_keep_the_drift_between_nearby_frames_exact():
    # As domains switch, the pattern drifts away from frame 0's and registering to it
    # alone errs by a few tenths of a pixel, independently from frame to frame; the
    # time-delayed windows compare frames t and t + 2, so that error is what counts.
    sim = synth_pfm_movie(30, 160, seed=3, mode="tip")
    truth = sim.frames[["drift_y", "drift_x"]].to_numpy()

    def errors(reference: str) -> tuple[float, float]:
        drift = register_frames(sim.amplitude, reference=reference)[["dy", "dx"]]
        error = drift.to_numpy() - truth
        between = error[2:] - error[:-2]
        return np.abs(error).max(), np.sqrt((between**2).sum(1).mean())

    (worst_pairs, between_pairs), (_, between_first) = errors("pairs"), errors("first")
    assert worst_pairs < 0.3 and between_pairs < 0.12 < between_first


@pytest.mark.parametrize("mode", ["tip", "field"])
def test_walls_match_the_truth(mode):
    sim = synth_pfm_movie(10, 192, seed=2, mode=mode)
    walls = find_walls(normalize_phase(sim.phase))
    assert walls.dtype == bool and walls.shape == sim.walls.shape
    precision, recall = score_walls(walls, sim.walls)
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
    # Two independent channels give the same drift: the amplitude's static texture and
    # the phase's domains (which move a little, so they agree to about a pixel).
    amplitude = load_movie(files, channel="AmplitudeRetrace").data
    by_amplitude = register_frames(amplitude)[["dy", "dx"]].to_numpy()
    by_phase = register_frames(signal)[["dy", "dx"]].to_numpy()
    assert np.abs(by_amplitude - by_phase).max() < 1.0
    assert np.hypot(*by_amplitude[2]) > 4  # the frames did drift


def disk(radius: float, size: int = 128, centre: tuple[float, float] = (64.0, 64.0)
         ) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return np.tanh((radius - r) / 1.5).astype(np.float32)


def test_curvature_of_a_bubble_and_of_a_hole():
    kappa = level_set_curvature(disk(30.0), sigma_px=2.0)
    assert kappa[64, 94] == pytest.approx(1 / 30, rel=0.05)
    # an unswitched hole in a switched film bends the other way
    assert level_set_curvature(-disk(30.0))[64, 94] == pytest.approx(-1 / 30, rel=0.05)
    assert np.all(level_set_curvature(np.ones((16, 16), np.float32)) == 0)


def test_walls_become_ordered_curves():
    walls = find_walls(disk(30.0))
    curves = wall_curves(walls)
    assert curves.wall.nunique() == 1 and curves.closed.all()
    steps = np.hypot(*np.diff(curves[["y", "x"]].to_numpy(), axis=0).T)
    assert steps.max() < 1.5  # each pixel follows its neighbour along the wall
    assert len(curves) == pytest.approx(2 * np.pi * 30, rel=0.15)
    # two crossing lines are cut where they meet: four open arms
    cross = np.zeros((1, 64, 64), bool)
    cross[0, 32, 5:60] = cross[0, 5:60, 32] = True
    arms = wall_curves(cross, min_length_px=10)
    assert arms.wall.nunique() == 4 and not arms.closed.any()
    with pytest.raises(ValueError, match="boolean"):
        wall_curves(np.zeros((8, 8)))


def test_wall_points_respect_delay_and_valid_pixels():
    walls = np.zeros((3, 32, 32), bool)
    walls[:, 16, 4:28] = True
    valid = np.ones_like(walls)
    valid[2, :, :10] = False
    points = wall_points(walls, delay=1, valid=valid, margin_px=2)
    assert set(points.frame) == {0, 1} and (points.kind == "wall").all()
    # frame 1's partner (frame 2) is invalid left of x = 10, plus the margin
    assert points[points.frame == 1].x.min() >= 12
    assert points[points.frame == 0].x.min() == 4
    with pytest.raises(ValueError, match="delay"):
        wall_points(walls, delay=3)


def test_window_physics_of_known_windows():
    size = 40
    xx = np.mgrid[:size, :size][1]
    straight = np.where(xx < 20, -1.0, 1.0).astype(np.float32)
    moved = np.where(xx < 16, -1.0, 1.0).astype(np.float32)  # advanced 4 px
    bubble = disk(15.0, size, (20.0, 20.0))
    flat = np.ones((size, size), np.float32)
    stripes = np.where((xx // 8) % 2 == 0, -1.0, 1.0).astype(np.float32)
    phys = window_physics(np.stack([straight, bubble, flat, stripes]))
    assert list(phys.walls) == [1, 1, 0, 4]
    assert phys.switching[0] == pytest.approx(0.0, abs=0.01)
    assert phys.curvature[0] == pytest.approx(0.0, abs=1e-3)
    assert phys.curvature[1] == pytest.approx(1 / 15, rel=0.15)
    assert np.isnan(phys.curvature[2]) and phys.curvature[3] == 0
    # a time-delayed pair, weighed evenly: D(t + d) - D(t) = 2 * 4 / 40
    pair = np.stack([straight, moved])[None]
    even = window_physics(pair, switching_sigma_px=None).switching[0]
    assert even == pytest.approx(0.2, abs=0.02)
    # weighed about the centre (sigma 6 px): 2 * 4 px * the weight along the centre line
    local = window_physics(pair).switching[0]
    assert local == pytest.approx(2 * 4 / (np.sqrt(2 * np.pi) * 6), rel=0.1)
    # areas count samples in part, so a sub-pixel advance moves D in proportion...
    ramp = np.clip((xx - 19.5) / 2, -1, 1).astype(np.float32)
    half = np.clip((xx - 19.0) / 2, -1, 1).astype(np.float32)  # advanced 0.5 px
    sub = window_physics(np.stack([ramp, half])[None]).switching[0]
    assert sub == pytest.approx(local / 8, rel=0.2)
    # ...while one under static_px, or noise, is a static wall: exactly 0
    assert window_physics(np.stack([ramp, half])[None], static_px=0.6).switching[0] == 0
    noisy = ramp + np.random.default_rng(0).normal(0, 0.05, ramp.shape).astype(np.float32)
    assert window_physics(np.stack([ramp, noisy])[None]).switching[0] == 0
    # window samples of 2 px halve the curvature per image pixel
    assert window_physics(bubble[None], step_px=2.0).curvature[0] == pytest.approx(
        phys.curvature[1] / 2)
    with pytest.raises(ValueError, match="NaN"):
        window_physics(np.full((1, 16, 16), np.nan))
    with pytest.raises(ValueError, match="shape"):
        window_physics(np.zeros((2, 3, 16, 16)))
    with pytest.raises(ValueError, match="switching_sigma_px"):
        window_physics(pair, switching_sigma_px=0)


def test_follow_a_growing_bubble_through_the_movie():
    frames = np.stack([disk(r) for r in (20.0, 22.0, 24.0, 26.0)])
    frames[2, 5:15, 5:15] = 1.0  # a short-lived second domain
    chain = follow_wall(wall_curves(find_walls(frames)))
    assert list(chain.frame) == [0, 1, 2, 3]
    assert follow_wall(wall_curves(np.zeros((2, 16, 16), bool))).empty
