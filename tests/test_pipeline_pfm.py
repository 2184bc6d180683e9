"""The PFM pipeline end to end on a small synthetic movie (scored against its truth) and
on the real PZT switching sequence."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentpath.evaluate import score_pfm
from latentpath.pipeline import PfmConfig, PfmRun, run_pfm
from latentpath.synth import synth_pfm_movie
from latentpath.synth.pfm import write_synth_pfm

PZT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "pzt_pfm"
TINY = {"epochs": 2, "hidden": 32, "layers": 2, "map_points": 12, "manifold_points": 4,
        "compile": False, "precision": "float32", "device": "cpu", "walls_per_frame": 40}


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pfm")
    sim = synth_pfm_movie(10, 160, seed=3, mode="field")
    movie = write_synth_pfm(sim, folder / "movie.npz")
    run = run_pfm(movie, folder / "run", PfmConfig(**TINY), truth=movie, progress=False)
    return sim, run


def test_run_directory_and_tables(field_run):
    run = field_run[1]
    out = run.out
    for name in ("config.json", "drift.csv", "walls.parquet", "frames.csv", "wall_history.csv",
                 "wall_latents.parquet", "walls/windows.npy", "walls/latents.parquet",
                 "walls/maps.npz", "walls/model/weights.safetensors",
                 "figures/physics_maps.png", "figures/wall_history.png"):
        assert (out / name).is_file(), name
    saved = PfmRun.read(out)
    windows = np.load(out / "walls" / "windows.npy")
    assert windows.shape[1:] == (2, 20, 20)  # frames t and t + 2, 40 px in 20 samples
    latents = saved.latents
    assert len(latents) == len(windows) and (latents.frame <= 7).all()
    for column in ("z1", "z2", "angle", "switching", "walls", "curvature", "map_switching",
                   "map_walls", "map_curvature"):
        assert column in latents.columns
    assert saved.maps["switching"].shape == (12, 12)
    assert len(saved.wall_history) >= 5
    assert json.loads((out / "config.json").read_text())["amplitude"]
    # the field switches more of the film frame by frame
    switched = saved.frames.switched_fraction.to_numpy()
    assert switched[-1] > switched[0]


def test_scores_against_the_truth(field_run):
    sim, run = field_run
    scores = score_pfm(PfmRun.read(run.out), sim)
    assert scores["drift_error_px"] < 0.5
    assert scores["wall_precision"] > 0.97 and scores["wall_recall"] > 0.9
    assert scores["wall_count_agreement"] > 0.85
    assert scores["curvature_sign"] > 0.85
    # the windows' own switching degree follows the walls' motion
    assert scores["switching_spearman"] > 0.5


def test_a_drift_from_the_phase_alone_is_a_visible_warning():
    from latentpath.pipeline.pfm import signal_and_drift

    sim = synth_pfm_movie(20, 160, seed=1, mode="field")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the amplitude: no word
        signal_and_drift(sim.phase, sim.amplitude)
    with pytest.warns(UserWarning, match="registration: .*registered on the phase alone"):
        signal_and_drift(sim.phase, None)


def test_a_run_says_what_it_doubts_in_its_summary_record_and_report(tmp_path, capsys):
    from latentpath.cli import main

    sim = synth_pfm_movie(10, 160, seed=3, mode="field")
    np.save(tmp_path / "phase.npy", sim.phase)  # no amplitude: the drift is in doubt
    with pytest.warns(UserWarning, match="registration"):
        assert main(["pfm", str(tmp_path / "phase.npy"), "--out", str(tmp_path / "run"),
                     "--epochs", "2", "--hidden", "16", "--layers", "2", "--map-points", "8",
                     "--walls-per-frame", "40", "--device", "cpu", "--no-compile"]) == 0
    assert "warning: registration: " in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert any("registered on the phase alone" in w for w in record["warnings"])
    assert "Warning: registration: " in (tmp_path / "run" / "report.html").read_text()


def test_scans_of_different_sizes_are_not_one_movie(tmp_path, capsys):
    from latentpath.cli import main

    paths = [write_synth_pfm(synth_pfm_movie(3, 96, seed=0, pixel_size_nm=size),
                             tmp_path / f"scan{size}.npz") for size in (4.0, 12.0)]
    assert main(["pfm", *map(str, paths), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "scan12.0.npz has pixels of" in err and "different scan sizes are not one movie" in err
    assert not (tmp_path / "run").exists()


def test_refuses_what_it_cannot_analyse(tmp_path):
    flat = np.full((3, 64, 64), 40.0, np.float32)
    flat[:, :, 32:] = -140.0  # two states, but a wall that never moves and is the only one
    np.save(tmp_path / "one.npy", flat[:1])
    with pytest.raises(ValueError, match="delay"):
        run_pfm(tmp_path / "one.npy", tmp_path / "run", PfmConfig(**TINY), progress=False)
    with pytest.raises(ValueError, match="unknown PFM setting"):
        PfmConfig.from_dict({"window": 40})
    with pytest.raises(ValueError, match="window_samples"):
        PfmConfig(window_samples=60)
    with pytest.raises(FileNotFoundError, match="no such file"):
        run_pfm(tmp_path / "missing.npy", tmp_path / "run", PfmConfig(**TINY), progress=False)
    np.savez(tmp_path / "two.npz", height=flat, deflection=flat)
    with pytest.raises(ValueError, match="no phase channel"):
        run_pfm(tmp_path / "two.npz", tmp_path / "run", PfmConfig(**TINY), progress=False)


@pytest.mark.skipif(not PZT.is_dir(), reason="shared real data not present")
def test_real_pzt_sequence(tmp_path):
    files = sorted(PZT.glob("PZT_final000*.h5"))
    run = run_pfm(files, tmp_path / "run", PfmConfig(**{**TINY, "delay": 1}), progress=False)
    saved = PfmRun.read(tmp_path / "run")
    # registered on the amplitude channel
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amplitude"]
    drift = saved.drift[["dy", "dx"]].to_numpy()
    assert np.hypot(*drift[2]) > 4 and np.abs(drift).max() < 10
    # the switched share reported (aligned frames, valid pixels) is the phase maps' own
    from latentpath.io import load_movie
    from latentpath.pfm import normalize_phase

    raw = (normalize_phase(load_movie(files, channel="PhaseRetrace").data) > 0).mean((1, 2))
    assert np.abs(saved.frames.switched_fraction.to_numpy() - raw).max() < 0.03
    assert raw[2] - raw[0] > 0.1
    assert len(run.latents) >= 40


def test_command_line_runs_and_scores(field_run, tmp_path, capsys):
    from latentpath.cli import main

    movie = field_run[1].out.parent / "movie.npz"
    out = tmp_path / "run"
    args = ["pfm", str(movie), "--out", str(out), "--epochs", "1", "--hidden", "16",
            "--layers", "2", "--map-points", "8", "--walls-per-frame", "20", "--no-compile",
            "--device", "cpu", "--truth", str(movie)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "frames registered" in printed and "wall windows" in printed
    assert main(args) == 0  # the same run again: every step is reused
    assert capsys.readouterr().out.count("reused") == 5
    assert main([*args, "--delay", "1"]) == 2  # another run is refused...
    assert "holds a different run (config.delay: 2 -> 1)" in capsys.readouterr().err
    # ...unless overwritten: the steps before the change are reused, the run's own
    # outputs replaced and nothing else in its folders touched
    (out / "walls" / "my-notes.txt").write_text("mine")
    assert main([*args, "--delay", "1", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "walls: reused" in printed and "windows: reused" not in printed
    assert (out / "walls" / "my-notes.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["config"]["delay"] == 1
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "switching_spearman" in printed and "curvature_sign" in printed
    assert (out / "scores.json").is_file()
    # the run's record repeats it: same movie, truth and settings, the same windows
    again = tmp_path / "again"
    assert main(["pfm", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    first, second = PfmRun.read(out), PfmRun.read(again)
    assert second.settings == first.settings
    assert second.truth == first.truth
    pd.testing.assert_frame_equal(second.latents, first.latents)
    # a flag overrides the file
    assert main(["pfm", "--config", str(out / "config.json"), "--out", str(tmp_path / "d1"),
                 "--delay", "1"]) == 0
    assert PfmRun.read(tmp_path / "d1").settings.delay == 1
