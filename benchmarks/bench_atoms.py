"""Speed of atom finding (segment + locate) on 1024x1024 frames, against AtomAI.

    python benchmarks/bench_atoms.py [--repeat 5] [--atomai-python PATH] [--keep-large-blocks]
        [--augment]

Target (issue: atom finding): a 1024x1024 frame segmented and located in at most 1 s on
the 2-core development CPU. AtomAI runs in its own environment (it pulls its own torch
and torchvision); pass that environment's python with --atomai-python, e.g. after
``python3 -m venv /tmp/atomai-env && /tmp/atomai-env/bin/pip install atomai six``.
AtomAI's U-Net (16 filters, dilated bottleneck, 0.59 M parameters) is the same size as
ours (0.64 M); timings do not depend on the weights, so it runs untrained.
``--keep-large-blocks`` sets the process's allocator as the ``latentpath`` command does
(``latentpath.allocator``); without it the figures are a notebook's, which has not.
``--augment`` times ``find_atoms(augment=True)``, the network averaged over the eight
rotations and reflections of each frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import machine_line, run_script  # benchmarks/common.py, beside this script

ATOMAI = r"""
import json, sys, time
import numpy as np, torch
from atomai.nets import Unet
from atomai.predictors import SegPredictor

frames = np.load(sys.argv[1] + "/data.npz")["frames"]
repeat = int(sys.argv[2])
torch.manual_seed(0)
model = Unet(nb_classes=3, nb_filters=16, with_dilation=True)
predictor = SegPredictor(model, use_gpu=False, logits=True, verbose=False)
predictor.run(frames[:1], compute_coords=True)
times = []
for _ in range(repeat):
    for frame in frames:
        start = time.perf_counter()
        predictor.run(frame[None], compute_coords=True)
        times.append(time.perf_counter() - start)
print(json.dumps({"median_s": float(np.median(times)),
                  "params": sum(p.numel() for p in model.parameters()),
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""


def main() -> None:
    from latentpath.allocator import keep_large_blocks
    from latentpath.atoms import find_atoms, load_model
    from latentpath.synth import synth_stem_movie

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--atomai-python", type=Path)
    parser.add_argument("--keep-large-blocks", action="store_true",
                        help="keep freed large blocks for reuse, as the command does")
    parser.add_argument("--augment", action="store_true",
                        help="find_atoms(augment=True)")
    args = parser.parse_args()
    print(machine_line())
    if args.keep_large_blocks:
        print(f"large blocks kept for reuse: {keep_large_blocks()}")
    sim = synth_stem_movie(args.frames, 1024, pixel_size_A=0.1, seed=4242)
    model = load_model()
    print(f"latentpath U-Net: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
          f"parameters, model sampling {model.config.pixel_size_A} A/px")
    start = time.perf_counter()
    find_atoms(sim.movie[:1], pixel_size_A=0.1, model=model, device="cpu",
               augment=args.augment)
    print(f"latentpath find_atoms, first call of the process (the network folded for "
          f"inference, the kernels' first use): {time.perf_counter() - start:.3f} s")
    results = {}
    for refine in (True, False):
        times = []
        for _ in range(args.repeat):
            for t in range(args.frames):
                start = time.perf_counter()
                found = find_atoms(sim.movie[t:t + 1], pixel_size_A=0.1, model=model,
                                   device="cpu", refine=refine, augment=args.augment)
                times.append(time.perf_counter() - start)
        results[refine] = float(np.median(times))
        print(f"latentpath find_atoms, 1024x1024 at 0.1 A/px, refine={refine}, "
              f"augment={args.augment}: "
              f"{results[refine]:.3f} s per frame (median of {len(times)}), "
              f"{len(found)} atoms")
    if args.atomai_python:
        atomai = run_script(args.atomai_python, ATOMAI, args.repeat,
                            data={"frames": sim.movie})
        print(f"AtomAI SegPredictor.run (U-Net {atomai['params'] / 1e6:.2f} M parameters, "
              f"torch {atomai['torch']}, {atomai['threads']} threads), 1024x1024 at full "
              f"resolution with coordinates: {atomai['median_s']:.3f} s per frame")
        print(f"speed-up: {atomai['median_s'] / results[True]:.1f}x with Gaussian refinement, "
              f"{atomai['median_s'] / results[False]:.1f}x without")


if __name__ == "__main__":
    main()
