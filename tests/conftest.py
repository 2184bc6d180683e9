"""Shared fixtures: ring windows of known size and a small skip-rVAE trained on them; a
small synthetic STEM movie and a tiny run of the STEM pipeline on it."""

from __future__ import annotations

import pytest

from latentpath.pipeline import StemConfig, run_stem
from latentpath.rvae import fit_rvae
from latentpath.synth import synth_stem_movie, write_synth_stem
from latentpath.synth.motifs import synth_motif_windows

SMALL = {"hidden": 32, "layers": 2, "batch_size": 32, "lr": 3e-3, "device": "cpu",
         "precision": "float32", "compile": False, "progress": False}
#: 16 px windows of 5 A: 4.5 px per C-C bond.
MOTIFS = {"window_px": 16, "pixel_size_A": 0.3125, "seed": 0}
#: a STEM run in seconds: a tiny model for 2 epochs, a few windows per frame
STEM_TINY = {"epochs": 2, "hidden": 32, "layers": 2, "map_points": 24, "manifold_points": 4,
             "compile": False, "precision": "float32", "device": "cpu",
             "atoms_per_frame": {"C": 40, "Si": None}, "hollow_per_frame": 30}


@pytest.fixture(scope="session")
def rings():
    return synth_motif_windows(1200, **MOTIFS)


@pytest.fixture(scope="session")
def trained(rings, tmp_path_factory):
    windows, _ = rings
    out = tmp_path_factory.mktemp("rvae") / "model"
    history = fit_rvae(windows, out, epochs=40, seed=0, **{**SMALL, "hidden": 64,
                                                           "layers": 3, "batch_size": 50})
    return out, history


@pytest.fixture(scope="session")
def stem_movie(tmp_path_factory):
    """A 3-frame 192 x 192 synthetic STEM movie: its path and the simulation."""
    path = tmp_path_factory.mktemp("movie") / "sim.npz"
    sim = synth_stem_movie(3, 192, seed=3, final_disorder=0.3)
    write_synth_stem(sim, path)
    return path, sim


@pytest.fixture(scope="session")
def stem_run(stem_movie, tmp_path_factory):
    """A tiny STEM run of ``stem_movie`` with its truth: its folder and the run."""
    path, _ = stem_movie
    out = tmp_path_factory.mktemp("run") / "run"
    # the small movie has no Si: follow every atom instead
    result = run_stem(path, out, StemConfig(**STEM_TINY, track_species=None), truth=path,
                      progress=False)
    return out, result
