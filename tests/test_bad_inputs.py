"""What a user or a careless script does, through the command line, on tiny inputs:
every case exits with a clear error naming the input and the problem, and no file
outside the command's own outputs changes (issue 21)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

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


def tiny_model(folder: Path) -> tuple[Path, Path]:
    """Windows (``folder/w.npy``) and a skip-rVAE trained on them for one epoch."""
    from latentpath.rvae import fit_rvae

    windows = folder / "w.npy"
    np.save(windows, np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    fit_rvae(windows, folder / "m", epochs=1, hidden=8, layers=1, device="cpu",
             precision="float32", compile=False, progress=False)
    return windows, folder / "m"


def resume_argv(windows: Path, model: Path) -> list[str]:
    return ["rvae", str(windows), "--out", str(model), "--resume", "--epochs", "2",
            "--hidden", "8", "--layers", "1", "--device", "cpu", "--precision", "float32",
            "--no-compile"]


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
    truth = write_synth_stem(synth_stem_movie(1, 64, seed=0), tmp_path / "truth.npz")
    atoms = tmp_path / "atoms.csv"
    pd.DataFrame({"frame": [0], "y": [10.0], "x": [10.0], "species": ["C"]}).to_csv(atoms)
    windows, _ = tiny_model(tmp_path)
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
    windows, model = tiny_model(tmp_path)
    record = json.loads((model / "checkpoint.json").read_text())
    for name in ("../w.npy", str(windows), ".."):
        (model / "checkpoint.json").write_text(json.dumps({**record, "tensors": name}))
        refused(resume_argv(windows, model), capsys, "'tensors' must name a file in")


def test_encode_refuses_windows_and_weights_that_are_not_numbers(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    path, model = tiny_model(tmp_path)
    windows = np.load(path)
    for bad in (np.nan, np.inf):
        damaged = windows.copy()
        damaged[3, 4, 4] = bad
        np.save(tmp_path / "w.npy", damaged)
        refused(["encode", str(model), str(tmp_path / "w.npy"), "--out",
                 str(tmp_path / "z.csv")], capsys, "window 3 holds NaN or infinite values")
    assert not (tmp_path / "z.csv").exists()
    np.save(tmp_path / "w.npy", windows)
    weights = load_file(str(model / "weights.safetensors"))
    name = next(iter(weights))
    for tensor, problem in ((torch.full_like(weights[name], float("nan")), "NaN"),
                            (weights[name].to(torch.int32), "not floating point")):
        save_file({**weights, name: tensor}, str(model / "weights.safetensors"))
        refused(["encode", str(model), str(tmp_path / "w.npy"), "--out",
                 str(tmp_path / "z.csv")], capsys, "weights.safetensors", name, problem)


def test_evaluate_refuses_what_it_cannot_score_honestly(tmp_path, capsys):
    truth = write_synth_stem(synth_stem_movie(1, 64, seed=0), tmp_path / "truth.npz")
    table = pd.DataFrame({"frame": [0, 0], "y": [10.0, 20.0], "x": [10.0, 30.0],
                          "species": ["C", "C"]})
    cases = [(table, ["--match-radius", "-0.5"], "match radius must be a positive"),
             (table.assign(y=[10.0, np.nan]), [], "1 found atom(s) have no finite position"),
             (table.assign(frame=[0, 7]), [], "frame(s) [7] that the truth does not have")]
    for found, flags, message in cases:
        found.to_csv(tmp_path / "atoms.csv", index=False)
        refused(["evaluate", str(tmp_path / "atoms.csv"), "--truth", str(truth), *flags],
                capsys, message)
    # atoms of another movie of the same size: scored, with a word
    table.to_csv(tmp_path / "atoms.csv", index=False)
    with pytest.warns(UserWarning, match=r"only 0 of 2 found atoms match .*is the truth "
                                         r"of this movie"):
        assert main(["evaluate", str(tmp_path / "atoms.csv"), "--truth", str(truth)]) == 0


def test_sizes_beyond_reason_are_refused_before_anything_is_allocated(stem_movie, tmp_path,
                                                                      capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    endless = tmp_path / "endless.json"
    endless.write_text(json.dumps({"config": {"epochs": 10**12}}))
    stem = ["stem", str(stem_movie), "--out", str(tmp_path / "run"), "--pixel-size", "0.2"]
    cases = [(["synth", "stem", str(tmp_path / "s.npz"), "--size", "100000"],
              "a movie of 50 frames of 100000 x 100000 px needs"),
             ([*stem, "--window-px", "1"], "window_px must be a whole number from 8"),
             ([*stem, "--map-points", "1000000"], "map_points must be a whole number"),
             ([*stem, "--config", str(endless)], "epochs must be a whole number"),
             ([*stem, "--config", str(deep)], "nested too deeply"),
             (["atoms", str(stem_movie), "--out", str(tmp_path / "a.csv"), "--pixel-size",
               "100"], "no atom can be resolved"),
             (["atoms", str(tmp_path / "empty.npy"), "--out", str(tmp_path / "a.csv")],
              "empty.npy")]
    (tmp_path / "empty.npy").write_bytes(b"")
    before = snapshot(tmp_path)
    for argv, message in cases:
        refused(argv, capsys, message)
    assert snapshot(tmp_path) == before


def test_a_pixel_size_the_lattice_contradicts_is_named(tmp_path, capsys):
    frame = tmp_path / "frame.npy"
    np.save(frame, synth_stem_movie(1, 256, seed=0, pixel_size_A=0.1).movie)
    with pytest.warns(UserWarning, match=r"the pixel size given, 0\.5 A, disagrees by "
                                         r"\d+% with the 0\.1\d* A of the image"):
        assert main(["atoms", str(frame), "--out", str(tmp_path / "a.csv"),
                     "--pixel-size", "0.5"]) == 0


def test_damaged_model_and_checkpoint_records_are_named(tmp_path, capsys):
    windows, model = tiny_model(tmp_path)
    config = json.loads((model / "config.json").read_text())
    checkpoint = json.loads((model / "checkpoint.json").read_text())
    huge = {**config, "architecture": {**config["architecture"], "hidden": 10**12}}
    (model / "config.json").write_text(json.dumps(huge))
    refused(["encode", str(model), str(windows), "--out", str(tmp_path / "z.csv")], capsys,
            "hidden must be a whole number from 1 to 8192")
    resume = resume_argv(windows, model)
    for damage, message in (({"epoch": None}, "'epoch' is None"),
                            ({"history": "x"}, "'history' is 'x'"),
                            ({"settings": []}, "'settings' is []")):
        (model / "checkpoint.json").write_text(json.dumps({**checkpoint, **damage}))
        refused(resume, capsys, "checkpoint.json: damaged checkpoint", message)
    del checkpoint["best_val"]
    (model / "checkpoint.json").write_text(json.dumps(checkpoint))
    refused(resume, capsys, "damaged checkpoint (no 'best_val')")


def test_what_is_wrong_with_a_file_is_said_as_it_is(tmp_path, capsys):
    movie = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    movie[1, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", movie)
    (tmp_path / "png.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    for command in ("stem", "pfm"):
        err = refused([command, str(tmp_path / "nan.npy"), "--out", str(tmp_path / "r")],
                      capsys, "1 NaN and 0 infinite values in frame 1", "load_movie(")
        assert "no phase channel" not in err and "pass nan_policy" not in err
        err = refused([command, str(tmp_path / "png.npy"), "--out", str(tmp_path / "r")],
                      capsys, "could not read this npy file: it holds a PNG image")
        assert "pickle" not in err
        refused([command, str(tmp_path / "none.npy"), "--out", str(tmp_path / "r")], capsys,
                "none.npy: no such file")


def test_weights_follow_the_umask_like_every_other_file(tmp_path):
    from latentpath.rvae import fit_rvae

    old = os.umask(0o022)
    try:
        fit_rvae(np.random.default_rng(0).random((40, 8, 8), dtype=np.float32),
                 tmp_path / "m", epochs=1, hidden=8, layers=1, device="cpu",
                 precision="float32", compile=False, progress=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert set(modes.values()) == {0o644}, modes
