"""Training data and training of the segmentation network.

Training frames come from synthetic movies (`latentpath.synth`) rendered at the pixel
sizes users have (0.05 to 0.2 A/px), with dose from very noisy to clean, varied probe,
background, jitter and disorder, then resampled to the model's sampling with a small
error (as a pixel size estimated from the lattice would have). Labels are discs around
the true atoms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from latentpath.adam import Adam
from latentpath.atoms.model import AtomUNet
from latentpath.atoms.segment import normalize_frame, resample, to_model_pixels
from latentpath.device import resolve_device
from latentpath.distributed import (
    local_device,
    plain_batch_norm,
    process_group,
    sync_batch_norm,
)
from latentpath.synth import render
from latentpath.synth.stem import synth_stem_movie


def label_map(shape: tuple[int, int], y: np.ndarray, x: np.ndarray, classes: np.ndarray,
              radius_px: float) -> np.ndarray:
    """Class map with a disc of ``radius_px`` around each atom; 0 is background.

    Parameters
    ----------
    shape : (H, W)
    y, x : ndarray
        Atom positions, pixels.
    classes : ndarray of int
        Class index (>= 1) of each atom.
    radius_px : float
        Disc radius, pixels.
    """
    labels = np.zeros(shape, np.int64)
    r = int(np.ceil(radius_px))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    for yc, xc, c in zip(y, x, classes, strict=True):
        iy, ix = round(yc), round(xc)
        yy, xx = iy + dy, ix + dx
        inside = ((yy - yc) ** 2 + (xx - xc) ** 2 <= radius_px**2) & (
            (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1]))
        labels[yy[inside], xx[inside]] = c
    return labels


def synthetic_training_set(
    n_movies: int,
    *,
    frames_per_movie: int = 6,
    size_px: int = 256,
    model_pixel_size_A: float = 0.2,
    species: tuple[str, ...] = ("C", "Si"),
    label_radius_A: float = 0.35,
    pixel_size_range_A: tuple[float, float] = (0.05, 0.2),
    vacuum_fraction: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Frames and labels for training, at (about) the model's sampling.

    A share ``vacuum_fraction`` of the frames is vacuum only (background and noise, no
    atoms): normalised, their noise has full contrast, and the network must learn that
    noise is not atoms.

    Returns
    -------
    images : ndarray, shape (N, size_px, size_px), float32
        Normalised frames (:func:`~latentpath.atoms.segment.normalize_frame`).
    labels : ndarray, shape (N, size_px, size_px), int64
    meta : DataFrame
        The imaging parameters of each frame.
    """
    rng = np.random.default_rng(seed)
    images, labels, rows = [], [], []
    index = {name: k + 1 for k, name in enumerate(species)}
    for m in tqdm(range(n_movies), desc="training movies", disable=not progress):
        user_px = float(np.exp(rng.uniform(*np.log(pixel_size_range_A))))
        # Sampling error of up to 15 %: a pixel size read or estimated imperfectly.
        sampled_px = model_pixel_size_A * rng.uniform(0.87, 1.15)
        factor = user_px / sampled_px
        size_user = int(np.ceil((size_px + 2) / factor))
        params = {
            "pixel_size_A": user_px,
            "dose_e_per_A2": float(np.exp(rng.uniform(np.log(3e4), np.log(5e6)))),
            "probe_fwhm_A": rng.uniform(0.85, 1.35),
            "probe_tail_weight": rng.uniform(0.05, 0.3),
            "background": rng.uniform(0.0, 0.8),
            "jitter_px": rng.uniform(0.0, 0.5) * 0.1 / user_px,
            "read_noise": rng.uniform(0.0, 4.0),
            "final_disorder": rng.uniform(0.3, 0.75),
            "si_fraction": rng.uniform(0.005, 0.04),
            "event_rate": rng.uniform(0.5, 3.0),
            "ripple_A": rng.uniform(0.0, 0.6),
        }
        movie = synth_stem_movie(frames_per_movie, size_user, seed=int(rng.integers(2**31)),
                                 **params)
        for t in range(frames_per_movie):
            raw = movie.movie[t]
            vacuum = rng.random() < vacuum_fraction
            if vacuum:
                raw = _vacuum_frame(raw.shape, params, rng)
            full = resample(raw, factor)
            image = full[:size_px, :size_px]
            atoms = movie.atoms[movie.atoms.frame == t]
            y = to_model_pixels(atoms.y.to_numpy(), full.shape[0] / movie.movie.shape[1])
            x = to_model_pixels(atoms.x.to_numpy(), full.shape[1] / movie.movie.shape[2])
            cls = atoms.species.map(index).fillna(0).to_numpy(np.int64)
            keep = (cls > 0) & (not vacuum)
            images.append(normalize_frame(image))
            labels.append(label_map(image.shape, y[keep], x[keep], cls[keep],
                                    label_radius_A / sampled_px))
            rows.append({"movie": m, "frame": t, "sampled_pixel_size_A": sampled_px,
                         "vacuum": vacuum, **params})
    return np.stack(images), np.stack(labels), pd.DataFrame(rows)


def _vacuum_frame(shape: tuple[int, int], params: dict, rng: np.random.Generator
                  ) -> np.ndarray:
    """Detected counts of an empty field: background, shot and detector noise."""
    signal = 0.05 + params["background"] * render.smooth_background(shape, rng, shape[0] / 6)
    counts = params["dose_e_per_A2"] * params["pixel_size_A"] ** 2 * 0.01
    return render.detect(signal, counts_per_unit=counts, read_noise=params["read_noise"],
                         rng=rng)


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random dihedral transform, contrast, offset and gamma, per batch."""
    k = int(torch.randint(4, (1,), generator=gen))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    if torch.rand(1, generator=gen) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    n = x.shape[0]
    scale = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen)
    offset = 0.1 * torch.randn(n, 1, 1, 1, generator=gen)
    gamma = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    x = torch.sign(x) * x.abs() ** gamma
    return x * scale + offset, y


def loss_function(name: str, class_weights: torch.Tensor | None = None
                  ) -> Callable[..., torch.Tensor]:
    """Cross-entropy (default), or dice or focal loss for rare classes.

    The loss is called as ``loss(logits, target, whole=None)``. ``whole`` is the target
    of the whole batch when ``target`` is one process's share of it
    (:mod:`latentpath.distributed`): cross-entropy and focal loss are then this share's
    part of the whole batch's loss, so that the parts add up to it. Dice needs the
    whole batch at once.
    """
    if name == "ce":
        def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                          whole: torch.Tensor | None = None) -> torch.Tensor:
            whole = target if whole is None else whole
            total = torch.nn.functional.cross_entropy(logits, target, weight=class_weights,
                                                      reduction="sum")
            # the mean weighted by each pixel's class weight, as CrossEntropyLoss takes it
            return total / (whole.numel() if class_weights is None
                            else class_weights[whole].sum())
        return cross_entropy
    if name == "focal":
        def focal(logits: torch.Tensor, target: torch.Tensor,
                  whole: torch.Tensor | None = None) -> torch.Tensor:
            logp = torch.log_softmax(logits, 1)
            ce = torch.nn.functional.nll_loss(logp, target, weight=class_weights,
                                              reduction="none")
            pt = logp.gather(1, target[:, None])[:, 0].exp()
            return ((1 - pt) ** 2 * ce).sum() / (target if whole is None else whole).numel()
        return focal
    if name == "dice":
        def dice(logits: torch.Tensor, target: torch.Tensor,
                 whole: torch.Tensor | None = None) -> torch.Tensor:
            if whole is not None and whole.shape != target.shape:
                raise ValueError("the dice loss needs the whole batch in one process; "
                                 "train on several with loss 'ce' or 'focal'")
            p = torch.softmax(logits, 1)
            onehot = torch.nn.functional.one_hot(target, p.shape[1]).permute(0, 3, 1, 2)
            inter = (p * onehot).sum((0, 2, 3))
            union = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
            return 1 - ((2 * inter + 1) / (union + 1)).mean()
        return dice
    raise ValueError(f"unknown loss {name!r} (use ce, dice or focal)")


def train_segmenter(model: AtomUNet, images: np.ndarray, labels: np.ndarray, *,
                    steps: int = 2000, batch_size: int = 16, crop_px: int = 128,
                    lr: float = 1e-3, loss: str = "ce", seed: int = 0,
                    device: torch.device | str = "cpu", progress: bool = False) -> pd.DataFrame:
    """Train (or fine-tune) ``model`` on frames and class maps with Adam.

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
        Normalised frames at the model's sampling.
    labels : ndarray, shape (N, H, W), int
    steps, batch_size, crop_px, lr : training schedule; random crops of ``crop_px``.
    loss : {"ce", "dice", "focal"}
    seed : int
        Seeds the crops and augmentations (a ``torch.Generator``).

    Returns
    -------
    DataFrame
        ``step, loss, seconds`` every 50 steps.
    """
    if images.shape != labels.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and labels {labels.shape} must both be "
                         "(N, H, W)")
    if min(images.shape[1:]) < crop_px:
        raise ValueError(f"frames of {images.shape[1:]} px are smaller than the crop "
                         f"({crop_px} px)")
    device = resolve_device(device)
    group = process_group(device)
    device = local_device(device, group)
    if loss == "dice" and group.world > 1:
        raise ValueError("the dice loss needs the whole batch in one process; train on "
                         "several with loss 'ce' or 'focal'")
    if batch_size < group.world:
        raise ValueError(f"batch_size {batch_size} is smaller than the {group.world} "
                         "processes that share each batch")
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y_all = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    counts = torch.bincount(y_all.flatten(), minlength=model.config.n_classes).float()
    # Inverse square root of class frequency: rare Si pixels count more, without
    # swamping the background.
    weights = (counts.sum() / counts.clamp(min=1)).sqrt()
    weights = (weights / weights.mean()).to(device)
    criterion = loss_function(loss, weights)
    model = model.to(device).train()
    net = model
    if group.world > 1:
        # batch statistics of the whole batch, as one process computes them
        net = DistributedDataParallel(sync_batch_norm(model, device),
                                      device_ids=[device.index] if device.type == "cuda"
                                      else None)
    optimizer = Adam(model.parameters(), lr=lr)
    n, h, w = images.shape
    history, start = [], time.perf_counter()
    running = 0.0
    for step in tqdm(range(1, steps + 1), desc="training", disable=not (progress and group.main)):
        idx = torch.randint(n, (batch_size,), generator=gen)
        oy = torch.randint(h - crop_px + 1, (batch_size,), generator=gen)
        ox = torch.randint(w - crop_px + 1, (batch_size,), generator=gen)
        xb = torch.stack([x_all[i, a:a + crop_px, b:b + crop_px]
                          for i, a, b in zip(idx, oy, ox, strict=True)])[:, None]
        yb = torch.stack([y_all[i, a:a + crop_px, b:b + crop_px]
                          for i, a, b in zip(idx, oy, ox, strict=True)])
        # every process draws the whole batch and trains on its share of it
        xb, yb = _augment(xb, yb, gen)
        mine = torch.from_numpy(group.shard(np.arange(batch_size)))
        optimizer.zero_grad()
        whole = yb.to(device)
        value = criterion(net(xb[mine].to(device)), whole[mine], whole)
        # DistributedDataParallel averages the processes' gradients; their parts add up
        (value * group.world).backward()
        optimizer.step()
        running += float(value.detach())
        if step % 50 == 0 or step == steps:
            running = float(group.all_sum([running], device)[0])
            history.append({"step": step, "loss": running / (50 if step % 50 == 0 else step % 50),
                            "seconds": time.perf_counter() - start})
            running = 0.0
    if group.world > 1:
        plain_batch_norm(model)
    group.barrier()
    model.eval()
    return pd.DataFrame(history)
