"""Training the skip-rVAE: seeded, checkpointed every epoch, resumable, memory-mapped.

Batches are read from the window array (a memory-mapped .npy works, however large)
and converted to float32 one batch at a time, so the data set is never copied whole.
The shuffling order of each epoch is derived from (seed, epoch) and the sampling noise
comes from a ``torch.Generator`` saved in the checkpoint, so a run killed at any moment
and resumed reaches exactly the result of an uninterrupted run.

Training stops at an epoch ceiling, or earlier: when the validation loss stops falling
(``patience``), at a number of optimiser steps (``max_steps``) or when a wall-clock
budget runs out. With a ``cooldown``, the first two of these start a last stretch in which
the learning rate falls to zero instead of ending training at once.

Windows can be drawn in proportion to weights (``sample_weights``,
:func:`balanced_weights`) so that rare kinds of window are trained on as often as common
ones.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from latentpath.adam import Adam
from latentpath.checks import check_float, check_int
from latentpath.device import resolve_device, uses_bfloat16
from latentpath.distributed import Group, local_device, process_group
from latentpath.modelfiles import MODEL_CONFIG, WEIGHTS, ModelFileError, read_record
from latentpath.rvae.files import (
    CHECKPOINT,
    MODEL_KIND,
    load_checkpoint,
    save_checkpoint,
    save_rvae,
    update_training_record,
)
from latentpath.rvae.model import RVAEConfig, SkipRVAE
from latentpath.rvae.neighbours import NeighbourTerm

_CHUNK = 4096
#: why a training run stopped (:class:`TrainingStop`)
STOP_REASONS = ("converged", "max_steps", "epochs", "time_budget")
#: stops that resuming with the same settings would repeat at once, so it trains no more
_FINAL_STOPS = ("converged", "max_steps")
#: a validation loss this many times the untrained model's means training diverged
DIVERGED_FACTOR = 100.0


class TrainingDivergedError(ValueError):
    """The loss became non-finite or exploded: the learning rate is too high for the
    data. Nothing of the diverged epoch is saved."""
#: the stopping and sampling settings of checkpoints written before they existed
_UNSET = {"patience": None, "min_delta": 1e-3, "max_steps": None, "min_steps": None,
          "sample_weights": None, "cooldown": 0.0, "pixel_fraction": 1.0,
          "pixel_weights": None, "neighbour_weight": 0.0}


@dataclass(frozen=True)
class TrainingStop:
    """Why and where a training run stopped.

    Attributes
    ----------
    reason : {"converged", "max_steps", "epochs", "time_budget"}
        "converged": the validation loss did not improve for ``patience`` checks;
        "max_steps": the step ceiling; "epochs": the epoch ceiling; "time_budget": the
        wall-clock budget ran out.
    steps : int
        Optimiser steps done, over all calls of a resumed run.
    epochs_run : int
        Epochs done, the last one part-way if ``max_steps`` ended it.
    best_epoch : int or None
        The epoch of the model kept (lowest validation loss); None if no epoch had a
        finite validation loss.
    best_val_loss : float
        Its validation loss per window, in the units of the training loss (inf if none).
    """

    reason: str
    steps: int
    epochs_run: int
    best_epoch: int | None
    best_val_loss: float


def training_record(model_dir: str | Path) -> TrainingStop:
    """How the training of a model directory ended, from its ``config.json``.

    Raises
    ------
    ModelFileError
        No ``config.json``, not a skip-rVAE, or a training record without a stop:
        training still running or killed, or a model written before stops were
        recorded. The message names the file.
    """
    path = Path(model_dir) / MODEL_CONFIG
    training = read_record(path, MODEL_KIND, "skip-rVAE").get("training")
    if not isinstance(training, dict) or "stop_reason" not in training:
        raise ModelFileError(f"{path}: no record of how training stopped (a model written "
                             "before stops were recorded, or not by fit_rvae)")
    if training["stop_reason"] is None:
        raise ModelFileError(f"{path}: training has not finished (still running, or "
                             "killed: resume it)")
    try:
        stop = TrainingStop(reason=str(training["stop_reason"]),
                            steps=int(training["steps"]),
                            epochs_run=int(training["epochs_run"]),
                            best_epoch=None if training["best_epoch"] is None
                            else int(training["best_epoch"]),
                            best_val_loss=float(training["val_loss"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: damaged training record ({err!r})") from err
    if stop.reason not in STOP_REASONS:
        raise ModelFileError(f"{path}: damaged training record (stop_reason "
                             f"{stop.reason!r}, expected one of {STOP_REASONS})")
    return stop


def balanced_weights(labels: Iterable[Hashable], power: float = 1.0) -> np.ndarray:
    """Sampling weights that make every label about equally frequent in training.

    Parameters
    ----------
    labels : array-like (N,) of hashable values
        The kind of each window (strings, integers, tuples...; missing values, NaN or
        None, count as one label of their own).
    power : float
        A window's weight is (number of windows of its label) ** -power: 1 draws every
        label equally often, 0 leaves the data's proportions, values between soften
        the balancing.

    Returns
    -------
    ndarray (N,), float64
        Weights of mean 1, for ``fit_rvae(sample_weights=...)``.
    """
    if not (np.isfinite(power) and power >= 0):
        raise ValueError(f"power must be a non-negative number, got {power}")
    codes, _ = pd.factorize(pd.Series(list(labels), dtype=object), use_na_sentinel=False)
    if len(codes) == 0:
        raise ValueError("labels is empty: need the label of at least one window")
    weights = np.bincount(codes)[codes].astype(np.float64) ** -power
    return weights / weights.mean()


def epoch_order(train_idx: np.ndarray, seed: int, epoch: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """The training windows of one epoch, in the order they are batched.

    Parameters
    ----------
    train_idx : ndarray (M,) of int
        Numbers of the training windows.
    seed, epoch : int
    weights : ndarray (N,), optional
        One non-negative weight per window of the whole stack (indexed by window
        number), with a positive sum over ``train_idx``.

    Returns
    -------
    ndarray (M,) of int
        Without weights, a permutation of ``train_idx`` (every window once). With
        them, M draws with replacement, each window drawn with probability
        proportional to its weight. Both come from generators seeded by (seed,
        epoch), the weighted one from a stream of its own, so that an epoch's order
        never depends on earlier epochs and a resumed run draws what an uninterrupted
        one would.
    """
    if weights is None:
        return np.random.default_rng([seed, epoch]).permutation(train_idx)
    p = weights[train_idx]
    return np.random.default_rng([seed, epoch, 1]).choice(train_idx, size=len(train_idx),
                                                          replace=True, p=p / p.sum())


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """``sample_weights`` as float64, or a ValueError that says what is wrong."""
    if weights is None:
        return None
    try:
        weights = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sample_weights must be numbers ({err})") from None
    if weights.shape != (n,):
        raise ValueError(f"sample_weights must hold one weight per window: shape ({n},), "
                         f"got {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError("sample_weights contain NaN or infinite values")
    if (weights < 0).any():
        raise ValueError(f"sample_weights must be non-negative, got {weights.min()}")
    if not weights.any():
        raise ValueError("sample_weights are all zero")
    return weights


def open_windows(windows: np.ndarray | str | Path) -> np.ndarray:
    """A (N, w, w) or (N, c, w, w) window stack from an array or a .npy file
    (memory-mapped)."""
    if isinstance(windows, str | Path):
        path = Path(windows)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such window file")
        try:
            windows = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if windows.ndim not in (3, 4) or windows.shape[-1] != windows.shape[-2]:
        raise ValueError(f"windows must have shape (N, w, w) or (N, channels, w, w) with "
                         f"square windows, got {windows.shape}")
    if windows.shape[0] < 2 or windows.shape[-1] < 4 or windows.shape[1] < 1:
        raise ValueError(f"need at least 2 windows of at least 4x4 px, got {windows.shape}")
    if not np.issubdtype(windows.dtype, np.number) or np.iscomplexobj(windows):
        raise ValueError(f"windows must be real numbers, got dtype {windows.dtype}")
    return windows


def window_statistics(windows: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, min and max, chunk by chunk; checks for NaN/inf."""
    total, total_sq, count = 0.0, 0.0, 0
    lo, hi = np.inf, -np.inf
    for start in range(0, len(windows), _CHUNK):
        chunk = np.asarray(windows[start:start + _CHUNK], dtype=np.float32)
        bad = ~np.isfinite(chunk)
        if bad.any():
            first = start + int(np.flatnonzero(bad.reshape(len(chunk), -1).any(1))[0])
            raise ValueError(f"windows contain NaN or infinite values (first in window "
                             f"{first})")
        total += float(chunk.sum(dtype=np.float64))
        total_sq += float((chunk.astype(np.float64) ** 2).sum())
        count += chunk.size
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
    return {"mean": mean, "std": std, "min": lo, "max": hi}


#: planned training work, in floating-point operations of the decoder, from which
#: ``compile="auto"`` compiles, per device type. On the 2-core dev CPU a STEM model's
#: 4,000 steps of the 3 x 128 decoder on 16 x 16 windows (1e13 operations) took 28 ms a
#: step compiled and 42 ms eager on one thread (1,200 steps of the demo's hollow
#: windows: 38.7 s against 49.6-52.5 s, the compiled graphs cached), and compiling
#: costs 2-9 s with the graphs cached on the machine, 23-45 s the first time; a
#: 1,200-window, 2-epoch ``latentpath rvae`` job of the paper's 4 x 256 (4e12) does not
#: repay it (17 s eager in all). A GPU does the same work some 100 times faster while
#: compiling takes as long (an estimate: not measured here).
COMPILE_MIN_FLOP = {"cpu": 6e12, "cuda": 1e15}


def compile_cache_dir() -> Path:
    """The folder that keeps ``torch.compile``'s kernels between runs (used unless
    ``TORCHINDUCTOR_CACHE_DIR`` names another): latentpath's folder in the user's
    cache directory (``$XDG_CACHE_HOME``, else ``~/.cache``). Safe to delete: the next
    training compiles again (23-45 s on a CPU instead of 2-10 s).

    Examples
    --------
    >>> compile_cache_dir().name
    'torch-compile'
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latentpath" / "torch-compile"


def compile_pays(steps: int, batch_size: int, pixels: int, hidden: int, layers: int,
                 device: torch.device | str) -> bool:
    """Whether ``torch.compile`` is likely to repay its warm-up on a training of
    ``steps`` batches of ``batch_size`` windows of ``pixels`` decoded values each, on
    a decoder of ``layers`` x ``hidden`` units: whether its matrix products, forward
    and backward, exceed :data:`COMPILE_MIN_FLOP` for the device's type.

    Examples
    --------
    >>> compile_pays(4000, 32, 16 * 16, 128, 3, "cpu")  # a STEM model on a CPU
    True
    >>> compile_pays(24, 100, 32 * 32, 256, 4, "cpu")  # 1,200 windows for 2 epochs
    False
    >>> compile_pays(300 * 617, 100, 70 * 70, 256, 4, "cuda")  # the paper's training
    True
    """
    flop = 6.0 * steps * batch_size * pixels * hidden * hidden * layers
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    return flop >= COMPILE_MIN_FLOP[kind]


def _batch(windows: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    # Sorted reads are sequential on a memory map; order within a batch does not matter.
    return torch.from_numpy(np.asarray(windows[np.sort(idx)], dtype=np.float32)).to(device)


class _BatchLoss(nn.Module):
    """One batch's reconstruction and KL terms: the part of a step worth compiling, and
    the module DistributedDataParallel wraps, so that its backward pass exchanges the
    model's gradients."""

    def __init__(self, model: SkipRVAE, pixel_weights: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        # (w * w,) loss weight of each pixel, mean 1; None: all alike
        self.pixel_weights = pixel_weights

    def forward(self, x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor,
                bfloat16: bool, pixels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            recon, mu, logvar = self.model.reconstruct(x, eps, pixels)
        weights = self.pixel_weights
        if pixels is None:
            return self.model.loss(x, recon.float(), mu.float(), logvar.float(), kl_weight,
                                   weights)
        # the sampled pixels' error scaled up to the whole window: an unbiased estimate
        # of the full reconstruction term, so its balance with the KL term is unchanged
        target = x.flatten(-2)[..., pixels]
        rec, kl = self.model.loss(target, recon.float(), mu.float(), logvar.float(),
                                  kl_weight, None if weights is None else weights[pixels])
        return rec * (x.shape[-1] * x.shape[-2] / len(pixels)), kl


def fit_rvae(
    windows: np.ndarray | str | Path,
    out_dir: str | Path,
    *,
    latent_dim: int = 2,
    hidden: int = 256,
    layers: int = 4,
    skip: str = "latent",
    loss: str = "mse",
    angle_prior_rad: float = 0.1,
    translation_prior: float = 0.1,
    epochs: int = 20,
    batch_size: int = 100,
    lr: float = 1e-4,
    kl_weight: float = 1.0,
    kl_warmup_epochs: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    compile: bool | str = "auto",
    resume: bool = False,
    progress: bool = True,
    patience: int | None = None,
    min_delta: float = 1e-3,
    max_steps: int | None = None,
    min_steps: int | None = None,
    time_budget_s: float | None = None,
    sample_weights: np.ndarray | None = None,
    cooldown: float = 0.0,
    pixel_fraction: float = 1.0,
    pixel_weights: np.ndarray | None = None,
    neighbour_weight: float = 0.0,
    neighbour_batch: int = 64,
    neighbour_k: int = 10,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Train a skip-rVAE on windows and keep the best model in ``out_dir``.

    Parameters
    ----------
    windows : ndarray (N, w, w) or (N, c, w, w), or path to .npy
        Any real dtype; a .npy is memory-mapped.
    out_dir : path
        Model directory: the best model by validation loss (``config.json`` +
        ``weights.safetensors``) and the last epoch's checkpoint.
    latent_dim, hidden, layers, skip, loss, angle_prior_rad, translation_prior
        See :class:`~latentpath.rvae.model.RVAEConfig`.
    epochs, batch_size, lr : int, int, float
        Adam schedule.
    kl_weight : float
        Weight of the KL term (beta; 1 is the plain VAE). Below 1 the latents carry
        more detail and reconstructions are sharper, at the price of a less regular
        latent space.
    kl_warmup_epochs : int
        The KL weight ramps linearly from 0 to ``kl_weight`` over these epochs (0: no
        ramp).
    val_fraction : float
        Share of windows held out for the validation loss.
    seed : int
        Seeds the split, the shuffling, the initial weights and the sampling noise.
    device : {"auto", "cpu", "cuda", ...}
    precision : {"auto", "float32", "bfloat16"}
        "bfloat16" runs the matrix products of the forward pass under bfloat16
        autocast (weights, optimiser and loss stay float32): about twice the
        throughput on CPUs with bfloat16 units and on GPUs, at the same loss. "auto"
        takes it where the device has native bfloat16 (see
        :func:`latentpath.device.has_fast_bfloat16`), float32 elsewhere.
    compile : bool or "auto"
        Compile the forward pass and loss with ``torch.compile``: it fuses the
        decoder's per-pixel element-wise work, and its steps are 5-35 % faster after
        a warm-up of 10 s (compiled graphs cached on this machine) to 45 s (the first
        time). "auto" (the default) compiles only where the planned training is long
        enough to repay that (:func:`compile_pays`). If compiling fails (no C++
        compiler, unsupported platform) training warns and goes on without it.
    resume : bool
        Continue from the checkpoint in ``out_dir``; without it an existing
        checkpoint is an error (nothing is overwritten, see ``overwrite``). A run that stopped for
        "converged" or "max_steps" returns at once; one that stopped at the epoch
        ceiling or the time budget trains on (to a higher ``epochs``, with a new
        budget). Other ``patience``, ``min_delta``, ``max_steps``, ``min_steps`` or
        ``sample_weights`` than the checkpoint's are refused, as other settings are;
        ``epochs`` and ``time_budget_s`` may change.
    patience : int, optional
        Stop once the validation loss (checked after every epoch) has not improved
        for this many checks in a row (not before ``min_steps``). Improving means
        falling below the reference by more than ``min_delta`` of it: ``val < ref *
        (1 - min_delta)``, where the reference is the loss of the last such
        improvement (as Keras' and Lightning's early stopping), so a slow steady
        descent still counts. None: no early stop.
    min_delta : float
        Relative improvement, in [0, 1), that resets the patience count.
    max_steps : int, optional
        Ceiling on optimiser steps (batches), over all calls of a resumed run. The
        epoch that reaches it stops part-way, so exactly ``max_steps`` steps are
        done; it is validated and checkpointed as a whole epoch would be.
    min_steps : int, optional
        The patience does not end training before this many optimiser steps (the
        other stops still do), nor before ``1 - cooldown`` of the most steps that
        ``epochs`` and ``max_steps`` allow, so that a floor out of their reach still
        leaves room for the cool-down. Patience counts epochs, and a small dataset's
        epochs are short: one real 512 x 512 image gives a STEM run some 400 atom
        windows, 12 steps an epoch, so 10 epochs without a better validation loss (on
        40 windows, which swings by chance) came after 291-840 steps, and on one seed
        the map then named no structure at all (docs/chemical-space.md). None: no
        floor.
    time_budget_s : float, optional
        Wall-clock budget of this call, seconds, from its start (setup included):
        training stops after the epoch in which it ran out. Where it stops depends
        on the machine's speed, so such a run is not reproducible; a resumed call
        gets a budget of its own.
    sample_weights : ndarray (N,), optional
        Non-negative weight per window (see :func:`balanced_weights`). Each epoch
        then draws as many training windows as there are, with replacement and in
        proportion to their weights (:func:`epoch_order`); the validation windows
        and their loss stay unweighted. None: every training window once per epoch.
    cooldown : float
        Share of the training, in [0, 1), spent at the end with the learning rate
        falling from ``lr`` to zero (half a cosine). It begins when the patience runs
        out, lasting ``cooldown / (1 - cooldown)`` of the steps done by then, or at
        ``(1 - cooldown) * max_steps``, whichever comes first, and it always ends by
        ``max_steps``; the patience is not counted during it. At a constant rate the
        last steps hop around the minimum (the validation loss of the STEM runs swings
        by 10 % from epoch to epoch at lr 3e-3) and a noisy validation loss ends
        training by chance; the cool-down settles the model instead
        (docs/chemical-space.md). It needs ``patience`` or ``max_steps``; 0: none.
    pixel_fraction : float
        Share of each window's pixels, in (0, 1], the decoder draws and the loss
        compares in a training step: a fresh random set every step, the same for the
        whole batch, its error scaled to the whole window. The decoder's cost, nearly
        all of a step's, falls in proportion; the validation loss compares whole
        windows. 1: every pixel (and no draw from the noise generator).
    pixel_weights : ndarray (w, w), optional
        Weight of each pixel's reconstruction error, in training and validation alike
        (scaled to mean 1, so the balance with the KL term holds): e.g. more weight at
        the centre, where a window's structure is. None: every pixel alike.
    neighbour_weight : float
        Weight of a term that keeps each window's nearest windows near it in the plane
        of the content latents (:mod:`latentpath.rvae.neighbours`; t-SNE's loss, as in
        VAE-SNE): the windows' ``neighbour_k`` nearest windows are found once, in 32
        principal components of the training windows, and every step draws
        ``neighbour_batch`` training windows (as the epoch draws them) with one
        neighbour each. The reconstruction alone spends two latents on what explains
        most pixels; on atom windows this lifted the plane's 5-NN balanced accuracy
        over their ring structures from 0.60 to 0.77 (weight 200; docs/chemical-space.md). It
        needs windows turned to a common frame, whose pixels can be compared as they
        are. 0 (the default): the plain skip-rVAE.
    neighbour_batch, neighbour_k : int
        Windows drawn per step for the neighbour term, and neighbours found per window
        (at most the training windows less one).
    overwrite : bool
        Start afresh in an ``out_dir`` that holds a model's files (``config.json``,
        ``weights.safetensors``, a checkpoint): they are replaced. Without it, and
        without a checkpoint to resume, any of them is an error.

    Returns
    -------
    DataFrame
        Per epoch: ``epoch, train_loss, train_recon, train_kl, val_loss, seconds,
        windows_per_s, steps`` (``steps``: optimiser steps done by the end of the
        epoch). ``attrs["stop"]`` is the :class:`TrainingStop`, also written to the
        model's ``config.json`` (read it with :func:`training_record`).

    Raises
    ------
    TrainingDivergedError
        The loss of an epoch is not finite, or its validation loss is more than
        :data:`DIVERGED_FACTOR` times the untrained model's: the learning rate is too
        high. The epoch is neither kept as the model nor checkpointed.
    """
    started = time.perf_counter()
    data = open_windows(windows)
    weights = _check_weights(sample_weights, len(data))
    _check_training(val_fraction=val_fraction, kl_weight=kl_weight, epochs=epochs,
                    batch_size=batch_size, patience=patience, max_steps=max_steps,
                    min_steps=min_steps, min_delta=min_delta, cooldown=cooldown,
                    pixel_fraction=pixel_fraction, time_budget_s=time_budget_s)
    check_float("neighbour_weight", neighbour_weight, minimum=0)
    check_int("neighbour_batch", neighbour_batch, 1)
    check_int("neighbour_k", neighbour_k, 1)
    pixel_weights = _check_pixel_weights(pixel_weights, data.shape[-2:])
    out_dir = Path(out_dir)
    resuming = resume and (out_dir / CHECKPOINT).exists()
    replaced = [] if resuming else _files_to_replace(out_dir, overwrite)
    device = resolve_device(device)
    group = process_group(device)
    device = local_device(device, group)
    progress = progress and group.main
    precision = "bfloat16" if uses_bfloat16(precision, device) else "float32"
    model = _new_model(data, seed, device, latent_dim=latent_dim, hidden=hidden,
                       layers=layers, angle_prior_rad=angle_prior_rad,
                       translation_prior=translation_prior, loss=loss, skip=skip)
    optimizer = Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, round(val_fraction * len(data)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if weights is not None and not weights[train_idx].any():
        raise ValueError(f"sample_weights are zero on all {len(train_idx)} training "
                         "windows (the non-zero ones fell in the validation share)")
    n_batches = -(-len(train_idx) // batch_size)
    n_pixels = data.shape[-1] * data.shape[-2]
    n_drawn = max(1, round(pixel_fraction * n_pixels)) if pixel_fraction < 1 else None
    planned = epochs * n_batches if max_steps is None else min(epochs * n_batches, max_steps)
    floor = None if min_steps is None else min(min_steps, int((1 - cooldown) * planned))
    if compile == "auto":
        compile = compile_pays(planned, batch_size,
                               (n_drawn or n_pixels) * model.config.channels, hidden,
                               layers, device)
    elif not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    settings = {"n_windows": len(data), "window_px": data.shape[-1],
                "channels": model.config.channels, "seed": seed,
                "batch_size": batch_size, "val_fraction": val_fraction,
                "kl_weight": kl_weight, "kl_warmup_epochs": kl_warmup_epochs,
                "precision": precision,
                "compile": bool(compile), "patience": patience, "min_delta": min_delta,
                "max_steps": max_steps, "min_steps": min_steps, "cooldown": cooldown,
                "pixel_fraction": pixel_fraction, "pixel_weights": _digest(pixel_weights),
                "sample_weights": _digest(weights), "neighbour_weight": neighbour_weight,
                "neighbour_batch": neighbour_batch, "neighbour_k": neighbour_k}
    if resuming:
        state = _resumed_state(out_dir, model, optimizer, gen, settings, n_batches)
    else:
        state = _fresh_state(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a fresh start: the replaced model's files go first, so that a kill cannot leave
    # its checkpoint to be resumed as this training's
    for stale in replaced:
        stale.unlink()
    weights_t = None if pixel_weights is None else \
        torch.from_numpy(pixel_weights.reshape(-1)).to(device)
    steps = _Steps(model, optimizer, gen, data, device, group, lr,
                   _loss_terms(model, weights_t, group, device, compile), n_pixels, n_drawn,
                   precision == "bfloat16")
    steps.neighbours = NeighbourTerm.build(
        neighbour_weight, neighbour_batch, neighbour_k,
        lambda rows: model.normalize(_batch(data, rows, device)), train_idx, val_idx)
    # a run that converged or hit its step ceiling would stop again at once
    first = epochs + 1 if state["stop"] in _FINAL_STOPS else state["epoch"] + 1
    if first <= epochs and "initial_val" not in state:
        # the yardstick of divergence: what a model that learned nothing scores
        state["initial_val"] = steps.validation_loss(val_idx, batch_size, seed, kl_weight,
                                                     weights_t)
    for epoch in range(first, epochs + 1):
        # A tensor, not a float, so that a KL warm-up does not recompile every epoch.
        beta = torch.tensor(kl_weight * (min(1.0, epoch / kl_warmup_epochs)
                                         if kl_warmup_epochs else 1.0), device=device)
        start = time.perf_counter()
        shuffled = epoch_order(train_idx, seed, epoch, weights)
        batches = range(0, len(shuffled), batch_size)
        last = _last_step(state, max_steps, cooldown)
        if last is not None:
            # the epoch that reaches the ceiling (or the cool-down's start or end) stops
            # part-way: exactly that many steps
            batches = batches[:last - state["steps"]]
        seen = min(len(shuffled), len(batches) * batch_size)
        sums = steps.epoch(shuffled, batches, batch_size, beta, state,
                           desc=f"epoch {epoch}/{epochs}", progress=progress)
        seconds = time.perf_counter() - start
        val = steps.validation_loss(val_idx, batch_size, seed, kl_weight, weights_t)
        _check_divergence(epoch, sums.sum() / seen, val, state["initial_val"], lr)
        row = _epoch_row(epoch, sums, seen, val, seconds, state["steps"])
        state["history"].append(row)
        if progress:
            print(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.2f} (recon "
                  f"{row['train_recon']:.2f}, KL {row['train_kl']:.2f}), val {val:.2f}, "
                  f"{row['windows_per_s']:.0f} windows/s")
        # Every process decides alike: the validation loss is summed over them all and
        # the clock's verdict is too.
        out_of_time = time_budget_s is not None and group.all_sum(
            [time.perf_counter() - started > time_budget_s], device)[0] > 0
        state["stop"] = _stop_after(state, val, last_epoch=epoch == epochs,
                                    out_of_time=out_of_time, patience=patience,
                                    min_delta=min_delta, max_steps=max_steps,
                                    min_steps=floor, cooldown=cooldown)
        state["epoch"] = epoch
        _checkpoint(state, val, steps, out_dir, lr, epochs)
        if state["stop"]:
            break
    if state["stop"] not in _FINAL_STOPS and state["epoch"] >= epochs:
        # resumed at the epoch ceiling (after a time-budget stop, or from a checkpoint
        # written before stops were recorded): nothing was trained
        state["stop"] = "epochs"
    # Written after the checkpoint, and again by any later resume: a kill between the
    # two leaves a checkpoint that returns at once and completes the record.
    if group.main and (out_dir / MODEL_CONFIG).exists():
        update_training_record(out_dir, _record(state, lr, epochs))
    group.barrier()  # every process returns once the model is written
    history = pd.DataFrame(state["history"])
    history.attrs["stop"] = TrainingStop(reason=state["stop"], steps=state["steps"],
                                         epochs_run=state["epoch"],
                                         best_epoch=state["best_epoch"],
                                         best_val_loss=state["best_val"])
    return history


def _digest(weights: np.ndarray | None) -> str | None:
    """A short hash of sample or pixel weights for the checkpoint's settings: resuming
    with other weights is refused without storing them."""
    return None if weights is None else hashlib.sha256(weights.tobytes()).hexdigest()[:16]


def _epoch_row(epoch: int, sums: np.ndarray, seen: int, val: float, seconds: float,
               steps: int) -> dict:
    """One epoch of the history, from the reconstruction and KL terms summed over the
    ``seen`` training windows."""
    return {"epoch": epoch, "train_loss": sums.sum() / seen, "train_recon": sums[0] / seen,
            "train_kl": sums[1] / seen, "val_loss": val, "seconds": seconds,
            "windows_per_s": seen / seconds, "steps": steps}


def _files_to_replace(out_dir: Path, overwrite: bool) -> list[Path]:
    """A fresh training's model files already in ``out_dir``: an error naming the first,
    unless ``overwrite``."""
    found = [out_dir / name for name in (MODEL_CONFIG, WEIGHTS, CHECKPOINT)
             if (out_dir / name).exists()] + sorted(out_dir.glob("checkpoint*.safetensors"))
    if found and not overwrite:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        hint = ("resume=True (--resume) to continue its checkpoint, "
                if (out_dir / CHECKPOINT).exists() else "")
        raise FileExistsError(f"{found[0]}{more} already exists; pass {hint}overwrite=True "
                              "(--overwrite) to replace the model, or choose another "
                              "directory")
    return found


def _new_model(data: np.ndarray, seed: int, device: torch.device, *, loss: str,
               **architecture) -> SkipRVAE:
    """The untrained model for ``data``: its normalisation from the windows' statistics,
    its weights seeded without touching the caller's global torch RNG."""
    stats = window_statistics(data)
    if loss == "bce":
        offset, scale = stats["min"], max(stats["max"] - stats["min"], 1e-12)
    else:
        offset, scale = stats["mean"], max(stats["std"], 1e-12)
    channels = data.shape[1] if data.ndim == 4 else 1
    config = RVAEConfig(window_px=data.shape[-1], channels=channels, loss=loss,
                        offset=offset, scale=scale, **architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SkipRVAE(config).to(device)


def _fresh_state(settings: dict) -> dict:
    """The training state before the first epoch. patience_ref: the validation loss of
    the last improvement by more than min_delta; bad_checks: the checks since then.
    Kept in the checkpoint, so that a resumed run stops where an uninterrupted one
    would. cooldown_from/_steps: where the cool-down began and its length (None before
    it), with the reason it will end with; also kept, so the learning rate of every
    step is a function of the state."""
    return {"epoch": 0, "history": [], "best_val": float("inf"), "settings": settings,
            "steps": 0, "best_epoch": None, "patience_ref": None, "bad_checks": 0,
            "stop": None, "cooldown_from": None, "cooldown_steps": None,
            "cooldown_stop": None}


def _stepping(settings: dict) -> dict:
    """The recorded ``settings`` that decide the training's steps."""
    # compiled or not, the steps are the same (to the last bits of the rounding); without
    # the neighbour term, its batch and k decide nothing
    out = {**_UNSET, **settings, "compile": None}
    if out["neighbour_weight"] == 0:
        out["neighbour_batch"] = out["neighbour_k"] = None
    return out


def _resumed_state(out_dir: Path, model: SkipRVAE, optimizer: Adam,
                   gen: torch.Generator, settings: dict, n_batches: int) -> dict:
    """The checkpoint's state, loaded into the model, optimiser and generator; refused
    if it was made with other data or settings."""
    state = load_checkpoint(out_dir, model, optimizer, gen)
    _check_state(state, out_dir / CHECKPOINT)
    if _stepping(state["settings"]) != _stepping(settings):
        raise ModelFileError(f"{out_dir}: checkpoint was made with other data or "
                             f"settings ({state['settings']} vs {settings})")
    if "steps" not in state:
        _fill_stop_state(state, n_batches)
    for key in ("cooldown_from", "cooldown_steps", "cooldown_stop"):
        state.setdefault(key, None)
    state["settings"] = settings
    return state


def _loss_terms(model: SkipRVAE, pixel_weights: torch.Tensor | None, group: Group,
                device: torch.device, compile: bool) -> nn.Module | _Compiled:
    """The module a step calls for its loss terms: wrapped for distributed training
    where there are several processes, compiled where ``compile``."""
    plain = _BatchLoss(model, pixel_weights)
    if group.world > 1:
        plain = DistributedDataParallel(
            plain, device_ids=[device.index] if device.type == "cuda" else None)
    if not compile:
        return plain
    # torch keeps compiled kernels in the temporary folder, which a reboot empties: the
    # user's cache directory keeps them between sessions (an explicit
    # TORCHINDUCTOR_CACHE_DIR wins)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
    return _Compiled(torch.compile(plain, dynamic=True), plain)


@dataclass
class _Compiled:
    """A compiled loss module with its plain one to fall back on."""

    compiled: nn.Module
    plain: nn.Module


@dataclass
class _Steps:
    """What every optimiser step of one training uses, and one epoch of them."""

    model: SkipRVAE
    optimizer: Adam
    gen: torch.Generator
    data: np.ndarray
    device: torch.device
    group: Group
    lr: float
    terms: nn.Module | _Compiled
    n_pixels: int
    n_drawn: int | None
    bf16: bool
    neighbours: NeighbourTerm | None = None

    def epoch(self, shuffled: np.ndarray, batches: range, batch_size: int,
              beta: torch.Tensor, state: dict, *, desc: str, progress: bool) -> np.ndarray:
        """Train on ``batches`` of ``shuffled`` (advancing ``state["steps"]``); returns
        the summed reconstruction and KL terms over the windows seen."""
        self.model.train()
        n_latents = 3 + self.model.config.latent_dim
        sums = np.zeros(2)
        for b in tqdm(batches, desc=desc, disable=not progress, leave=False):
            rows = np.sort(shuffled[b:b + batch_size])
            # the noise of the whole batch, so that each rank draws what one process would
            eps = torch.randn((len(rows), n_latents), generator=self.gen, device=self.device)
            pixels = None if self.n_drawn is None else torch.randperm(
                self.n_pixels, generator=self.gen, device=self.device)[:self.n_drawn]
            mine = self.group.shard(rows)
            # each rank's mean loss weighed by its share of the batch: the averaged
            # gradients are the whole batch's
            share = len(mine) * self.group.world / len(rows)
            if len(mine) == 0:  # a short last batch: take part in the exchange, add nothing
                mine = np.array([0])
            x = self.model.normalize(_batch(self.data, rows[mine], self.device))
            rec, kl = self._terms(x, eps[mine], beta, pixels)
            self.optimizer.lr = _step_lr(state, self.lr)
            self.optimizer.zero_grad()
            total = (rec + kl) * share
            if self.neighbours is not None:
                total = total + self.neighbours.step(self.content, shuffled, self.gen)
            total.backward()
            self.optimizer.step()
            state["steps"] += 1
            n = len(x) if share else 0
            sums += [float(rec.detach()) * n, float(kl.detach()) * n]
        return self.group.all_sum(sums, self.device)

    def content(self, rows: np.ndarray) -> torch.Tensor:
        """The content latents' means (N, k) of the windows in ``rows``."""
        x = torch.from_numpy(np.asarray(self.data[rows], dtype=np.float32)).to(self.device)
        return self.model.encode(self.model.normalize(x))[0][:, 3:]

    def validation_loss(self, idx: np.ndarray, batch_size: int, seed: int,
                        kl_weight: float, pixel_weights: torch.Tensor | None) -> float:
        """:func:`_validation_loss`, plus the neighbour term's validation value."""
        val = _validation_loss(self.model, self.data, idx, batch_size, self.device, seed,
                               kl_weight, self.group, pixel_weights, self.bf16)
        return val + (0.0 if self.neighbours is None
                      else self.neighbours.validation(self.content))

    def _terms(self, x: torch.Tensor, eps: torch.Tensor, beta: torch.Tensor,
               pixels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.terms, _Compiled):
            return self.terms(x, eps, beta, self.bf16, pixels)
        try:
            return self.terms.compiled(x, eps, beta, self.bf16, pixels)
        except Exception as err:  # torch.compile fails lazily, at the first call
            warnings.warn(f"torch.compile failed, training without it: "
                          f"{str(err).splitlines()[0]}", RuntimeWarning, stacklevel=4)
            self.terms = self.terms.plain
            return self.terms(x, eps, beta, self.bf16, pixels)


def _checkpoint(state: dict, val: float, steps: _Steps, out_dir: Path, lr: float,
                epochs: int) -> None:
    """After an epoch: the model if its validation loss ``val`` is the best yet, and the
    checkpoint to resume from (by the main process only)."""
    if val < state["best_val"]:
        state["best_val"], state["best_epoch"] = val, state["epoch"]
        if steps.group.main:
            save_rvae(steps.model, out_dir, training=_record(state, lr, epochs))
    if steps.group.main:
        save_checkpoint(out_dir, steps.model, steps.optimizer, steps.gen, state)


#: what a checkpoint's state holds, by type: anything else is a damaged or edited file
_STATE_TYPES = {"epoch": int, "history": list, "best_val": float, "settings": dict,
                "steps": int, "bad_checks": int, "stop": (str, type(None)),
                "patience_ref": (float, type(None)), "best_epoch": (int, type(None)),
                "initial_val": float, "cooldown_from": (int, type(None)),
                "cooldown_steps": (int, type(None)), "cooldown_stop": (str, type(None))}


def _check_state(state: dict, path: Path) -> None:
    """Refuse a checkpoint whose state training did not write as it stands."""
    for key in ("epoch", "history", "best_val", "settings"):
        if key not in state:
            raise ModelFileError(f"{path}: damaged checkpoint (no {key!r}); delete the "
                                 "checkpoint or train into a new directory")
    for key, kind in _STATE_TYPES.items():
        value = state.get(key)
        if key in state and (isinstance(value, bool) or not isinstance(
                value, (int, float) if kind is float else kind)):
            raise ModelFileError(f"{path}: damaged checkpoint ({key!r} is {value!r}); "
                                 "delete the checkpoint or train into a new directory")
    if not all(isinstance(row, dict) for row in state["history"]):
        raise ModelFileError(f"{path}: damaged checkpoint (its history is not a list of "
                             "epochs); delete the checkpoint or train into a new directory")


def _check_divergence(epoch: int, train_loss: float, val: float, initial: float,
                      lr: float) -> None:
    """Stop a training whose loss went non-finite or far above the untrained model's."""
    limit = DIVERGED_FACTOR * abs(initial) if np.isfinite(initial) else np.inf
    if np.isfinite(train_loss) and np.isfinite(val) and val <= limit:
        return
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch}: training loss {train_loss:.3g}, validation "
        f"loss {val:.3g} against {initial:.3g} before training; lower the learning rate "
        f"(lr={lr:g}, --lr) and train again in a new directory")


def _record(state: dict, lr: float, epochs: int) -> dict:
    """The training record of the model directory's ``config.json``: the best epoch,
    the settings, and how far training went (``stop_reason`` None while it runs)."""
    return {"best_epoch": state["best_epoch"], "val_loss": state["best_val"],
            **state["settings"], "lr": lr, "epochs": epochs, "steps": state["steps"],
            "epochs_run": state["epoch"], "stop_reason": state["stop"]}


def _check_training(*, val_fraction: float, kl_weight: float, epochs: int, batch_size: int,
                    patience: int | None, max_steps: int | None, min_delta: float,
                    cooldown: float, pixel_fraction: float, time_budget_s: float | None,
                    min_steps: int | None) -> None:
    """Refuse training settings out of their ranges (ValueError naming the setting)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not (np.isfinite(kl_weight) and kl_weight > 0):
        raise ValueError(f"kl_weight must be a positive number, got {kl_weight}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    for name, value in (("patience", patience), ("max_steps", max_steps),
                        ("min_steps", min_steps)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value}")
    if not 0 <= min_delta < 1:
        raise ValueError(f"min_delta must lie in [0, 1), got {min_delta}")
    if not 0 <= cooldown < 1:
        raise ValueError(f"cooldown must lie in [0, 1), got {cooldown}")
    if not 0 < pixel_fraction <= 1:
        raise ValueError(f"pixel_fraction must lie in (0, 1], got {pixel_fraction}")
    if cooldown and patience is None and max_steps is None:
        raise ValueError("a cooldown needs patience or max_steps to say when it begins")
    if time_budget_s is not None and not (np.isfinite(time_budget_s) and time_budget_s > 0):
        raise ValueError(f"time_budget_s must be a positive number of seconds or None, "
                         f"got {time_budget_s}")


def _check_pixel_weights(pixel_weights: np.ndarray | None, shape: tuple[int, ...]
                         ) -> np.ndarray | None:
    """The reconstruction's pixel weights, checked against the windows' ``shape`` and
    scaled to mean 1 (None stays None)."""
    if pixel_weights is None:
        return None
    pixel_weights = np.asarray(pixel_weights, dtype=np.float32)
    if pixel_weights.shape != tuple(shape) or not np.isfinite(pixel_weights).all() \
            or (pixel_weights < 0).any() or not pixel_weights.any():
        raise ValueError(f"pixel_weights must be non-negative finite numbers, one per "
                         f"pixel of the {tuple(shape)} windows, not all zero")
    return pixel_weights / pixel_weights.mean()


def _stop_after(state: dict, val: float, *, last_epoch: bool, out_of_time: bool,
                patience: int | None, min_delta: float, max_steps: int | None,
                cooldown: float, min_steps: int | None) -> str | None:
    """Why training stops after an epoch whose validation loss is ``val`` (None: it goes
    on), updating the patience count and the cool-down in ``state``. The deterministic
    reasons go first, so that the reason is reproducible wherever one of them applies."""
    ref = state["patience_ref"]
    # once the cool-down has begun it runs its course: the patience no longer counts
    if state["cooldown_from"] is None:
        if (ref is None and np.isfinite(val)) or (ref is not None and
                                                  val < ref - min_delta * abs(ref)):
            state["patience_ref"], state["bad_checks"] = val, 0
        else:
            state["bad_checks"] += 1
    final = None
    if state["cooldown_from"] is not None:
        if state["steps"] >= state["cooldown_from"] + state["cooldown_steps"]:
            final = state["cooldown_stop"]
    elif (patience is not None and state["bad_checks"] >= patience
          and state["steps"] >= (min_steps or 0)):
        final = _begin_cooldown(state, "converged", max_steps, cooldown)
    elif max_steps is not None and state["steps"] >= max_steps * (1 - cooldown):
        final = _begin_cooldown(state, "max_steps", max_steps, cooldown)
    return final or ("epochs" if last_epoch else "time_budget" if out_of_time else None)


def _begin_cooldown(state: dict, reason: str, max_steps: int | None,
                    cooldown: float) -> str | None:
    """Start the cool-down for a stop of ``reason`` at the current step; returns the stop
    (``reason``) if there is none to run."""
    steps = state["steps"]
    if not cooldown:
        return reason
    if reason == "max_steps":
        length = max_steps - steps
    else:
        length = round(steps * cooldown / (1 - cooldown))
        if max_steps is not None:
            length = min(length, max_steps - steps)
    if length < 1:
        return reason
    state.update(cooldown_from=steps, cooldown_steps=length, cooldown_stop=reason)
    return None


def _last_step(state: dict, max_steps: int | None, cooldown: float) -> int | None:
    """The step at which the current epoch must stop part-way: the step ceiling, the
    cool-down's end, or its scheduled start (None: the epoch runs whole)."""
    if state["cooldown_from"] is not None:
        return state["cooldown_from"] + state["cooldown_steps"]
    if max_steps is None:
        return None
    return int(np.ceil(max_steps * (1 - cooldown)))


def _step_lr(state: dict, lr: float) -> float:
    """The learning rate of the next step: ``lr``, then half a cosine down to zero over
    the cool-down."""
    if state["cooldown_from"] is None:
        return lr
    done = (state["steps"] - state["cooldown_from"]) / state["cooldown_steps"]
    return lr * 0.5 * (1 + np.cos(np.pi * min(done, 1.0)))


def _fill_stop_state(state: dict, n_batches: int) -> None:
    """Complete a checkpoint written before stops were recorded. Those runs had no step
    ceiling, so every epoch took ``n_batches`` steps; they had no patience either, so
    its counters start afresh (a patience differing from theirs is refused)."""
    for row in state["history"]:
        row["steps"] = row["epoch"] * n_batches
    best = [row["epoch"] for row in state["history"] if row["val_loss"] == state["best_val"]]
    state.update(steps=state["epoch"] * n_batches, best_epoch=best[0] if best else None,
                 patience_ref=None, bad_checks=0, stop=None)


@torch.no_grad()
def _validation_loss(model: SkipRVAE, data: np.ndarray, idx: np.ndarray, batch_size: int,
                     device: torch.device, seed: int, kl_weight: float = 1.0,
                     group: Group | None = None,
                     pixel_weights: torch.Tensor | None = None,
                     bfloat16: bool = False) -> float:
    """Loss on held-out windows with a fixed noise draw, so epochs compare fairly; each
    process takes its share of every batch. The terms are the training steps'
    (:class:`_BatchLoss`, under bfloat16 autocast where ``bfloat16``)."""
    group = group or Group()
    model.eval()
    terms = _BatchLoss(model, pixel_weights)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    total = 0.0
    for b in range(0, len(idx), batch_size):
        rows = np.sort(idx[b:b + batch_size])
        eps = torch.randn((len(rows), 3 + model.config.latent_dim), generator=gen,
                          device=device)
        mine = group.shard(rows)
        if len(mine) == 0:
            continue
        x = model.normalize(_batch(data, rows[mine], device))
        rec, kl = terms(x, eps[mine], kl_weight, bfloat16)
        total += float(rec + kl) * len(x)
    return float(group.all_sum([total], device)[0]) / len(idx)
