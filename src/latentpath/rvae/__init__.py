"""The skip-rVAE: rotation-invariant latents ``angle, dx, dy, z1..zk`` of any window stack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from latentpath.device import uses_bfloat16
from latentpath.modelfiles import ModelFileError
from latentpath.rvae.files import load_rvae, save_rvae
from latentpath.rvae.model import RVAEConfig, SkipRVAE
from latentpath.rvae.train import (
    TrainingDivergedError,
    TrainingStop,
    balanced_weights,
    compile_pays,
    epoch_order,
    fit_rvae,
    open_windows,
    training_record,
)

__all__ = [
    "ModelFileError",
    "RVAEConfig",
    "SkipRVAE",
    "TrainingDivergedError",
    "TrainingStop",
    "balanced_weights",
    "compile_pays",
    "decode",
    "encode",
    "epoch_order",
    "fit_rvae",
    "load_rvae",
    "open_windows",
    "save_rvae",
    "training_record",
]


@torch.no_grad()
def encode(model: SkipRVAE, windows: np.ndarray, *, batch_size: int = 1024,
           table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Posterior means of every window: ``angle`` (radians), ``dx, dy`` (window
    half-widths), ``z1..zk``, and their standard deviations ``sd_*``.

    Parameters
    ----------
    model : SkipRVAE
    windows : ndarray (N, w, w) or (N, c, w, w), or path to .npy
    table : DataFrame, optional
        The window table (row i describes window i); the latents are appended to it.

    Raises
    ------
    ValueError
        Windows of another size or channel count than the model's, a table of another
        length, or a window holding NaN or infinite values (named by its index).
    """
    data = open_windows(windows)
    if data.shape[-1] != model.config.window_px:
        raise ValueError(f"windows of {data.shape[-1]} px but the model was trained on "
                         f"{model.config.window_px} px windows")
    channels = data.shape[1] if data.ndim == 4 else 1
    if channels != model.config.channels:
        raise ValueError(f"windows of {channels} channel(s) but the model was trained on "
                         f"{model.config.channels}")
    names = ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(model.config.latent_dim)]
    if table is not None:
        if len(table) != len(data):
            raise ValueError(f"window table has {len(table)} rows for {len(data)} windows")
        clash = sorted(set(table.columns) & {*names, *(f"sd_{n}" for n in names)})
        if clash:
            raise ValueError(f"window table already has latent column(s) {clash}; "
                             "rename them first")
    device = next(model.parameters()).device
    model.eval()
    mus, sds = [], []
    for start in range(0, len(data), batch_size):
        x = torch.from_numpy(np.array(data[start:start + batch_size], dtype=np.float32))
        bad = (~torch.isfinite(x.flatten(1))).any(1).nonzero()
        if len(bad):
            raise ValueError(f"window {start + int(bad[0])} holds NaN or infinite values "
                             f"({len(bad)} such window(s) in {start}-{start + len(x) - 1}): "
                             "its latents would mean nothing; drop or repair it")
        mu, logvar = model.encode(model.normalize(x.to(device)))
        mus.append(mu.cpu().numpy())
        sds.append(torch.exp(0.5 * logvar).cpu().numpy())
    mu, sd = np.concatenate(mus), np.concatenate(sds)
    # The model's translation latents are standard normal; report half-widths.
    mu[:, 1:3] *= model.config.translation_prior
    sd[:, 1:3] *= model.config.translation_prior
    latents = pd.DataFrame(mu, columns=names)
    latents = latents.join(pd.DataFrame(sd, columns=[f"sd_{n}" for n in names]))
    if table is not None:
        latents = pd.concat([table.reset_index(drop=True), latents], axis=1)
    return latents


CPU_PASS_ACTIVATIONS = 2**21
"""Activations of one decoder layer per pass on a CPU (4 MB in bfloat16). The decoder's
element-wise work (tanh above all) runs at memory speed: 4,096 images of 24 x 24 through
3 x 128 took 4.1 s in one pass and 2.0 s in passes of 32 images (dev CPU, 2 threads),
with the same images to the bit."""


@torch.no_grad()
def decode(model: SkipRVAE, z: np.ndarray, *, angle: float | np.ndarray = 0.0,
           shift: tuple[float, float] | np.ndarray = (0.0, 0.0), size: int | None = None,
           precision: str = "float32", batch_size: int = 1024) -> np.ndarray:
    """Images of content latents, upright and centred unless an angle or shift is given.

    Parameters
    ----------
    z : ndarray (M, k) or (k,)
    angle : float or ndarray (M,)
        Rotation, radians.
    shift : (dx, dy) or ndarray (M, 2)
        Translation, window half-widths.
    size : int, optional
        Side of the decoded images, pixels: the window's field of view sampled on a
        ``size`` x ``size`` grid (default: the training windows' side w). A coarser
        grid is cheaper where only the atoms' positions matter.
    precision : {"float32", "bfloat16", "auto"}
        "bfloat16" runs the decoder under bfloat16 autocast (about 3 significant
        digits, 2-3x faster where the device has native bfloat16); "auto" takes it
        there, for bulk work such as latent maps.
    batch_size : int
        Images per pass through the decoder on a GPU. On a CPU a pass holds at most
        :data:`CPU_PASS_ACTIVATIONS` activations of a layer (pixels x units x images),
        so that it stays in the cache; the images are the same either way.

    Returns
    -------
    ndarray (M, s, s), or (M, c, s, s) for a model of c > 1 channels, float32
        In the units of the training windows.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    if z.shape[1] != model.config.latent_dim:
        raise ValueError(f"z has {z.shape[1]} latents, the model has "
                         f"{model.config.latent_dim}")
    if size is not None and (int(size) != size or size < 2):
        raise ValueError(f"size must be an integer of at least 2, got {size}")
    m = len(z)
    angles = np.broadcast_to(np.asarray(angle, dtype=np.float32), (m,))
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float32), (m, 2))
    device = next(model.parameters()).device
    bfloat16 = uses_bfloat16(precision, device)
    model.eval()
    if device.type == "cpu":
        pixels = (size or model.config.window_px) ** 2
        batch_size = max(1, min(batch_size,
                                CPU_PASS_ACTIVATIONS // (pixels * model.config.hidden)))
    out = []
    for start in range(0, m, batch_size):
        sl = slice(start, start + batch_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
            img = model.decode(torch.tensor(z[sl], device=device),
                               torch.tensor(angles[sl], device=device),
                               torch.tensor(shifts[sl], device=device), size=size).float()
        if model.config.loss == "bce":
            img = torch.sigmoid(img)
        out.append((img * model.config.scale + model.config.offset).cpu().numpy())
    return np.concatenate(out).astype(np.float32)
