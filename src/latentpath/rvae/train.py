"""Training the skip-rVAE: seeded, checkpointed every epoch, resumable, memory-mapped.

Batches are read from the window array (a memory-mapped .npy works, however large)
and converted to float32 one batch at a time, so the data set is never copied whole.
The shuffling order of each epoch is derived from (seed, epoch) and the sampling noise
comes from a ``torch.Generator`` saved in the checkpoint, so a run killed at any moment
and resumed reaches exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from latentpath.device import has_fast_bfloat16, resolve_device
from latentpath.distributed import Group, local_device, process_group
from latentpath.modelfiles import ModelFileError
from latentpath.rvae.files import load_checkpoint, save_checkpoint, save_rvae
from latentpath.rvae.model import RVAEConfig, SkipRVAE

_CHUNK = 4096


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


def _batch(windows: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    # Sorted reads are sequential on a memory map; order within a batch does not matter.
    return torch.from_numpy(np.asarray(windows[np.sort(idx)], dtype=np.float32)).to(device)


class _BatchLoss(nn.Module):
    """One batch's reconstruction and KL terms: the part of a step worth compiling, and
    the module DistributedDataParallel wraps, so that its backward pass exchanges the
    model's gradients."""

    def __init__(self, model: SkipRVAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor, kl_weight: torch.Tensor,
                bfloat16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            recon, mu, logvar = self.model.reconstruct(x, eps)
        return self.model.loss(x, recon.float(), mu.float(), logvar.float(), kl_weight)


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
    compile: bool = True,
    resume: bool = False,
    progress: bool = True,
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
    compile : bool
        Compile the forward pass and loss with ``torch.compile``: it fuses the
        decoder's per-pixel element-wise work and, in the benchmark, trains 1.5x
        faster after a warm-up of about 10 s. If compiling fails (no C++ compiler,
        unsupported platform) training warns and goes on without it.
    resume : bool
        Continue from the checkpoint in ``out_dir``; without it an existing
        checkpoint is an error (nothing is overwritten).

    Returns
    -------
    DataFrame
        Per epoch: ``epoch, train_loss, train_recon, train_kl, val_loss, seconds,
        windows_per_s``.
    """
    data = open_windows(windows)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not (np.isfinite(kl_weight) and kl_weight > 0):
        raise ValueError(f"kl_weight must be a positive number, got {kl_weight}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    out_dir = Path(out_dir)
    if (out_dir / "checkpoint.json").exists() and not resume:
        raise FileExistsError(f"{out_dir} holds a training checkpoint; pass resume=True "
                              "(--resume) to continue it or choose another directory")
    if not resume and (out_dir / "weights.safetensors").exists():
        raise FileExistsError(f"{out_dir} already holds a model; choose another directory")
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', "
                         f"got {precision!r}")
    device = resolve_device(device)
    group = process_group(device)
    device = local_device(device, group)
    progress = progress and group.main
    if precision == "auto":
        precision = "bfloat16" if has_fast_bfloat16(device) else "float32"
    stats = window_statistics(data)
    if loss == "bce":
        offset, scale = stats["min"], max(stats["max"] - stats["min"], 1e-12)
    else:
        offset, scale = stats["mean"], max(stats["std"], 1e-12)
    channels = data.shape[1] if data.ndim == 4 else 1
    config = RVAEConfig(window_px=data.shape[-1], channels=channels, latent_dim=latent_dim,
                        hidden=hidden, layers=layers, angle_prior_rad=angle_prior_rad,
                        translation_prior=translation_prior, loss=loss, skip=skip,
                        offset=offset, scale=scale)
    # Seeded initial weights without touching the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SkipRVAE(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, round(val_fraction * len(data)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    settings = {"n_windows": len(data), "window_px": data.shape[-1], "channels": channels,
                "seed": seed,
                "batch_size": batch_size, "val_fraction": val_fraction,
                "kl_weight": kl_weight, "kl_warmup_epochs": kl_warmup_epochs,
                "precision": precision,
                "compile": bool(compile)}
    state = {"epoch": 0, "history": [], "best_val": float("inf"), "settings": settings}
    if resume and (out_dir / "checkpoint.json").exists():
        state = load_checkpoint(out_dir, model, optimizer, gen)
        if state["settings"] != settings:
            raise ModelFileError(f"{out_dir}: checkpoint was made with other data or "
                                f"settings ({state['settings']} vs {settings})")
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = _BatchLoss(model)
    if group.world > 1:
        plain = DistributedDataParallel(
            plain, device_ids=[device.index] if device.type == "cuda" else None)
    terms = torch.compile(plain, dynamic=True) if compile else plain
    n_latents = 3 + latent_dim
    bf16 = precision == "bfloat16"
    for epoch in range(state["epoch"] + 1, epochs + 1):
        # A tensor, not a float, so that a KL warm-up does not recompile every epoch.
        beta = torch.tensor(kl_weight * (min(1.0, epoch / kl_warmup_epochs)
                                         if kl_warmup_epochs else 1.0), device=device)
        model.train()
        start = time.perf_counter()
        shuffled = np.random.default_rng([seed, epoch]).permutation(train_idx)
        sums = np.zeros(2)
        batches = range(0, len(shuffled), batch_size)
        for b in tqdm(batches, desc=f"epoch {epoch}/{epochs}", disable=not progress,
                      leave=False):
            rows = np.sort(shuffled[b:b + batch_size])
            # the noise of the whole batch, so that each rank draws what one process would
            eps = torch.randn((len(rows), n_latents), generator=gen, device=device)
            mine = group.shard(rows)
            # each rank's mean loss weighed by its share of the batch: the averaged
            # gradients are the whole batch's
            share = len(mine) * group.world / len(rows)
            if len(mine) == 0:  # a short last batch: take part in the exchange, add nothing
                mine = np.array([0])
            x = model.normalize(_batch(data, rows[mine], device))
            try:
                rec, kl = terms(x, eps[mine], beta, bf16)
            except Exception as err:  # torch.compile fails lazily, at the first call
                if terms is plain:
                    raise
                warnings.warn(f"torch.compile failed, training without it: "
                              f"{str(err).splitlines()[0]}", RuntimeWarning, stacklevel=2)
                terms = plain
                rec, kl = terms(x, eps[mine], beta, bf16)
            optimizer.zero_grad()
            ((rec + kl) * share).backward()
            optimizer.step()
            n = len(x) if share else 0
            sums += [float(rec.detach()) * n, float(kl.detach()) * n]
        sums = group.all_sum(sums, device)
        seconds = time.perf_counter() - start
        val = _validation_loss(model, data, val_idx, batch_size, device, seed, kl_weight,
                               group)
        row = {"epoch": epoch, "train_loss": sums.sum() / len(shuffled),
               "train_recon": sums[0] / len(shuffled), "train_kl": sums[1] / len(shuffled),
               "val_loss": val, "seconds": seconds, "windows_per_s": len(shuffled) / seconds}
        state["history"].append(row)
        if progress:
            print(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.2f} (recon "
                  f"{row['train_recon']:.2f}, KL {row['train_kl']:.2f}), val {val:.2f}, "
                  f"{row['windows_per_s']:.0f} windows/s")
        if val < state["best_val"]:
            state["best_val"] = val
            if group.main:
                save_rvae(model, out_dir, training={"best_epoch": epoch, "val_loss": val,
                                                    **settings, "lr": lr, "epochs": epochs})
        state["epoch"] = epoch
        if group.main:
            save_checkpoint(out_dir, model, optimizer, gen, state)
    group.barrier()  # every process returns once the model is written
    return pd.DataFrame(state["history"])


@torch.no_grad()
def _validation_loss(model: SkipRVAE, data: np.ndarray, idx: np.ndarray, batch_size: int,
                     device: torch.device, seed: int, kl_weight: float = 1.0,
                     group: Group | None = None) -> float:
    """Loss on held-out windows with a fixed noise draw, so epochs compare fairly; each
    process takes its share of every batch."""
    group = group or Group()
    model.eval()
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
        recon, mu, logvar = model.reconstruct(x, eps[mine])
        rec, kl = model.loss(x, recon, mu, logvar, kl_weight)
        total += float(rec + kl) * len(x)
    return float(group.all_sum([total], device)[0]) / len(idx)
