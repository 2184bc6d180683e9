"""The latentpath command: synthetic movies, the demo, and how errors reach the user."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from latentpath.cli import main
from latentpath.synth import read_synth_stem


def test_synth_stem_writes_movie_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["synth", "stem", str(out), "--frames", "3", "--size", "96", "--seed", "2"]) == 0
    assert "synthetic STEM movie" in capsys.readouterr().out
    result = read_synth_stem(tmp_path / "sim.npz")
    assert result.movie.shape == (3, 96, 96)
    assert result.params["seed"] == 2
    assert (tmp_path / "sim.png").stat().st_size > 10_000
    assert (tmp_path / "sim_atoms.parquet").exists()


def test_existing_output_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "sim.npz"
    args = ["synth", "stem", str(out), "--frames", "2", "--size", "64"]
    assert main(args) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert err.count("\n") == 1
    assert out.read_bytes() == before
    assert main([*args, "--seed", "5", "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_bad_argument_is_one_line_and_nonzero(tmp_path, capsys):
    assert main(["synth", "stem", str(tmp_path / "x"), "--frames", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentpath: error:") and "n_frames" in err
    with pytest.raises(ValueError):
        main(["--debug", "synth", "stem", str(tmp_path / "x"), "--frames", "0"])


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "latentpath.cli", "--help"],
                          capture_output=True, text=True, check=True)
    assert "demo" in done.stdout and "synth" in done.stdout


def test_movie_is_float32_counts(tmp_path):
    main(["synth", "stem", str(tmp_path / "s"), "--frames", "1", "--size", "64"])
    with np.load(tmp_path / "s.npz") as data:
        assert data["movie"].dtype == np.float32
        assert str(data["pixel_unit"]) == "A"


def test_atoms_and_evaluate_commands(tmp_path, capsys):
    from latentpath.atoms.model import SHIPPED_MODEL_DIR

    if not (SHIPPED_MODEL_DIR / "weights.safetensors").exists():
        pytest.skip("no shipped weights")
    sim = tmp_path / "sim.npz"
    assert main(["synth", "stem", str(sim), "--frames", "2", "--size", "192", "--seed", "9"]) == 0
    table = tmp_path / "atoms.csv"
    assert main(["atoms", str(sim), "--out", str(table), "--device", "cpu",
                 "--precision", "float32"]) == 0
    out = capsys.readouterr().out
    assert "pixel size 0.1000 A (file, confidence given)" in out
    assert "network computed in float32" in out
    assert table.exists() and (tmp_path / "atoms.png").exists()
    metadata = json.loads((tmp_path / "atoms.json").read_text())
    assert metadata["quality"]["frame"] == [0, 1] and "bonded" in metadata["quality_columns"]
    assert metadata["precision"] == "float32"
    assert "quality per frame:" in out
    assert main(["atoms", str(sim), "--out", str(table)]) == 2
    assert "already exists" in capsys.readouterr().err
    other = str(tmp_path / "other.csv")
    assert main(["atoms", str(sim), "--out", other, "--faint-level", "2"]) == 2
    assert "faint_level must be <= 1" in capsys.readouterr().err
    assert main(["atoms", str(sim), "--out", other, "--keep-faint", "--device", "cpu",
                 "--augment"]) == 0
    assert json.loads((tmp_path / "other.json").read_text())["faint_dropped"] == 0
    assert json.loads((tmp_path / "other.json").read_text())["augmented"] is True
    assert metadata["augmented"] is False
    assert "averaged over 8 rotations and reflections" in capsys.readouterr().out
    scores = tmp_path / "scores.json"
    assert main(["evaluate", str(table), "--truth", str(sim), "--out", str(scores)]) == 0
    assert "f1" in capsys.readouterr().out
    assert json.loads(scores.read_text())["f1"] > 0.9


def test_atoms_command_states_the_faint_level_it_defaults_to(capsys):
    from latentpath.atoms.locate import FAINT_LEVEL

    with pytest.raises(SystemExit):
        main(["atoms", "--help"])
    assert f"(default {FAINT_LEVEL})" in " ".join(capsys.readouterr().out.split())


def test_atoms_command_reports_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    assert main(["atoms", str(bad), "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and err.count("\n") == 1


def test_rvae_and_encode_commands(tmp_path, capsys):
    from latentpath.synth.motifs import synth_motif_windows

    windows, _ = synth_motif_windows(120, window_px=10, seed=1)
    path = tmp_path / "w.npy"
    np.save(path, windows)
    model = tmp_path / "model"
    args = ["rvae", str(path), "--out", str(model), "--epochs", "2", "--hidden", "16",
            "--layers", "2", "--batch-size", "20", "--device", "cpu", "--precision", "float32",
            "--no-compile"]
    assert main(args) == 0
    assert "windows/s" in capsys.readouterr().out
    assert (model / "config.json").exists() and (model / "checkpoint.json").exists()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args[:4], "--epochs", "3", *args[6:], "--resume"]) == 0
    out = tmp_path / "latents.csv"
    assert main(["encode", str(model), str(path), "--out", str(out), "--device", "cpu"]) == 0
    latents = pd.read_csv(out)
    assert len(latents) == 120 and {"angle", "dx", "dy", "z1", "z2"} <= set(latents.columns)


@pytest.mark.parametrize(("config", "message"), [
    ({"config": {"epochs": 2, "windw_px": 40}}, "unknown PFM setting(s) ['windw_px']"),
    ({"config": {"epochs": "ten"}}, "PFM setting epochs must be int, got 'ten'"),
    ({"config": {"window_px": 10, "window_samples": 20}}, "window_samples must lie in"),
    ({"config": {}, "movie": "missing.h5", "colour": 1}, "unknown key(s) ['colour']"),
    ({"pipeline": "stem", "config": {}}, "record of a stem run"),
    ([1, 2], "must hold a JSON object"),
])
def test_bad_config_file_is_one_line(tmp_path, capsys, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["pfm", str(tmp_path / "movie.npz"), "--config", str(path),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentpath: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_user_errors_end_in_one_line(tmp_path, capsys):
    garbage = tmp_path / "movie.tif"
    garbage.write_bytes(b"not a tiff at all")
    cases = [(["stem", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "r1")], "missing"),
             (["stem", str(garbage), "--out", str(tmp_path / "r2")], "movie.tif"),
             (["stem", "--out", str(tmp_path / "r3")], "no movie"),
             (["pfm", str(garbage)], "--out"),
             (["stem", str(garbage), "--config", str(tmp_path / "none.json"),
               "--out", str(tmp_path / "r4")], "does not exist")]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("latentpath: error:") and needle in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_an_unexpected_failure_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    import latentpath.cli as cli

    def broken(args):
        raise RuntimeError("the disk caught fire\nwith details")

    monkeypatch.setattr(cli, "_synth_pfm", broken)
    argv = ["synth", "pfm", str(tmp_path / "x.npz")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "latentpath: error: RuntimeError: the disk caught fire (--debug shows where)\n"
    with pytest.raises(RuntimeError):
        main([*argv, "--debug"])  # --debug after the command, too


def test_balance_flag_sets_one_or_each_window_kind(tmp_path, capsys):
    from latentpath.cli import _stem_config, build_parser

    def config(*flags):
        return _stem_config(build_parser().parse_args(["stem", "m.npy", "--out", "r", *flags]))

    assert config().balance_power == {"atom": 0.5, "hollow": 1.0}
    assert (config().cooldown, config("--cooldown", "0").cooldown) == (0.3, 0.0)
    assert config("--balance", "0").balance_power == {"atom": 0.0, "hollow": 0.0}
    assert config("--balance", "hollow=0.25").balance_power == {"atom": 0.5, "hollow": 0.25}
    assert config("--hollow-max-steps", "2500").hollow_max_steps == 2500
    assert (config().min_steps, config("--min-steps", "1").min_steps) == (None, 1)
    assert (config().atom_draws, config("--atom-draws", "3").atom_draws) == (1, 3)
    assert (config().neighbour_weight, config("--neighbour-weight", "0").neighbour_weight) \
        == (200.0, 0.0)
    assert (config().side_by_side, config("--one-at-a-time").side_by_side) == (True, False)
    args = build_parser().parse_args(["stem", "m.npy", "--out", "r", "--balance", "atom=1"])
    assert _stem_config(args, {"balance_power": 0.3}).balance_power == \
        {"atom": 1.0, "hollow": 0.3}
    for flags, message in ((["atom"], "KIND=POWER"),
                           (["atom=x"], "--balance atom must be a number"),
                           (["edge=1"], "no window kind")):
        assert main(["stem", str(tmp_path / "m.npy"), "--out", str(tmp_path / "r"),
                     "--balance", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "r").exists()


def test_the_defaults_the_help_names_are_the_settings_defaults():
    import argparse
    import dataclasses
    import re

    from latentpath.cli import build_parser
    from latentpath.pipeline import PfmConfig, StemConfig

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = []
    for command, settings in (("stem", StemConfig()), ("pfm", PfmConfig())):
        fields = {f.name for f in dataclasses.fields(settings)}
        for action in sub.choices[command]._actions:
            # "(16)", "(default 8)", "(80; -1 for all)": one number, the default
            named = re.search(r"\((?:default )?(-?\d+(?:\.\d+)?)[;)]", action.help or "")
            if action.dest not in fields or named is None or action.nargs == "?":
                continue
            checked.append(action.dest)
            assert float(named.group(1)) == getattr(settings, action.dest), \
                f"latentpath {command} {action.option_strings[0]}: help says {named.group(1)}"
    assert {"window_px", "window_samples", "map_points", "track_memory"} <= set(checked)
