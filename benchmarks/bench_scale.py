"""How time and memory grow with the number of frames and of Dask workers.

    python benchmarks/bench_scale.py [--frames 10 100 1000 --workers 1 2 --size 256]
                                     [--run latentpath-demo/stem-run]

One synthetic STEM movie (the longest asked for) is written as Zarr stores of its first
N frames. `latentpath.scale.atoms_many` then finds the atoms and rings of each store
on a local cluster of 1 or 2 workers; with ``--run`` (a trained STEM run, e.g. the
demo's), it also encodes a window around every atom and ring with the run's models.
The peak memory is sampled every 0.1 s over this process and all its children
(scheduler, nannies, workers): the whole tree's resident memory at its peak, and the
largest single worker's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from latentpath.io import Movie, save_zarr
from latentpath.scale import atoms_many
from latentpath.synth import synth_stem_movie


class PeakMemory:
    """Peak resident memory of this process and its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.tree_mb, self.worker_mb = every_s, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            sizes = []
            for proc in [me, *me.children(recursive=True)]:
                try:
                    sizes.append(proc.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            self.tree_mb = max(self.tree_mb, sum(sizes))
            self.worker_mb = max(self.worker_mb, max(sizes[1:], default=0.0))
            time.sleep(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames-per-task", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", help="a trained STEM run: also encode every window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sim = synth_stem_movie(max(args.frames), args.size, seed=args.seed, progress=True)
        stores = {n: save_zarr(Movie(sim.movie[:n], pixel_size=sim.pixel_size_A,
                                     pixel_unit="A"), Path(tmp) / f"movie{n}.zarr")
                  for n in args.frames}
        print(f"synthetic movie {max(args.frames)} x {args.size}^2 and its Zarr stores: "
              f"{time.perf_counter() - start:.0f} s (not counted)")
        del sim
        print("frames  workers  seconds  ms/frame  peak tree MB  peak worker MB  atoms  "
              "windows")
        for n, store in stores.items():
            for workers in args.workers:
                out = Path(tmp) / f"out{n}-{workers}"
                with PeakMemory() as memory:
                    start = time.perf_counter()
                    table = atoms_many([store], out, run=args.run, workers=workers,
                                       frames_per_task=args.frames_per_task, progress=False)
                    seconds = time.perf_counter() - start
                windows = table.filter(like="windows_").sum(axis=1).iloc[0]
                print(f"{n:6d}  {workers:7d}  {seconds:7.1f}  {1000 * seconds / n:8.1f}  "
                      f"{memory.tree_mb:12.0f}  {memory.worker_mb:14.0f}  "
                      f"{int(table.atoms.iloc[0]):6d}  {int(windows):7d}", flush=True)


if __name__ == "__main__":
    main()
