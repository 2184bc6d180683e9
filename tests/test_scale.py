"""Frame-parallel atom finding over several movies on a local Dask cluster, against the
one-process tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentpath.atoms import find_atoms
from latentpath.io import Movie, save_zarr
from latentpath.pipeline.stem import frame_graphs
from latentpath.scale import atoms_many
from latentpath.synth import synth_stem_movie, write_synth_stem


def test_many_movies_in_frame_tasks_give_the_one_process_tables(tmp_path):
    sim = synth_stem_movie(5, 160, seed=2, final_disorder=0.3)
    npz = write_synth_stem(sim, tmp_path / "sim.npz")
    store = save_zarr(Movie(sim.movie, pixel_size=sim.pixel_size_A, pixel_unit="A"),
                      tmp_path / "other.zarr", chunk_frames=2)
    summary = atoms_many([npz, store], tmp_path / "out", workers=2, frames_per_task=2,
                         progress=False)
    assert summary.frames.tolist() == [5, 5] and (summary.atoms > 200).all()
    whole = find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, device="cpu")
    atoms, rings = frame_graphs(whole, sim.pixel_size_A)
    for name in ("sim", "other"):
        found = pd.read_parquet(tmp_path / "out" / name / "atoms.parquet")
        pd.testing.assert_frame_equal(found, atoms.reset_index(drop=True), check_dtype=False)
        found_rings = pd.read_parquet(tmp_path / "out" / name / "rings.parquet")
        assert found_rings["size"].tolist() == rings["size"].tolist()
        assert [list(m) for m in found_rings.members] == [list(m) for m in rings.members]
    # the npz was written as a Zarr store; the Zarr store was streamed where it was
    assert (tmp_path / "out" / "sim" / "movie.zarr").is_dir()
    assert not (tmp_path / "out" / "other" / "movie.zarr").exists()
    with pytest.raises(FileExistsError):
        atoms_many([npz], tmp_path / "out", progress=False)


def test_bad_requests_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        atoms_many([], tmp_path)
    with pytest.raises(ValueError, match="workers"):
        atoms_many([tmp_path / "x.npy"], tmp_path, workers=0)
    np.save(tmp_path / "flat.npy", np.zeros((3, 64, 64), np.float32))
    # what fails on a worker comes back naming the movie and its frames
    with pytest.raises(ValueError, match=r"flat/movie\.zarr, frames 0-2.*constant"):
        atoms_many([tmp_path / "flat.npy"], tmp_path / "out", pixel_size_A=0.1,
                   progress=False)


def test_command_line(tmp_path, capsys):
    from latentpath.cli import main

    sim = synth_stem_movie(2, 128, seed=1)
    npz = write_synth_stem(sim, tmp_path / "a.npz")
    assert main(["atoms-many", str(npz), "--out", str(tmp_path / "out"), "--workers", "2",
                 "--frames-per-task", "1"]) == 0
    assert "a.npz: 2 frames" in capsys.readouterr().out
    assert main(["atoms-many", str(npz), "--out", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
