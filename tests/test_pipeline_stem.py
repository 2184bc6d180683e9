"""The STEM pipeline end to end on a small synthetic movie, the run directory, its
evaluation, and the commands that drive it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import STEM_TINY as TINY

import latentpath.latent
from latentpath.cli import main
from latentpath.evaluate import score_chemical_space, score_tracks, true_window_labels
from latentpath.pipeline import (
    RVAE_SIZES,
    PfmConfig,
    StemConfig,
    StemRun,
    frame_graphs,
    run_stem,
    track_atoms,
)
from latentpath.synth import synth_stem_movie, write_synth_stem

WINDOW_PX = StemConfig().window_px


def test_run_directory_holds_every_step(stem_run):
    out, result = stem_run
    assert result.out == out and len(result.atoms) > 100
    for name in ("config.json", "atoms.parquet", "rings.parquet", "atom_quality.csv"):
        assert (out / name).is_file()
    quality = pd.read_csv(out / "atom_quality.csv")
    assert len(quality) == result.atoms.frame.nunique() and (quality.bonded > 0.5).all()
    assert "How far the atoms can be trusted" in (out / "report.html").read_text()
    for kind in ("atom", "hollow"):
        for name in ("windows.npy", "windows.parquet", "latents.parquet", "maps.npz",
                     "model/config.json", "model/weights.safetensors"):
            assert (out / kind / name).is_file(), f"{kind}/{name}"
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["epochs"] == 2 and record["pipeline"] == "stem"
    assert record["truth"].endswith("sim.npz")
    for figure in record["figures"]:
        assert (out / figure).stat().st_size > 10_000
    windows = np.load(out / "atom" / "windows.npy", mmap_mode="r")
    assert windows.dtype == np.float32 and windows.shape[1:] == (WINDOW_PX, WINDOW_PX)


def test_tables_link_windows_to_atoms_and_rings(stem_run):
    out, _ = stem_run
    saved = StemRun.read(out)
    atoms, rings = saved.atoms, saved.rings
    assert {"frame", "y", "x", "species", "score", "coordination", "n5", "n6", "n7",
            "n8"} <= set(atoms.columns)
    atom = saved.kinds["atom"].latents
    assert {"atom", "kind", "angle", "z1", "z2", "map_n6", "map_structure"} <= set(atom.columns)
    assert (atom.kind == "atom").all()
    # Each window sits on its atom.
    assert np.allclose(atom[["y", "x"]].to_numpy(), atoms.loc[atom.atom, ["y", "x"]].to_numpy())
    # Every Si is kept, C are sampled.
    si = atoms[atoms.species == "Si"]
    assert set(atom[atom.species == "Si"].atom) <= set(si.index)
    assert (atom[atom.species == "C"].groupby("frame").size() <= 40).all()
    hollow = saved.kinds["hollow"].latents
    assert np.allclose(hollow[["y", "x"]].to_numpy(), rings.loc[hollow.ring, ["y", "x"]].to_numpy())
    assert (hollow["size"].to_numpy() == rings.loc[hollow.ring, "size"].to_numpy()).all()
    space = saved.kinds["atom"].map
    assert space.counts.shape == (24, 24, 4) and space.kind == "atom"


def test_bond_frames_make_the_windows_of_one_structure_alike(stem_run):
    """Graphene's two sublattices, turned into their bond frames, give one window: the
    6-6-6 windows spread far less about their mean than when cut as the image lies."""
    from latentpath.pipeline.stem import cut_kind_windows, window_points

    out, _ = stem_run
    saved = StemRun.read(out)
    atoms = saved.atoms
    assert {"bond_turn_rad", "bond_mirror"} <= set(atoms.columns)
    source = np.load(out / "window_images.npy")
    every = {**TINY, "atoms_per_frame": None}
    points = window_points(atoms, saved.rings, "atom", StemConfig(**every))
    points = points[(atoms.loc[points.atom, ["n5", "n6", "n7", "n8"]].to_numpy()
                     == [0, 3, 0, 0]).all(1)]
    spread = {}
    for orient in (True, False):
        windows, table = cut_kind_windows(
            source, saved.pixel_size_A * 192 / source.shape[2], (3, 192, 192),
            points, StemConfig(**every, orient_windows=orient), None)
        assert len(table) >= 10
        spread[orient] = float(((windows - windows.mean(0)) ** 2).mean())
    assert spread[True] < 0.5 * spread[False]


def test_graph_counts_match_the_truth_inside_the_frame(stem_movie, stem_run):
    _, sim = stem_movie
    out, _ = stem_run
    atoms = StemRun.read(out).atoms
    assert set(atoms.frame) == {0, 1, 2}
    scores = score_chemical_space(StemRun.read(out), sim.atoms, sim.rings,
                                  pixel_size_A=sim.pixel_size_A)
    # The found atoms' graph gives the true rings around the windows' atoms.
    assert scores["atom_top1_structure"] == "6-6-6"
    assert scores["atom_common3_graph_accuracy"] >= 0.9
    for key in ("atom_common3_map_accuracy", "atom_top2_map_accuracy", "hollow_knn_accuracy",
                "hollow_map_accuracy"):
        assert 0 <= scores[key] <= 1


def test_true_labels_name_the_atoms_at_a_rim_only_when_asked(stem_movie, stem_run):
    _, sim = stem_movie
    out, _ = stem_run
    saved = StemRun.read(out)
    inside = true_window_labels(saved, sim.atoms, sim.rings, "atom",
                                pixel_size_A=sim.pixel_size_A)
    every = true_window_labels(saved, sim.atoms, sim.rings, "atom",
                               pixel_size_A=sim.pixel_size_A, edges=True)
    three = inside.notna()
    assert three.any() and every[three].equals(inside[three])
    rims = every[~three].dropna()
    assert all(0 < len(label.split("-")) < 3 for label in rims)


def test_atoms_are_tracked_with_states_and_latents(stem_movie, stem_run):
    _, sim = stem_movie
    out, _ = stem_run
    saved = StemRun.read(out)
    tracks, atoms = saved.tracks, saved.atoms
    assert set(tracks.atom) == set(atoms.index)
    assert np.allclose(tracks[["y", "x"]].to_numpy(), atoms.loc[tracks.atom, ["y", "x"]].to_numpy())
    assert {"track", "gap_before", "state", "window_inside", "z1", "z2", "angle",
            "map_structure"} <= set(tracks.columns)
    with np.load(out / "atom" / "track_windows.npz") as data:
        windows = data["windows"]
    assert windows.shape == (len(tracks), WINDOW_PX, WINDOW_PX)
    # every row has a window to look at; latents only where it lies inside the frame
    assert np.isfinite(windows).all()
    assert (tracks.window_inside == tracks.z1.notna()).all()
    assert tracks.window_inside.any() and not tracks.window_inside.all()
    assert list(saved.transitions.columns) == ["track", "frame", "from_state", "to_state",
                                                  "frames_since", "y", "x"]
    assert list(saved.drift.frame) == [0, 1, 2]
    scores = score_tracks(tracks, sim.atoms, pixel_size_A=sim.pixel_size_A,
                          frame_shape=sim.movie.shape[1:], species=("C", "Si"))
    # the atom finder misses atoms near this small movie's edges; what the tracking
    # adds is identity switches, few on three frames of a sheet being amorphised
    assert scores["tracks_false_positives"] == 0
    assert scores["tracks_id_switches"] <= 0.05 * scores["tracks_found_atom_frames"]
    record = json.loads((out / "config.json").read_text())
    assert {"figures/track_paths.png", "figures/track_latents.png",
            "figures/transitions.png"} <= set(record["figures"])


def test_a_movie_without_the_tracked_species_has_no_tracks(stem_run):
    out, _ = stem_run
    atoms = StemRun.read(out).atoms
    tracks, drift = track_atoms(atoms, (192, 192), 0.1, StemConfig())
    assert len(tracks) == 0 and {"track", "state", "gap_before"} <= set(tracks.columns)
    assert len(drift) == 3


def test_graph_of_a_frame_without_atoms_is_empty():
    import pandas as pd

    atoms = pd.DataFrame({"frame": [0, 0], "y": [1.0, 30.0], "x": [1.0, 30.0],
                          "species": ["C", "C"]})
    with_counts, rings = frame_graphs(atoms, pixel_size_A=0.1)
    assert len(rings) == 0 and (with_counts.coordination == 0).all()


def test_runs_are_never_overwritten_silently(stem_movie, stem_run):
    path, _ = stem_movie
    out, _ = stem_run
    with pytest.raises(FileExistsError):
        run_stem(path, out, StemConfig(**TINY), progress=False)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown STEM setting"):
        StemConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="window_A"):
        StemConfig(window_A=2.0)
    with pytest.raises(ValueError, match="latent_dim"):
        StemConfig(latent_dim=1)
    with pytest.raises(ValueError, match="track_memory"):
        StemConfig(track_memory=-1)
    with pytest.raises(ValueError, match="compile must be"):
        StemConfig.from_dict({"compile": "yes"})
    assert StemConfig(track_species="C").track_species == ("C",)
    assert StemConfig.from_dict({"track_species": ["Si", "C"]}).track_species == ("Si", "C")


def test_atom_draws_keep_the_model_whose_map_names_the_graph_best(stem_movie, tmp_path,
                                                                     monkeypatch):
    from latentpath.discovery import graph_labels
    from latentpath.pipeline.stem import draw_agreement
    from latentpath.rvae import load_rvae

    path, _ = stem_movie
    config = StemConfig(**TINY, track_species=None, atom_draws=2)
    run = run_stem(path, tmp_path / "run", config, progress=False)
    atom = tmp_path / "run" / "atom"
    choice = json.loads((atom / "draws" / "choice.json").read_text())
    assert choice["seeds"] == [config.seed, config.seed + 1]
    scores = choice["weakest_agreement"]
    assert len(scores) == 2 and all(0 <= a <= 1 for a in scores)
    assert choice["kept"] == int(np.argmax(scores))
    kept = atom / "draws" / str(choice["kept"])
    assert (atom / "model" / "weights.safetensors").read_bytes() == \
        (kept / "weights.safetensors").read_bytes()
    assert not (tmp_path / "run" / "hollow" / "draws").exists()
    # the score is the kept model's own: its map at the run's settings, against the graph
    windows = np.load(atom / "windows.npy")
    labels = graph_labels(run.kinds["atom"].latents, run.atoms, run.rings, "atom")
    assert draw_agreement(load_rvae(kept), windows, labels.to_numpy(object),
                          config) == pytest.approx(scores[choice["kept"]])
    # resumed: nothing is trained again
    again = run_stem(path, tmp_path / "run", config, progress=False)
    assert "atom model" in again.reused
    # a map read another way is read again, the models kept
    monkeypatch.setattr(latentpath.latent, "DECODED_BOND_HIGH", 1.2)
    again = run_stem(path, tmp_path / "run", config, progress=False)
    assert "atom model" in again.reused and "atom maps" not in again.reused
    with pytest.raises(ValueError, match="atom_draws"):
        StemConfig(atom_draws=0)
    assert config.for_kind("hollow").atom_draws == 1
    assert config.for_kind("atom").atom_draws == 2


def test_balance_power_per_window_kind():
    assert StemConfig().balance_power == {"atom": 0.5, "hollow": 1.0}
    assert StemConfig(balance_power=0).balance_power == {"atom": 0.0, "hollow": 0.0}
    assert StemConfig.from_dict({"balance_power": {"hollow": 2}}).balance_power == \
        {"atom": 0.5, "hollow": 2.0}
    for bad, message in (({"edge": 1}, "no window kind"), (-1, "atom windows must be 0"),
                         ({"hollow": float("nan")}, "hollow windows must be 0"),
                         ({"atom": True}, "atom windows")):
        with pytest.raises(ValueError, match=message):
            StemConfig(balance_power=bad)


def test_evaluate_command_scores_a_run(stem_run, capsys):
    out, _ = stem_run
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "atom_common3_map_accuracy" in printed and "hollow_knn_accuracy" in printed
    assert "tracks_mota" in printed and "ring_recall" in printed
    assert "targets: " in printed and "atoms.f1 = " in printed
    assert "against the truth: hollow-site windows" in printed
    assert "discovery_truth.hollow_latent" in printed
    assert "report with the scores" in printed
    scores = json.loads((out / "scores.json").read_text())
    assert scores["atoms"]["f1"] > 0.9 and scores["rings"]["ring_size_accuracy"] > 0.9
    assert scores["targets"]["atoms.f1"]["met"] is True
    assert "hollow_knn_accuracy" in (out / "report.html").read_text()


def test_evaluate_refuses_the_truth_of_another_movie(stem_run, tmp_path, capsys):
    out, _ = stem_run
    other = write_synth_stem(synth_stem_movie(3, 192, seed=4), tmp_path / "other.npz")
    scores = (out / "scores.json").read_bytes() if (out / "scores.json").exists() else None
    assert main(["evaluate", str(out), "--truth", str(other)]) == 2
    assert "is the truth of another movie" in capsys.readouterr().err
    assert ((out / "scores.json").read_bytes() if scores is not None else None) == scores


def test_a_run_records_what_it_doubts(stem_movie, tmp_path, monkeypatch, capsys):
    import warnings

    from latentpath.pipeline import stem as stem_pipeline

    found = stem_pipeline.atoms_and_probabilities

    def doubting(*args, **kwargs):
        # as latentpath's atom finder warns; a library's warning is shown, not recorded
        warnings.warn_explicit("the pixel size given disagrees with the lattice",
                               UserWarning, stem_pipeline.__file__, 1)
        warnings.warn("a library's own", UserWarning, stacklevel=1)
        return found(*args, **kwargs)

    monkeypatch.setattr(stem_pipeline, "atoms_and_probabilities", doubting)
    path, _ = stem_movie
    with pytest.warns(UserWarning, match="disagrees with the lattice"):
        result = run_stem(path, tmp_path / "run", StemConfig(**TINY, track_species=None),
                          progress=False)
    assert result.warnings == ["the pixel size given disagrees with the lattice"]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["warnings"] == result.warnings
    assert "Warning: the pixel size given" in (tmp_path / "run" / "report.html").read_text()
    # a resumed run keeps the doubts of the steps it reuses
    monkeypatch.setattr(stem_pipeline, "atoms_and_probabilities", found)
    again = run_stem(path, tmp_path / "run", StemConfig(**TINY, track_species=None),
                     progress=False)
    assert "atoms" in again.reused and again.warnings == result.warnings


def test_evaluate_and_report_replace_only_what_latentpath_wrote(stem_run, capsys):
    out, _ = stem_run
    assert main(["evaluate", str(out)]) == 0
    assert main(["evaluate", str(out)]) == 0  # its own scores and report: replaced
    for name, argv in (("scores.json", ["evaluate", str(out)]),
                       ("report.html", ["report", str(out)])):
        edited = (out / name).read_text() + " "
        (out / name).write_text(edited)  # a user's edit
        capsys.readouterr()
        assert main(argv) == 2
        assert f"{name} was not written by latentpath, or was edited" in \
            capsys.readouterr().err
        assert (out / name).read_text() == edited
        assert main([*argv, "--overwrite"]) == 0
        assert main(argv) == 0


def test_every_run_scores_its_latent_spaces_against_its_bond_graph(stem_run):
    out, result = stem_run
    for kind in ("atom", "hollow"):
        score = result.kinds[kind].discovery
        assert score.kind == kind and score.reference == "graph"
        assert (out / kind / "discovery.json").is_file()
        # the tiny movie has too few windows of each structure to score the plane
        assert score.n_windows > 20 and ("6" if kind == "hollow" else "6-6-6") in \
            score.label_counts
        assert set(score.map_agreement) == set(score.label_counts)
        assert StemRun.read(out).kinds[kind].discovery == score
    page = (out / "report.html").read_text()
    assert "Does the latent space separate the structures?" in page
    assert "2-D PCA of the same windows" in page


def test_windows_are_drawn_balanced_by_their_structure(stem_run):
    out, _ = stem_run
    for kind in ("atom", "hollow"):
        record = json.loads((out / kind / "model" / "config.json").read_text())
        assert record["training"]["sample_weights"] is not None, kind
        assert record["training"]["stop_reason"] == "epochs"


def test_evaluate_without_truth_scores_against_the_bond_graph(stem_run, tmp_path, capsys):
    out, _ = stem_run
    scores = tmp_path / "graph-scores.json"
    copy = tmp_path / "record.json"
    record = json.loads((out / "config.json").read_text())
    copy.write_text(json.dumps({**record, "truth": None}))
    (out / "config.json").rename(out / "config.saved")
    try:
        (out / "config.json").write_text(copy.read_text())
        assert main(["evaluate", str(out), "--out", str(scores)]) == 0
    finally:
        (out / "config.saved").replace(out / "config.json")
    printed = capsys.readouterr().out
    assert "no synthetic truth" in printed and "against the graph: atom-centred" in printed
    found = json.loads(scores.read_text())
    assert found["truth"] is None
    assert {"atom_latent", "atom_pca2", "hollow_latent"} <= set(found["discovery_graph"])


def test_stem_command_and_its_errors(stem_movie, tmp_path, capsys):
    path, _ = stem_movie
    run_dir = tmp_path / "cli-run"
    args = ["stem", str(path), "--out", str(run_dir), "--epochs", "1", "--hidden", "16",
            "--layers", "1", "--map-points", "8", "--no-compile", "--c-per-frame", "20",
            "--hollow-per-frame", "20", "--device", "cpu", "--track", "all"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "chemical-space map" in printed
    assert "changes of chemical state" in printed
    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["track_species"] is None
    assert record["config"]["orient_windows"] is True
    assert record["movie"] == str(path.resolve())  # the path, so that it can be replayed
    # the same command again reuses every step; other settings are another run
    assert main(args) == 0
    assert capsys.readouterr().out.count("reused") == 9
    assert main([*args, "--epochs", "2"]) == 2
    assert "holds a different run (config.epochs: 1 -> 2)" in capsys.readouterr().err
    assert main([*args, "--no-orient"]) == 2
    assert "config.orient_windows: True -> False" in capsys.readouterr().err
    assert main(["stem", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    # the record repeats the run, the Python API taking it as well as the command line
    assert main(["stem", "--config", str(run_dir / "config.json"),
                 "--out", str(tmp_path / "again")]) == 0
    again = StemRun.read(tmp_path / "again")
    first = StemRun.read(run_dir)
    assert again.settings == first.settings
    assert again.atoms.equals(first.atoms)
    assert np.allclose(again.kinds["atom"].latents[["z1", "z2"]],
                       first.kinds["atom"].latents[["z1", "z2"]])
    import latentpath

    api = latentpath.run_stem(path, tmp_path / "api", run_dir / "config.json", progress=False)
    assert np.allclose(api.kinds["hollow"].latents[["z1", "z2"]],
                       first.kinds["hollow"].latents[["z1", "z2"]])


def test_rvae_size_follows_the_device_unless_set():
    cpu = StemConfig().for_device("cpu")
    # runs train to convergence: at most 4,000 steps on a CPU for STEM, 700 for PFM
    assert (cpu.hidden, cpu.layers, cpu.max_steps, cpu.patience) == (128, 3, 4000, 10)
    # a single image's short epochs do not end its training by patience before 2,000
    # steps, on either device; PFM runs have no floor
    assert cpu.min_steps == 2000 and StemConfig.rvae_sizes["cuda"]["min_steps"] == 2000
    assert PfmConfig().for_device("cpu").min_steps is None
    assert StemConfig(min_steps=1).for_device("cpu").min_steps == 1
    # a hollow-site ceiling of its own, below max_steps only
    assert (cpu.for_kind("atom").max_steps, cpu.for_kind("hollow").max_steps) == (4000, 4000)
    fast = StemConfig(hollow_max_steps=3000).for_device("cpu")
    assert (fast.for_kind("atom").max_steps, fast.for_kind("hollow").max_steps) == (4000, 3000)
    assert StemConfig(max_steps=2000, hollow_max_steps=3000).for_kind("hollow").max_steps \
        == 2000
    assert StemConfig().for_kind("hollow").max_steps is None
    with pytest.raises(ValueError, match="no window kind"):
        cpu.for_kind("edge")
    with pytest.raises(ValueError, match="hollow_max_steps"):
        StemConfig(hollow_max_steps=0)
    assert (cpu.cooldown, PfmConfig().cooldown) == (0.3, 0.3)
    gpu = StemConfig().for_device("cpu").__class__.rvae_sizes["cuda"]
    assert (gpu["hidden"], gpu["layers"], gpu["epochs"], gpu["patience"]) == (256, 4, 300, 10)
    pfm = PfmConfig().for_device("cpu")
    assert (pfm.hidden, pfm.layers, pfm.max_steps, pfm.patience) == (
        RVAE_SIZES["cpu"]["hidden"], RVAE_SIZES["cpu"]["layers"], 700, 10)
    chosen = StemConfig(hidden=64, epochs=5).for_device("cpu")
    assert (chosen.hidden, chosen.layers, chosen.epochs) == (64, 3, 5)
    with pytest.raises(ValueError, match="hidden"):
        StemConfig(hidden=0)
