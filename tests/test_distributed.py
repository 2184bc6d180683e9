"""Training on several processes: two CPU processes with the gloo backend, started by
torchrun, against one process."""

from __future__ import annotations

import json
import subprocess
import sys

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


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--standalone", "-m", "latentpath", *args],
                          capture_output=True, text=True, timeout=300)


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
