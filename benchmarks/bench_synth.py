"""Time and peak memory of writing synthetic movies with their truth.

Target (issue: foundation): a 100-frame 512x512 STEM movie with truth written in at most
30 s on the 2-core development machine, memory under 2 GB.

    python benchmarks/bench_synth.py [--frames 100] [--size 512] [--repeat 3]

Each run is a fresh process so that its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import sys

from common import machine_line, run_script  # benchmarks/common.py, beside this script

RUN = r"""
import json, resource, sys, time, tempfile, pathlib
from latentpath.synth.stem import synth_stem_movie, write_synth_stem
from latentpath.synth.pfm import synth_pfm_movie, write_synth_pfm

out, kind = sys.argv[1], sys.argv[2]
frames, size, seed = (int(v) for v in sys.argv[3:6])
start = time.perf_counter()
if kind == "stem":
    result = synth_stem_movie(frames, size, seed=seed)
    made = time.perf_counter()
    write_synth_stem(result, pathlib.Path(out) / "stem.npz")
    rows = len(result.atoms)
else:
    result = synth_pfm_movie(frames, size, seed=seed)
    made = time.perf_counter()
    write_synth_pfm(result, pathlib.Path(out) / "pfm.npz")
    rows = frames
done = time.perf_counter()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"make_s": made - start, "write_s": done - made, "total_s": done - start,
                  "peak_rss_mb": peak_mb, "rows": rows}))
"""


def run_once(kind: str, frames: int, size: int, seed: int) -> dict:
    return run_script(sys.executable, RUN, kind, frames, size, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["stem", "pfm"])
    args = parser.parse_args()
    print(machine_line())
    for kind in args.kinds:
        runs = [run_once(kind, args.frames, args.size, seed) for seed in range(args.repeat)]
        total = sorted(r["total_s"] for r in runs)
        print(f"{kind}: {args.frames} frames x {args.size}x{args.size} px, {args.repeat} seeds: "
              f"total {total[len(total) // 2]:.1f} s median (min {total[0]:.1f}, "
              f"max {total[-1]:.1f}); simulate+render "
              f"{sorted(r['make_s'] for r in runs)[len(runs) // 2]:.1f} s, write "
              f"{sorted(r['write_s'] for r in runs)[len(runs) // 2]:.1f} s; peak RSS "
              f"{max(r['peak_rss_mb'] for r in runs):.0f} MB")


if __name__ == "__main__":
    main()
