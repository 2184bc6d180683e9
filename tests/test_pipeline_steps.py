"""Resumable runs: step stamps, run identities, and runs killed at many moments that
complete on a second call with the results of an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from latentpath.pipeline import PfmConfig, PfmRun, StemConfig, StemRun
from latentpath.pipeline import pfm as pfm_pipeline
from latentpath.pipeline import stem as stem_pipeline
from latentpath.pipeline.steps import SPEED_SETTINGS, RunSteps, content_key, run_identity
from latentpath.synth import synth_pfm_movie, synth_stem_movie, write_synth_stem
from latentpath.synth.pfm import write_synth_pfm

STEM_TINY = {"epochs": 3, "hidden": 32, "layers": 2, "map_points": 16, "manifold_points": 4,
             "compile": False, "precision": "float32", "device": "cpu",
             "atoms_per_frame": {"C": 30, "Si": None}, "hollow_per_frame": 25,
             "track_species": None}
PFM_TINY = {"epochs": 3, "hidden": 16, "layers": 2, "map_points": 8, "walls_per_frame": 20,
            "compile": False, "precision": "float32", "device": "cpu"}


def identity(**changes):
    return {"pipeline": "stem", "version": "1", "movie_key": "abc", "truth": None,
            "config": {"epochs": 3, "seed": 0, **changes}}


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path):
    movie = tmp_path / "movie.npy"
    movie.write_bytes(b"the user's movie")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        RunSteps.open(movie, identity(), outputs=[], inputs={"movie": movie},
                      progress=False)
    assert movie.read_bytes() == b"the user's movie"


def test_a_finished_step_is_reused_only_with_its_key_and_its_files(tmp_path):
    steps = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    assert not steps.reusable("atoms", "k1")
    assert not steps.begin("atoms", "k1")
    (tmp_path / "a.txt").write_text("atoms")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"123")
    steps.finish("atoms", "k1", [tmp_path / "a.txt", tmp_path / "model"], values={"px": 0.1})
    assert steps.reusable("atoms", "k1") and steps.values("atoms") == {"px": 0.1}
    assert not steps.reusable("atoms", "k2")  # other inputs or settings
    (tmp_path / "model" / "w.bin").write_bytes(b"12")  # a damaged output
    assert not steps.reusable("atoms", "k1")
    (tmp_path / "model" / "w.bin").unlink()
    assert not steps.reusable("atoms", "k1")
    # an unfinished attempt with the same key may be continued, never one with another
    assert not steps.begin("model", "m1")
    assert steps.begin("model", "m1")
    assert not steps.begin("model", "m2")
    assert steps.reused == ["atoms"]


def test_the_step_runner_computes_a_step_once_for_its_key(tmp_path):
    from latentpath.pipeline.steps import StepOutput

    calls = []

    def compute():
        calls.append(1)
        (tmp_path / "t.csv").write_text("x")
        return StepOutput([tmp_path / "t.csv"], values={"n": len(calls)}, note="one table")

    steps = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    assert steps.run("tables", "k1", compute) and steps.values("tables") == {"n": 1}
    assert not steps.run("tables", "k1", compute) and len(calls) == 1
    assert steps.run("tables", "k2", compute) and steps.values("tables") == {"n": 2}

    def broken():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        steps.run("broken", "k", broken)
    # left unfinished: not reusable, and the next attempt may continue what it saved
    assert not steps.reusable("broken", "k") and steps.begin("broken", "k")


def test_steps_run_side_by_side_count_once_in_the_total(tmp_path):
    steps = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    for step, seconds, alongside in (("atoms", 2.0, []), ("atom model", 50.0, ["hollow model"]),
                                     ("hollow model", 40.0, ["atom model"])):
        steps.begin(step, "k")
        steps.finish(step, "k", [], seconds=seconds, alongside=alongside)
    assert steps.total_s == 52.0
    # a later run that reuses them counts them alike
    again = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    assert all(again.reusable(step, "k") for step in ("atoms", "atom model", "hollow model"))
    assert again.total_s == 52.0


def _model_jobs(tmp_path, windows_of_second):
    from latentpath.pipeline.common import ModelJob, RunSettings

    settings = RunSettings(epochs=1, hidden=8, layers=1, batch_size=16, device="cpu",
                           compile=False, precision="float32")
    windows = np.random.default_rng(0).random((40, 8, 8), dtype=np.float32)
    np.save(tmp_path / "w.npy", windows)
    jobs = []
    for kind, path in (("atom", tmp_path / "w.npy"), ("hollow", windows_of_second)):
        (tmp_path / kind).mkdir()
        jobs.append(ModelJob(f"{kind} model", "k", settings, path, tmp_path / kind))
    return jobs


def test_a_model_trained_in_a_second_process_is_the_one_trained_here(tmp_path):
    import torch

    from latentpath.pipeline.common import model_steps

    threads = torch.get_num_threads()
    outcomes = []
    for side_by_side in (True, False):
        out = tmp_path / str(side_by_side)
        out.mkdir()
        jobs = _model_jobs(out, out / "w.npy")
        steps = RunSteps.open(out, identity(), outputs=[], progress=False)
        trained = model_steps(steps, jobs, side_by_side=side_by_side, progress=False)
        # the first in this process, the second in another one (its model is on disk)
        assert trained["atom model"] is not None
        assert (trained["hollow model"] is None) == side_by_side
        assert steps.alongside["hollow model"] == (["atom model"] if side_by_side else [])
        outcomes.append([(out / kind / "model" / "weights.safetensors").read_bytes()
                         for kind in ("atom", "hollow")])
    assert torch.get_num_threads() == threads
    # the two jobs train the same windows with the same seed: the model trained in the
    # other process is the one this process would have trained on as many threads
    assert outcomes[0][0] == outcomes[0][1] and outcomes[1][0] == outcomes[1][1]


def test_a_model_failing_in_the_second_process_fails_the_run_with_its_error(tmp_path):
    from latentpath.pipeline.common import model_steps

    (tmp_path / "bad.npy").write_text("not windows")
    jobs = _model_jobs(tmp_path, tmp_path / "bad.npy")
    steps = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    with pytest.raises(RuntimeError, match=r"hollow model, trained in a second process, "
                                           r"failed: ValueError: This file contains pickled"):
        model_steps(steps, jobs, side_by_side=True, progress=False)
    assert steps.reusable("atom model", "k") and not steps.reusable("hollow model", "k")


def test_models_train_one_after_the_other_where_no_process_can_be_spawned(tmp_path):
    """A program read from standard input has no file for a spawned process to run
    again: the run trains both models here instead of waiting on a process that died."""
    script = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
              "from pathlib import Path\n"
              "from test_pipeline_steps import _model_jobs, identity\n"
              "from latentpath.pipeline.common import model_steps\n"
              "from latentpath.pipeline.steps import RunSteps\n"
              f"out = Path({str(tmp_path)!r})\n"
              "jobs = _model_jobs(out, out / 'w.npy')\n"
              "steps = RunSteps.open(out, identity(), outputs=[], progress=False)\n"
              "trained = model_steps(steps, jobs, side_by_side=True, progress=False)\n"
              "print(sorted(k for k, v in trained.items() if v is not None))\n")
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['atom model', 'hollow model']"


def test_files_a_run_did_not_write_are_the_users(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "drift.csv").write_text("a user's table")
    with pytest.raises(FileExistsError, match=r"drift\.csv was not written by a latentpath"):
        RunSteps.open(out, identity(), outputs=[out / "drift.csv"], progress=False)
    assert (out / "drift.csv").read_text() == "a user's table"
    assert not (out / ".latentpath").exists()
    (out / "drift.csv").unlink()
    # a run claims its outputs, writes them, and settles them as its own when it ends
    with RunSteps.open(out, identity(), outputs=[out / "drift.csv"],
                       folders=[out / "atom"], progress=False):
        (out / "drift.csv").write_text("the run's table")
        (out / "atom").mkdir()
        (out / "atom" / "w.bin").write_bytes(b"1")
    assert not (out / ".latentpath" / "lock").exists()
    RunSteps.open(out, identity(), outputs=[out / "drift.csv"], folders=[out / "atom"]).close()
    # a file the user then put in the run's folder, or edited, is the user's again
    (out / "atom" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        RunSteps.open(out, identity(), outputs=[out / "drift.csv"], folders=[out / "atom"])
    (out / "atom" / "notes.txt").unlink()
    time.sleep(0.01)
    (out / "drift.csv").write_text("the run's table, edited")
    with pytest.raises(FileExistsError, match=r"drift\.csv"):
        RunSteps.open(out, identity(), outputs=[out / "drift.csv"], folders=[out / "atom"])
    RunSteps.open(out, identity(), outputs=[out / "drift.csv"], folders=[out / "atom"],
                  overwrite=True).close()


def test_a_run_that_did_not_end_owns_what_it_claimed(tmp_path):
    steps = RunSteps.open(tmp_path, identity(), outputs=[tmp_path / "a.npy"],
                          folders=[tmp_path / "model"], progress=False)
    (tmp_path / "a.npy").write_bytes(b"half")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"1")
    with pytest.raises(RuntimeError), steps:
        raise RuntimeError("killed")
    # its claims stay for the resume, its lock goes
    assert not (tmp_path / ".latentpath" / "lock").exists()
    RunSteps.open(tmp_path, identity(), outputs=[tmp_path / "a.npy"],
                  folders=[tmp_path / "model"]).close()


def test_a_directory_in_use_by_a_live_run_is_refused(tmp_path):
    state = tmp_path / ".latentpath"
    state.mkdir()
    (state / "lock").write_text(str(os.getppid()))  # a live process, not this one
    with pytest.raises(FileExistsError, match=rf"in use .* \(process {os.getppid()}\)"):
        RunSteps.open(tmp_path, identity(), outputs=[])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (state / "lock").write_text(gone)  # a run that was killed: its lock is taken over
    steps = RunSteps.open(tmp_path, identity(), outputs=[])
    assert (state / "lock").read_text() == str(os.getpid())
    steps.close()
    assert not (state / "lock").exists()


def test_an_input_is_never_an_output(tmp_path):
    out = tmp_path / "run"
    (out / "atom").mkdir(parents=True)
    movie = out / "window_images.npy"
    movie.write_bytes(b"the user's movie")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"is the movie of this command and would be "
                                             r"replaced.*never replaced, even with"):
            RunSteps.open(out, identity(), outputs=[movie], inputs={"the movie": movie},
                          overwrite=overwrite)
    (out / "atom" / "m.npy").write_bytes(b"another")
    os.link(out / "atom" / "m.npy", tmp_path / "linked.npy")
    with pytest.raises(ValueError, match="lies in the output"):
        RunSteps.open(out, identity(), outputs=[], folders=[out / "atom"],
                      inputs={"the movie": tmp_path / "linked.npy"}, overwrite=True)
    assert movie.read_bytes() == b"the user's movie"
    # a run's own record may be read back to repeat the run, not once a user edited it
    record = tmp_path / "other" / "config.json"
    record.parent.mkdir()
    with RunSteps.open(record.parent, identity(), outputs=[record]):
        record.write_text("{}")
    RunSteps.open(record.parent, identity(), outputs=[record], rereadable=[record],
                  inputs={"--config": record}).close()
    time.sleep(0.01)
    record.write_text('{"epochs": 3}')
    with pytest.raises(ValueError, match="is --config of this command"):
        RunSteps.open(record.parent, identity(), outputs=[record], rereadable=[record],
                      inputs={"--config": record}, overwrite=True)


def test_a_directory_with_another_run_is_refused_naming_what_differs(tmp_path):
    steps = RunSteps.open(tmp_path, identity(), outputs=[], progress=False)
    steps.begin("atoms", "k")
    steps.finish("atoms", "k", [])
    assert RunSteps.open(tmp_path, identity(), outputs=[], progress=False).reusable("atoms", "k")
    with pytest.raises(FileExistsError, match=r"different run \(config.epochs: 3 -> 5\)"):
        RunSteps.open(tmp_path, identity(epochs=5), outputs=[], progress=False)
    with pytest.raises(FileExistsError, match="movie_key: its content"):
        RunSteps.open(tmp_path, {**identity(), "movie_key": "def"}, outputs=[])
    # replacing it keeps the steps the two runs share; not resuming drops them all
    again = RunSteps.open(tmp_path, identity(epochs=5), outputs=[], overwrite=True,
                          progress=False)
    assert again.reusable("atoms", "k")
    fresh = RunSteps.open(tmp_path, identity(epochs=5), outputs=[], resume=False)
    assert not fresh.reusable("atoms", "k")
    # files of a run without a record (an older version's, or a user's) stop it
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"config\.json"):
        RunSteps.open(other, identity(), outputs=[other / "config.json"])


def test_content_key_reads_arrays_by_content(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "d.npy", data)
    mapped = np.load(tmp_path / "d.npy", mmap_mode="r")
    assert content_key(data, 0.1) == content_key(mapped, 0.1)
    assert content_key(data, 0.1) != content_key(data, 0.2)
    assert content_key(data) != content_key(data.astype(np.float64))
    assert content_key(data) != content_key(data.reshape(3, 2, 4))


@pytest.mark.parametrize("module, config", [(stem_pipeline, StemConfig()),
                                            (pfm_pipeline, PfmConfig())])
def test_every_setting_that_changes_results_belongs_to_a_step(module, config):
    claimed = {name for names in module.STEP_SETTINGS.values() for name in names}
    fields = {f.name for f in dataclasses.fields(config)}
    assert claimed | set(SPEED_SETTINGS) == fields
    assert set(run_identity("x", "k", config, None)["config"]) == fields - set(SPEED_SETTINGS)


# --------------------------------------------------------------- runs killed at any moment

@pytest.fixture(scope="module")
def stem_movie(tmp_path_factory):
    path = tmp_path_factory.mktemp("stem") / "sim.npz"
    write_synth_stem(synth_stem_movie(3, 192, seed=3, final_disorder=0.3), path)
    return path


@pytest.fixture(scope="module")
def pfm_movie(tmp_path_factory):
    path = tmp_path_factory.mktemp("pfm") / "sim.npz"
    write_synth_pfm(synth_pfm_movie(8, 96, seed=2, mode="field", progress=False), path)
    return path


def _count_writes(monkeypatch, kill_at: int | None = None) -> list[int]:
    """Count the renames that finish every atomic write (tables, arrays, JSON, model
    files), raising KeyboardInterrupt in place of rename number ``kill_at``."""
    calls = [0]
    rename = os.replace

    def counted(src, dst):
        calls[0] += 1
        if calls[0] == kill_at:
            raise KeyboardInterrupt
        rename(src, dst)

    monkeypatch.setattr(os, "replace", counted)
    return calls


def _same_stem_runs(a, b) -> None:
    first, second = StemRun.read(a), StemRun.read(b)
    for name in ("atoms", "rings", "tracks", "transitions"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), obj=name)
    for kind in ("atom", "hollow"):
        pd.testing.assert_frame_equal(first.kinds[kind].latents, second.kinds[kind].latents)
        assert np.array_equal(first.kinds[kind].map.counts, second.kinds[kind].map.counts)


def _reference(run, movie, config, out):
    """An uninterrupted run into ``out``, and the number of atomic writes it made."""
    with pytest.MonkeyPatch.context() as patch:
        writes = _count_writes(patch)
        run(movie, out, config, progress=False)
    return out, writes[0]


def _killed_then_finished(run, movie, config, out, writes, moment, monkeypatch) -> dict:
    """A run killed after ``moment`` of its ``writes``, then run again to the end."""
    _count_writes(monkeypatch, kill_at=max(1, round(moment * writes)))
    with pytest.raises(KeyboardInterrupt):
        run(movie, out, config, progress=False)
    monkeypatch.undo()
    result = run(movie, out, config, progress=False)
    assert result.reused or moment <= 0.1
    return result


@pytest.fixture(scope="module")
def stem_reference(stem_movie, tmp_path_factory):
    return _reference(stem_pipeline.run_stem, stem_movie, STEM_TINY,
                      tmp_path_factory.mktemp("reference") / "run")


@pytest.mark.parametrize("moment", [0.05, 0.3, 0.55, 0.8, 0.97])
def test_a_killed_stem_run_completes_with_the_same_results(stem_movie, stem_reference,
                                                           moment, tmp_path, monkeypatch):
    reference, writes = stem_reference
    out = tmp_path / "run"
    _killed_then_finished(stem_pipeline.run_stem, stem_movie, STEM_TINY, out, writes, moment,
                          monkeypatch)
    assert (out / "report.html").is_file()
    _same_stem_runs(reference, out)


def test_a_changed_setting_recomputes_only_the_steps_that_use_it(stem_movie, stem_reference,
                                                                 tmp_path):
    import shutil

    reference, _ = stem_reference
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    changed = {**STEM_TINY, "map_points": 12}
    with pytest.raises(FileExistsError, match="map_points: 16 -> 12"):
        stem_pipeline.run_stem(stem_movie, out, changed, progress=False)
    result = stem_pipeline.run_stem(stem_movie, out, changed, overwrite=True, progress=False)
    assert result.reused == ("atoms", "atom windows", "hollow windows", "atom model",
                             "hollow model")
    assert result.kinds["atom"].map.counts.shape[:2] == (12, 12)
    # the unchanged steps' outputs are the earlier ones, byte for byte
    for name in ("atoms.parquet", "atom/model/weights.safetensors"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["map_points"] == 12 and record["timings_s"]["atom model"] > 0
    # not resuming computes everything again, to the same results
    again = stem_pipeline.run_stem(stem_movie, out, STEM_TINY, overwrite=True, resume=False,
                                   progress=False)
    assert again.reused == ()
    _same_stem_runs(reference, out)


@pytest.fixture(scope="module")
def pfm_reference(pfm_movie, tmp_path_factory):
    return _reference(pfm_pipeline.run_pfm, pfm_movie, PFM_TINY,
                      tmp_path_factory.mktemp("reference") / "run")


@pytest.mark.parametrize("moment", [0.1, 0.5, 0.9])
def test_a_killed_pfm_run_completes_with_the_same_results(pfm_movie, pfm_reference, moment,
                                                          tmp_path, monkeypatch):
    reference, writes = pfm_reference
    out = tmp_path / "run"
    _killed_then_finished(pfm_pipeline.run_pfm, pfm_movie, PFM_TINY, out, writes, moment,
                          monkeypatch)
    first, second = PfmRun.read(reference), PfmRun.read(out)
    for name in ("drift", "curves", "latents", "wall_history", "wall_latents"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), obj=name)


def test_the_command_killed_mid_training_completes_on_the_next_call(stem_movie, tmp_path):
    """A real SIGKILL, while the atom windows' skip-rVAE trains."""
    epochs = 60
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"config": {**STEM_TINY, "epochs": epochs}}))

    def command(out):
        return [sys.executable, "-c", "from latentpath.cli import main; main()", "stem",
                str(stem_movie), "--out", str(out), "--config", str(config)]

    out = tmp_path / "run"
    process = subprocess.Popen(command(out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = out / "atom" / "model" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epoch = json.loads(checkpoint.read_text())["epoch"]
    assert 1 <= epoch < epochs and not (out / "config.json").exists()
    done = subprocess.run(command(out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "atoms: reused" in done.stdout
    # training went on from its checkpoint: the epochs done were not trained again
    atom_training = done.stdout.split("atom model")[0]
    assert f"epoch {epoch}/{epochs}:" not in atom_training
    assert f"epoch {epoch + 1}/{epochs}:" in atom_training
    subprocess.run(command(tmp_path / "straight"), check=True, capture_output=True,
                   timeout=300)
    _same_stem_runs(tmp_path / "straight", out)
