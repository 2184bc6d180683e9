"""Two skip-rVAEs one after the other on every thread, or side by side on a share each.

    python benchmarks/bench_side_by_side.py WINDOWS.npy [--steps 600]

WINDOWS.npy is a run's windows (``RUN/hollow/windows.npy``). Trains the STEM pipeline's
CPU model (3 x 128, batches of 32) on them for ``--steps`` steps, each training in a
fresh process timed from its start (imports and compile-cache reads included): once on
all the threads, once on one, and twice at the same time on half the threads each.
Prints the seconds of each, and of two trainings one after the other against side by
side (docs/chemical-space.md, ``StemConfig.side_by_side``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine_line  # benchmarks/common.py, beside this script

TRAIN = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
import numpy as np
from latentpath.rvae import fit_rvae
fit_rvae(np.load(sys.argv[2], mmap_mode="r"), sys.argv[3], hidden=128, layers=3, epochs=10**5,
         max_steps=int(sys.argv[4]), batch_size=32, lr=3e-3, seed=0, device="cpu",
         progress=False, overwrite=True)
"""


def _start(threads: int, windows: Path, out: Path, steps: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(threads), str(windows), str(out),
                             str(steps)])


def _timed(*processes: subprocess.Popen) -> float:
    began = time.perf_counter()
    for process in processes:
        if process.wait():
            raise SystemExit(f"a training failed (exit code {process.returncode})")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("windows", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    print(machine_line())
    every = torch.get_num_threads()
    half = max(1, every // 2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # a first training fills the compile cache, so that none of the timed ones pays it
        _timed(_start(every, args.windows, out / "warm", args.steps))
        alone_all = _timed(_start(every, args.windows, out / "a", args.steps))
        alone_half = _timed(_start(half, args.windows, out / "b", args.steps))
        both = _timed(_start(half, args.windows, out / "c", args.steps),
                      _start(half, args.windows, out / "d", args.steps))
    n_windows = len(np.load(args.windows, mmap_mode="r"))
    print(f"{args.steps} steps on {n_windows} windows: {alone_all:.1f} s on {every} threads, "
          f"{alone_half:.1f} s on {half}")
    print(f"two trainings: one after the other {2 * alone_all:.1f} s, side by side on "
          f"{half} thread(s) each {both:.1f} s ({both / (2 * alone_all):.0%})")


if __name__ == "__main__":
    main()
