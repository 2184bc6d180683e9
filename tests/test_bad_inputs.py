"""What a user or a careless script does, through the command line, on tiny inputs:
every case exits with a clear error naming the input and the problem, and no file
outside the command's own outputs changes (issue 21)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentpath.cli import main
from latentpath.pipeline.stem import TRACK_TABLES
from latentpath.synth import synth_pfm_movie, synth_stem_movie, write_synth_stem
from latentpath.synth.pfm import write_synth_pfm

#: every file and folder name a STEM run writes, as the issue tried them
STEM_NAMES = ["window_images.npy", "rings.parquet", *TRACK_TABLES.values(),
              "atom/windows.npy", "atom/windows.parquet", "atom/latents.parquet",
              "atom/maps.npz", "atom/track_windows.npz", "atom/model/weights.safetensors",
              "hollow/model/config.json", "figures/graph.png", "figures/transitions.png",
              "segmenter/weights.safetensors", "config.json", "atoms.parquet", "report.html"]
PFM_NAMES = ["signal.npy", "drift.csv", "frames.csv", "wall_history.csv", "walls.parquet",
             "wall_mask.npz", "walls/windows.npy", "figures/walls.png", "config.json"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, *words: str) -> str:
    """Run the command, expecting exit 2 and one line of error holding ``words``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture(scope="module")
def stem_movie(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stem") / "movie.npy"
    np.save(path, np.random.default_rng(0).random((2, 96, 96), dtype=np.float32))
    return path


@pytest.fixture(scope="module")
def pfm_movie(tmp_path_factory) -> Path:
    return write_synth_pfm(synth_pfm_movie(3, 64, seed=0),
                           tmp_path_factory.mktemp("pfm") / "movie.npz")


@pytest.mark.parametrize(("command", "name"), [*(("stem", n) for n in STEM_NAMES),
                                               *(("pfm", n) for n in PFM_NAMES)])
def test_a_run_never_replaces_a_file_it_did_not_write(request, tmp_path, capsys, command,
                                                     name):
    movie = request.getfixturevalue(f"{command}_movie")
    planted = tmp_path / "run" / name
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"the user's own file")
    before = snapshot(tmp_path)
    refused([command, str(movie), "--out", str(tmp_path / "run")], capsys,
            str(planted), "was not written by a latentpath run", "--overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_input_movie_under_an_output_name_is_never_replaced(stem_movie, pfm_movie,
                                                                tmp_path, capsys, overwrite):
    run = tmp_path / "run"
    (run / "walls").mkdir(parents=True)
    movie = run / "window_images.npy"
    movie.write_bytes(stem_movie.read_bytes())
    inside = run / "atom" / "model" / "movie.npy"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(stem_movie.read_bytes())
    signal = run / "signal.npy"
    np.save(signal, np.load(pfm_movie)["movie"])
    before = snapshot(tmp_path)
    refused(["stem", str(movie), "--out", str(run), *overwrite], capsys,
            str(movie), "is the movie of this command", "never replaced")
    refused(["stem", str(inside), "--out", str(run), *overwrite], capsys,
            str(inside), "lies in the output")
    refused(["pfm", str(signal), "--out", str(run), *overwrite], capsys,
            str(signal), "is the movie", "would be replaced")
    assert snapshot(tmp_path) == before


def test_a_settings_file_in_the_run_directory_is_never_replaced(stem_movie, tmp_path,
                                                                capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.json"
    config.write_text(json.dumps({"config": {"epochs": 2}, "movie": str(stem_movie)}))
    before = snapshot(tmp_path)
    refused(["stem", "--config", str(config), "--out", str(run), "--overwrite"], capsys,
            str(config), "is --config of this command")
    assert snapshot(tmp_path) == before


def test_rvae_never_replaces_a_model_folder_it_did_not_write(tmp_path, capsys):
    windows = tmp_path / "w.npy"
    np.save(windows, np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"the user": "settings"}')
    before = snapshot(tmp_path)
    argv = ["rvae", str(windows), "--out", str(model), "--epochs", "1", "--hidden", "8",
            "--layers", "1", "--device", "cpu", "--precision", "float32", "--no-compile"]
    refused(argv, capsys, str(model / "config.json"), "already exists", "--overwrite")
    assert snapshot(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((model / "config.json").read_text())["kind"]


def test_evaluate_and_encode_never_replace_their_inputs(tmp_path, capsys):
    from latentpath.rvae import fit_rvae

    truth = write_synth_stem(synth_stem_movie(1, 64, seed=0), tmp_path / "truth.npz")
    atoms = tmp_path / "atoms.csv"
    pd.DataFrame({"frame": [0], "y": [10.0], "x": [10.0], "species": ["C"]}).to_csv(atoms)
    windows = tmp_path / "w.npy"
    np.save(windows, np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    fit_rvae(windows, tmp_path / "m", epochs=1, hidden=8, layers=1, device="cpu",
             precision="float32", compile=False, progress=False)
    table = tmp_path / "t.csv"
    pd.DataFrame({"frame": np.zeros(40, int)}).to_csv(table, index=False)
    before = snapshot(tmp_path)
    refused(["evaluate", str(atoms), "--truth", str(truth), "--out", str(truth),
             "--overwrite"], capsys, str(truth), "is --truth of this command")
    refused(["evaluate", str(atoms), "--truth", str(truth), "--out", str(atoms),
             "--overwrite"], capsys, "is the atom table of this command")
    refused(["encode", str(tmp_path / "m"), str(windows), "--table", str(table), "--out",
             str(table), "--overwrite"], capsys, str(table), "is --table of this command")
    assert snapshot(tmp_path) == before


def test_a_checkpoint_cannot_point_outside_its_model_folder(tmp_path, capsys):
    from latentpath.rvae import fit_rvae

    windows = tmp_path / "w.npy"
    np.save(windows, np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    model = tmp_path / "m"
    fit_rvae(windows, model, epochs=1, hidden=8, layers=1, device="cpu",
             precision="float32", compile=False, progress=False)
    record = json.loads((model / "checkpoint.json").read_text())
    for name in ("../w.npy", str(windows), ".."):
        (model / "checkpoint.json").write_text(json.dumps({**record, "tensors": name}))
        refused(["rvae", str(windows), "--out", str(model), "--resume", "--epochs", "2",
                 "--hidden", "8", "--layers", "1", "--device", "cpu", "--precision",
                 "float32", "--no-compile"], capsys, "'tensors' must name a file in")
