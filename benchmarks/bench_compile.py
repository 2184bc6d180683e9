"""One STEM skip-rVAE trained eagerly and compiled, on one thread, from the same windows.

    python benchmarks/bench_compile.py WINDOWS.npy [--steps 1200] [--order 0 1 1 0]

WINDOWS.npy is a run's windows (``RUN/hollow/windows.npy``). Trains the STEM pipeline's
CPU model (3 x 128, batches of 32 at lr 3e-3, bfloat16, a 30 % cool-down) for
``--steps`` steps, once per entry of ``--order`` (0 eager, 1 compiled), and prints the
seconds of each training, compiling included: the first compiled one fills the compile
cache, the next shows a warm machine. What ``COMPILE_MIN_FLOP`` was set on
(``latentpath.rvae.train``, docs/rvae.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.rvae import fit_rvae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("windows", type=Path)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--order", nargs="+", type=int, choices=(0, 1), default=[0, 1, 1, 0])
    args = parser.parse_args()
    torch.set_num_threads(1)  # a STEM model's share when the two train side by side
    print(machine_line())
    windows = np.load(args.windows, mmap_mode="r")
    for compiled in args.order:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            fit_rvae(windows, folder, epochs=1000, max_steps=args.steps, patience=10,
                     cooldown=0.3, hidden=128, layers=3, batch_size=32, lr=3e-3,
                     compile=bool(compiled), precision="bfloat16", device="cpu", seed=0,
                     progress=False)
            print(f"{'compiled' if compiled else 'eager':>8}: "
                  f"{time.perf_counter() - start:.1f} s for {args.steps} steps", flush=True)


if __name__ == "__main__":
    main()
