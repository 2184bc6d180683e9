"""Shared fixtures: ring windows of known size and a small skip-rVAE trained on them."""

from __future__ import annotations

import pytest

from latentpath.rvae import fit_rvae
from latentpath.synth.motifs import synth_motif_windows

SMALL = {"hidden": 32, "layers": 2, "batch_size": 32, "lr": 3e-3, "device": "cpu",
         "precision": "float32", "compile": False, "progress": False}
#: 16 px windows of 5 A: 4.5 px per C-C bond.
MOTIFS = {"window_px": 16, "pixel_size_A": 0.3125, "seed": 0}


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
