"""Frame-parallel atom finding over several movies on a local Dask cluster, against the
one-process tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from latentpath.atoms import find_atoms, save_model, self_train
from latentpath.atoms.quality import unusual_warning
from latentpath.io import Movie, save_zarr
from latentpath.pipeline import StemConfig, run_stem
from latentpath.pipeline.stem import frame_graphs
from latentpath.pipeline.steps import RunSteps
from latentpath.scale import DOUBTS, KIND_CENTRES, atoms_many
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
    # the same call again reuses every task; other settings are refused, naming them
    again = atoms_many([npz, store], tmp_path / "out", workers=2, frames_per_task=2,
                       progress=False)
    assert again.tasks_reused.tolist() == [3, 3]
    with pytest.raises(FileExistsError, match=r"config\.pixel_size_A: None -> 0\.2"):
        atoms_many([npz], tmp_path / "out", pixel_size_A=0.2, progress=False)
    # other tasks give the same tables, and the old tasks' parts go
    atoms_many([npz], tmp_path / "out", frames_per_task=3, progress=False)
    found = pd.read_parquet(tmp_path / "out" / "sim" / "atoms.parquet")
    pd.testing.assert_frame_equal(found, atoms.reset_index(drop=True), check_dtype=False)
    assert sorted(p.name for p in (tmp_path / "out" / "sim" / "parts").iterdir()) == [
        "atoms-0000000.parquet", "atoms-0000003.parquet",
        "quality-0000000.parquet", "quality-0000003.parquet",
        "rings-0000000.parquet", "rings-0000003.parquet"]


def test_a_killed_call_resumes_from_its_finished_tasks(tmp_path, monkeypatch):
    sim = synth_stem_movie(4, 128, seed=5)
    npz = write_synth_stem(sim, tmp_path / "sim.npz")
    reference = atoms_many([npz], tmp_path / "straight", frames_per_task=1, progress=False)
    finish, stamped = RunSteps.finish, []

    def killed_after_two_tasks(self, step, *args, **kwargs):
        if step.startswith("frames"):
            if len(stamped) == 2:
                raise KeyboardInterrupt
            stamped.append(step)
        finish(self, step, *args, **kwargs)

    monkeypatch.setattr(RunSteps, "finish", killed_after_two_tasks)
    with pytest.raises(KeyboardInterrupt):
        atoms_many([npz], tmp_path / "out", frames_per_task=1, progress=False)
    monkeypatch.setattr(RunSteps, "finish", finish)
    resumed = atoms_many([npz], tmp_path / "out", frames_per_task=1, progress=False)
    assert resumed.tasks_reused.tolist() == [2]
    assert resumed.atoms.tolist() == reference.atoms.tolist()
    for name in ("atoms", "rings"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out/sim" / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / f"straight/sim/{name}.parquet"))


def test_windows_encoded_on_the_cluster_are_the_runs_own(tmp_path, capsys):
    from latentpath.cli import main

    sim = synth_stem_movie(3, 192, seed=3, final_disorder=0.3)
    npz = write_synth_stem(sim, tmp_path / "sim.npz")
    config = StemConfig(epochs=2, hidden=32, layers=2, map_points=24, manifold_points=4,
                        compile=False, precision="float32", device="cpu",
                        atoms_per_frame={"C": 40}, hollow_per_frame=30, track_species=None)
    run = run_stem(npz, tmp_path / "run", config, progress=False)
    summary = atoms_many([npz], tmp_path / "out", run=run, workers=2, frames_per_task=2,
                         progress=False)
    folder = tmp_path / "out" / "sim"
    # every atom and every ring with a whole window in its frame is encoded
    for kind, (centres, column) in KIND_CENTRES.items():
        latents = pd.read_parquet(folder / f"latents_{kind}.parquet")
        assert summary[f"windows_{kind}"].iloc[0] == len(latents)
        # the run drew 40 C a frame; hollow sites were all drawn (30 a frame is more)
        assert len(latents) > (3 * len(run.kinds[kind].latents) // 2 if kind == "atom" else
                               len(run.kinds[kind].latents) - 1)
        assert latents[column].is_unique
        centre = pd.read_parquet(folder / f"{centres}.parquet")
        np.testing.assert_allclose(latents[["y", "x"]], centre.loc[latents[column], ["y", "x"]])
        # the run's sampled windows are among them, with the same latents and classes
        own = run.kinds[kind].latents
        both = own.merge(latents, on=column, suffixes=("", "_many"))
        assert len(both) == len(own)
        for name in ("angle", "z1", "z2"):
            np.testing.assert_allclose(both[f"{name}_many"], both[name], atol=1e-5)
        assert (both["map_structure_many"] == both["map_structure"]).all()
    # a run's self-trained segmentation model finds the atoms of the other movies too
    tuned, _ = self_train(sim.movie, n_frames=1, pixel_size_A=sim.pixel_size_A, steps=3,
                          batch_size=2, device="cpu")
    save_model(tuned, tmp_path / "run" / "segmenter")
    before = pd.read_parquet(folder / "atoms.parquet")
    with pytest.raises(FileExistsError, match=r"config\.run"):
        atoms_many([npz], tmp_path / "out", run=tmp_path / "run", progress=False)
    atoms_many([npz], tmp_path / "out", run=tmp_path / "run", overwrite=True, progress=False)
    expected = find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, model=tuned, device="cpu")
    found = pd.read_parquet(folder / "atoms.parquet")
    pd.testing.assert_frame_equal(found[expected.columns], expected, check_dtype=False)
    assert not found.equals(before)

    # the command line prints what it encoded; the same call again reuses the task
    assert main(["atoms-many", str(npz), "--out", str(tmp_path / "out"), "--run",
                 str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "atom windows encoded" in out and "hollow windows encoded" in out
    assert "1 task(s) reused" in out


def test_what_the_atom_finder_doubts_is_said_and_judged_on_the_whole_movie(tmp_path):
    sim = synth_stem_movie(6, 160, seed=3, final_disorder=0.2)
    frames = sim.movie.copy()
    # half of one frame blank: in tasks of two frames no task can tell it from the rest
    frames[4, :, 80:] = np.median(frames[4][frames[4] < np.percentile(frames[4], 20)])
    np.save(tmp_path / "m.npy", frames)
    with pytest.warns(UserWarning, match="m.npy: 1 frame.s. unlike the rest of the movie: "
                      "frame 4: .*empty_area"):
        summary = atoms_many([tmp_path / "m.npy"], tmp_path / "out",
                             pixel_size_A=sim.pixel_size_A, frames_per_task=2, progress=False)
    assert summary.doubts.tolist() == [1]
    whole = find_atoms(frames, pixel_size_A=sim.pixel_size_A, device="cpu")
    doubts = json.loads((tmp_path / "out" / "m" / DOUBTS).read_text())
    assert doubts == [unusual_warning(whole.attrs["unusual_frames"])]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "m" / "quality.parquet"),
                                  pd.DataFrame(whole.attrs["quality"]).astype(float),
                                  check_dtype=False)
    # a wrong pixel size, said for the movie and by every task, each named with its
    # frames; past the first three, the rest are counted
    with pytest.warns(UserWarning, match=r"m.npy: 1 more doubt\(s\) in "):
        summary = atoms_many([tmp_path / "m.npy"], tmp_path / "wrong",
                             pixel_size_A=2 * sim.pixel_size_A, frames_per_task=3,
                             progress=False)
    doubts = json.loads((tmp_path / "wrong" / "m" / DOUBTS).read_text())
    assert summary.doubts.tolist() == [len(doubts)]
    assert [d[:11] for d in doubts if "disagrees" in d] == [
        "the pixel s", "frames 0-2:", "frames 3-5:"]
    assert doubts[3].startswith("frames 3-5: the image looks outside")
    # a resumed call says them again, from the tasks' stamps
    with pytest.warns(UserWarning, match="m.npy: frames 0-2: the pixel size given"):
        again = atoms_many([tmp_path / "m.npy"], tmp_path / "wrong",
                           pixel_size_A=2 * sim.pixel_size_A, frames_per_task=3,
                           progress=False)
    assert again.tasks_reused.tolist() == [2] and again.doubts.tolist() == [len(doubts)]
    # a movie without atoms is said to be one, and its measures of them are missing
    noise = np.random.default_rng(0).poisson(2.0, (6, 96, 96)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    with pytest.warns(UserWarning, match="noise.npy: frames 0-2: no atoms found"):
        summary = atoms_many([tmp_path / "noise.npy"], tmp_path / "noise", pixel_size_A=0.1,
                             frames_per_task=3, progress=False)
    assert summary.atoms.tolist() == [0]
    quality = pd.read_parquet(tmp_path / "noise" / "noise" / "quality.parquet")
    assert quality.frame.tolist() == list(range(6)) and quality.bond_A.isna().all()


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
    assert main(["atoms-many", str(npz), "--out", str(tmp_path / "out"), "--frames-per-task",
                 "1"]) == 0
    assert "2 task(s) reused" in capsys.readouterr().out
    assert main(["atoms-many", str(npz), "--out", str(tmp_path / "out"), "--pixel-size",
                 "0.2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="a.npz: frames 0-1: the pixel size given"):
        assert main(["atoms-many", str(npz), "--out", str(tmp_path / "wrong"),
                     "--pixel-size", "0.2"]) == 0
    assert f"doubt(s) about its atoms, in {tmp_path / 'wrong' / 'a'}/{DOUBTS}" \
        in capsys.readouterr().out
