"""skip-rVAE training speed and validation loss, side by side with AtomAI's rVAE.

    python benchmarks/bench_rvae.py [--windows 2000 --epochs 3] [--atomai-python PATH]
    python benchmarks/bench_rvae.py --whole-process [--windows 1200 --epochs 2 --repeat 3]
        [--atomai-python PATH]

The paper's architecture on both sides: encoder and decoder 4 x 256, 2 content latents,
skip connections from the latent space, MSE, Adam lr 1e-4, batch 100, 32x32 windows
(synthetic hollow-site ring windows, normalised to mean 0 and standard deviation 1 so
that both tools see the same numbers), the same train/validation split. Target (issue:
skip-rVAE): at least 100 windows/s on the 2-core CPU, at least 3x AtomAI, with a
validation loss after the same number of epochs no worse than AtomAI's. AtomAI runs in
its own environment (``--atomai-python``): it pulls its own torch and torchvision.

``--whole-process`` times what a user meets instead (issue 24): the command
``latentpath rvae W.npy --out M --epochs E`` from the shell, imports and start-up
included, first on a fresh machine's state (empty ``XDG_CACHE_HOME`` and
``TORCHINDUCTOR_CACHE_DIR``, so no compiled kernels to reuse: cold) and then again
with the cache the first call left (warm), beside AtomAI's ``rVAE.fit`` on the same
windows in a script of its own, run the same way. Each round runs the three one after
the other; the medians over ``--repeat`` rounds are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_line, run_script  # benchmarks/common.py, beside this script

ATOMAI = r"""
import json, sys, time
import numpy as np, torch
from atomai.models import rVAE

data = np.load(sys.argv[1] + "/data.npz")
train, test = data["train"], data["test"]
epochs = int(sys.argv[2])
model = rVAE((32, 32), latent_dim=2, numlayers_encoder=4, numhidden_encoder=256,
             numlayers_decoder=4, numhidden_decoder=256, skip=True, seed=0)
start = time.perf_counter()
model.fit(train, X_test=test, training_cycles=epochs, batch_size=100, loss="mse",
          rotation_prior=0.1, translation_prior=0.1)
seconds = time.perf_counter() - start
# AtomAI records the ELBO; the loss is its negative.
print(json.dumps({"seconds": seconds, "windows_per_s": epochs * len(train) / seconds,
                  "test_loss": [-float(v) for v in model.loss_history["test_loss"]],
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""

#: the same job as a new AtomAI user would write it: load, normalise, fit, save
ATOMAI_WHOLE = r"""
import sys
import numpy as np
from atomai.models import rVAE

w = np.load(sys.argv[1])
w = (w - w.mean()) / w.std()
model = rVAE((w.shape[1], w.shape[2]), latent_dim=2, numlayers_encoder=4,
             numhidden_encoder=256, numlayers_decoder=4, numhidden_decoder=256,
             skip=True, seed=0)
model.fit(w, training_cycles=int(sys.argv[2]), batch_size=100, loss="mse")
model.save_weights(sys.argv[3])
"""


def _seconds(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of ``command`` in a fresh process, as a shell would time it;
    run in ``cwd`` because AtomAI saves a checkpoint into the working directory."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - start


def whole_process(windows: np.ndarray, epochs: int, repeat: int,
                  atomai_python: Path | None) -> None:
    """Time ``latentpath rvae`` cold and warm and AtomAI's fit, ``repeat`` rounds."""
    ours = Path(sys.executable).with_name("latentpath")
    times: dict[str, list[float]] = {"latentpath, cold": [], "latentpath, warm": [],
                                     "AtomAI": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "windows.npy"
        np.save(data, windows)
        for r in range(repeat):
            cache = Path(tmp) / f"cache{r}"
            env = dict(os.environ, XDG_CACHE_HOME=str(cache),
                       TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"))
            for label in ("latentpath, cold", "latentpath, warm"):
                out = Path(tmp) / f"model{r}{label[-4:]}"
                times[label].append(_seconds([str(ours), "rvae", str(data), "--out",
                                              str(out), "--epochs", str(epochs)], Path(tmp), env))
            if atomai_python:
                script = Path(tmp) / "atomai_job.py"
                script.write_text(ATOMAI_WHOLE)
                times["AtomAI"].append(_seconds([str(atomai_python), str(script), str(data),
                                                 str(epochs), str(Path(tmp) / f"atomai{r}")],
                                                Path(tmp)))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s"
                                                 for k, v in times.items() if v), flush=True)
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    for label, seconds in medians.items():
        ratio = (f" ({medians['AtomAI'] / seconds:.1f}x AtomAI)"
                 if "AtomAI" in medians and label != "AtomAI" else "")
        print(f"{label}: median {seconds:.1f} s of {len(times[label])}{ratio}")


def main() -> None:
    from latentpath.rvae import fit_rvae
    from latentpath.synth.motifs import synth_motif_windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--atomai-python", type=Path)
    parser.add_argument("--whole-process", action="store_true",
                        help="time the command line, cold and warm, beside AtomAI")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of --whole-process")
    args = parser.parse_args()
    print(machine_line())
    windows, _ = synth_motif_windows(args.windows, window_px=32, pixel_size_A=0.15, seed=0)
    if args.whole_process:
        # raw windows, as a user's file holds them: each tool normalises its own way
        whole_process(windows.astype(np.float32), args.epochs, args.repeat,
                      args.atomai_python)
        return
    windows = ((windows - windows.mean()) / windows.std()).astype(np.float32)
    n_test = args.windows // 10
    order = np.random.default_rng(0).permutation(args.windows)
    test, train = windows[order[:n_test]], windows[order[n_test:]]
    # fit_rvae holds out the first n_test windows of default_rng(seed).permutation(N):
    # with seed 0 that is exactly `test`, so both tools validate on the same windows.
    runs = {}
    for precision, compiled in (("float32", True), ("bfloat16", True), ("bfloat16", False)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            history = fit_rvae(windows, Path(tmp) / "m", epochs=args.epochs, batch_size=100,
                               lr=1e-4, val_fraction=n_test / args.windows, seed=0,
                               device="cpu", precision=precision, compile=compiled,
                               progress=False)
            total = time.perf_counter() - start
        label = f"{precision}, {'compiled' if compiled else 'eager'}"
        runs[label] = history
        # The first epoch carries torch.compile's warm-up; the median is the steady rate.
        print(f"latentpath skip-rVAE ({label}): {history.windows_per_s.median():.0f} "
              f"windows/s (median over epochs; {total:.0f} s in all), validation loss per "
              f"epoch {history.val_loss.round(1).tolist()}")
    if args.atomai_python:
        start = time.perf_counter()
        result = run_script(args.atomai_python, ATOMAI, args.epochs,
                            data={"train": train, "test": test})
        print(f"AtomAI rVAE (skip=True, torch {result['torch']}, {result['threads']} "
              f"threads): {result['windows_per_s']:.0f} windows/s, validation loss per epoch "
              f"{[round(v, 1) for v in result['test_loss']]} "
              f"({time.perf_counter() - start:.0f} s with start-up)")
        for label, history in runs.items():
            print(f"speed-up ({label}): "
                  f"{history.windows_per_s.median() / result['windows_per_s']:.1f}x")

if __name__ == "__main__":
    main()
