"""Training on several processes: two CPU processes with the gloo backend, started by
torchrun, against one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from conftest import SMALL
from safetensors.numpy import load_file

from latentpath.distributed import Group, process_group
from latentpath.rvae import fit_rvae
from latentpath.synth.motifs import synth_motif_windows

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

FLAGS = ["--hidden", "32", "--layers", "2", "--batch-size", "32", "--lr", "3e-3",
         "--device", "cpu", "--precision", "float32", "--no-compile"]


HELPERS = Path(__file__).parent / "helpers"
SCRIPTS = Path(__file__).parents[1] / "scripts"


def torchrun(*args: str, module: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2`` of ``latentpath ARGS`` (or of a script)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--standalone", *(["-m", "latentpath"] if module else []),
                           *args], capture_output=True, text=True, timeout=300)


def history(model_dir) -> np.ndarray:
    record = json.loads((model_dir / "checkpoint.json").read_text())
    return np.array([row["val_loss"] for row in record["history"]])


def test_two_processes_train_the_one_process_model_and_resume_alike(tmp_path):
    windows, _ = synth_motif_windows(250, window_px=12, seed=3)
    np.save(tmp_path / "w.npy", windows.astype(np.float32))
    one = fit_rvae(windows.astype(np.float32), tmp_path / "one", epochs=4, seed=0, **SMALL)

    two = tmp_path / "two"
    done = torchrun("rvae", str(tmp_path / "w.npy"), "--out", str(two), "--epochs", "2",
                    *FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model -> ") == 1  # the summary once, from rank 0
    np.testing.assert_allclose(history(two), one.val_loss[:2], rtol=1e-5)
    # resumed from the two processes' checkpoint, to the one process's fourth epoch
    done = torchrun("rvae", str(tmp_path / "w.npy"), "--out", str(two), "--epochs", "4",
                    "--resume", *FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(history(two), one.val_loss, rtol=1e-5)
    a = load_file(str(tmp_path / "one" / "weights.safetensors"))
    b = load_file(str(two / "weights.safetensors"))
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4


def test_two_processes_compute_the_segmenter_gradient_of_one(tmp_path):
    """Batch norm over the whole batch and the loss's parts: the same gradient, in
    float64 to 1e-9 (in float32 the deep network's batch norms leave 1e-3)."""
    alone = subprocess.run([sys.executable, str(HELPERS / "segmenter_gradients.py"),
                            str(tmp_path / "one.npz")], capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr[-3000:]
    done = torchrun(str(HELPERS / "segmenter_gradients.py"), str(tmp_path / "two.npz"),
                    module=False)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    for name in one:
        scale = np.abs(one[name]).max()
        assert np.abs(one[name] - two[name]).max() <= 1e-9 * scale, name


def test_the_segmenter_trains_under_torchrun_as_in_one_process(tmp_path):
    flags = ["--movies", "1", "--frames", "2", "--size", "128", "--steps", "6",
             "--batch-size", "5", "--device", "cpu"]
    alone = subprocess.run([sys.executable, str(SCRIPTS / "train_atom_weights.py"), *flags,
                            "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr[-3000:]
    done = torchrun(str(SCRIPTS / "train_atom_weights.py"), *flags, "--out",
                    str(tmp_path / "two"), module=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved ") == 1  # one process writes the weights
    losses = [json.loads((tmp_path / d / "config.json").read_text())["training"]["final_loss"]
              for d in ("one", "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_a_batch_is_shared_by_position_and_the_environment_is_checked(monkeypatch):
    import torch

    assert Group(rank=1, world=3).shard(np.arange(8)).tolist() == [1, 4, 7]
    assert Group().shard(np.arange(3)).tolist() == [0, 1, 2]
    assert process_group(torch.device("cpu")) == Group()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="integers"):
        process_group(torch.device("cpu"))
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        process_group(torch.device("cpu"))
