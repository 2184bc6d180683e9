"""Train the segmentation weights shipped in latentpath/atoms/weights from scratch.

    python scripts/train_atom_weights.py [--movies 120 --frames 6 --steps 3000 --seed 0]
    torchrun --standalone --nproc_per_node 4 scripts/train_atom_weights.py ...   # 4 GPUs

Training data are synthetic movies (latentpath.synth) rendered at 0.05-0.2 A/px and
resampled to the model's sampling; nothing is downloaded. The run's settings, time and
machine are stored in the model's config.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from latentpath.atoms.model import SHIPPED_MODEL_DIR, AtomNetConfig, AtomUNet, save_model
from latentpath.atoms.training import synthetic_training_set, train_segmenter
from latentpath.distributed import is_main_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=120)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--cache", type=Path, help="reuse/save the training set here (.npz)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    start = time.perf_counter()
    config = AtomNetConfig()
    if args.cache and args.cache.exists():
        with np.load(args.cache) as data:
            images, labels = data["images"], data["labels"]
    else:
        images, labels, _ = synthetic_training_set(
            args.movies, frames_per_movie=args.frames, size_px=args.size,
            model_pixel_size_A=config.pixel_size_A, species=tuple(config.species),
            seed=args.seed, progress=True)
        if args.cache:
            np.savez(args.cache, images=images, labels=labels)
    data_s = time.perf_counter() - start
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global RNG untouched
        torch.manual_seed(args.seed)
        model = AtomUNet(config)
    history = train_segmenter(model, images, labels, steps=args.steps,
                              batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              device=device, progress=True)
    total_s = time.perf_counter() - start
    print(history.iloc[::10].to_string(index=False))
    record = {
        "data": {"movies": args.movies, "frames_per_movie": args.frames, "size_px": args.size,
                 "frames": len(images), "seed": args.seed},
        "schedule": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                     "crop_px": 128, "loss": "ce", "optimizer": "Adam"},
        "final_loss": float(history.loss.iloc[-1]),
        "seconds": {"data": round(data_s, 1), "total": round(total_s, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {device}",
        "command": "python scripts/train_atom_weights.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in (
                ("movies", args.movies), ("frames", args.frames), ("steps", args.steps),
                ("batch_size", args.batch_size), ("seed", args.seed))),
    }
    if is_main_process():  # under torchrun, one process writes the weights
        save_model(model.cpu(), args.out, extra=record, overwrite=args.overwrite)
        print(f"saved {args.out} after {total_s / 60:.1f} min")


if __name__ == "__main__":
    main()
