"""Running the segmentation network on frames of any size and sampling.

Frames are resampled to the model's sampling (fewer pixels when the data are finely
sampled: the first saving), normalised, run in batches and the class probabilities
resampled back, so that everything downstream works in the pixels of the input.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from latentpath.atoms.model import AtomUNet
from latentpath.checks import check_memory
from latentpath.device import uses_bfloat16


def normalize_frame(image: np.ndarray) -> np.ndarray:
    """Scale a frame so that vacuum is near 0 and carbon peaks near 1.

    Robust percentiles rather than min and max: a few hot pixels or bright heavy atoms
    must not squash the contrast of the lattice.
    """
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [1.0, 99.0])
    return ((image - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)


def resample(image: np.ndarray, factor: float, *, order: int = 1) -> np.ndarray:
    """Zoom a 2-D array by ``factor`` (output pixels per input pixel).

    Downsampling first blurs with a Gaussian of width ~ half the new pixel, so that
    shot noise averages instead of aliasing.
    """
    if abs(factor - 1.0) < 1e-6:
        return np.asarray(image, dtype=np.float32)
    image = np.asarray(image, dtype=np.float32)
    if factor < 1:
        image = ndimage.gaussian_filter(image, sigma=0.5 / factor * 0.85)
    return ndimage.zoom(image, factor, order=order, grid_mode=True, mode="nearest")


def _pad_to(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode="reflect")
    return x, (h, w)


def _dihedral_mean(model: AtomUNet, x: torch.Tensor) -> torch.Tensor:
    """The model's logits averaged over the eight rotations and reflections of ``x``,
    each turned back: a network trained on every orientation reads a frame's noise
    differently in each, and the mean of its eight readings is steadier than one."""
    total = 0
    for turns in range(4):
        for mirror in (False, True):
            y = torch.rot90(x, turns, (-2, -1))
            y = y.flip(-1) if mirror else y
            out = model(y.contiguous(memory_format=torch.channels_last))
            out = out.flip(-1) if mirror else out
            total = total + torch.rot90(out, -turns, (-2, -1))
    return total / 8


@torch.no_grad()
def _probabilities(model: AtomUNet, batch: np.ndarray, device: torch.device | str,
                   bfloat16: bool = False, augment: bool = False) -> np.ndarray:
    """Softmax of the model on frames (N, h, w) at its sampling, any h and w."""
    padded, (h, w) = _pad_to(batch, model.multiple)
    x = torch.from_numpy(np.ascontiguousarray(padded[:, None])).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bfloat16):
        logits = _dihedral_mean(model, x) if augment else model(x)
    probs = torch.softmax(logits.float(), dim=1)[:, :, :h, :w]
    return np.ascontiguousarray(probs.cpu().numpy())


def _tiled_probabilities(model: AtomUNet, frame: np.ndarray, device: torch.device | str,
                         tile_px: int, overlap_px: int, bfloat16: bool = False,
                         augment: bool = False) -> np.ndarray:
    """Probabilities of one large frame, tile by tile.

    Tiles overlap by ``overlap_px`` on each side and only their centres are kept, so
    the stitched map is continuous and an atom on a seam is found once.
    """
    h, w = frame.shape
    out = np.empty((model.config.n_classes, h, w), np.float32)
    step = tile_px - 2 * overlap_px
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(0, y0 - overlap_px), max(0, x0 - overlap_px)
            yb, xb = min(h, y0 + step + overlap_px), min(w, x0 + step + overlap_px)
            probs = _probabilities(model, frame[None, ya:yb, xa:xb], device, bfloat16,
                                   augment)[0]
            ye, xe = min(h, y0 + step), min(w, x0 + step)
            out[:, y0:ye, x0:xe] = probs[:, y0 - ya:ye - ya, x0 - xa:xe - xa]
    return out


def segment(images: np.ndarray, model: AtomUNet, *, pixel_size_A: float,
            device: torch.device | str = "cpu", batch_size: int = 4,
            at_input_sampling: bool = True, tile_px: int = 1024, overlap_px: int = 48,
            precision: str = "auto", augment: bool = False, progress: bool = False
            ) -> np.ndarray:
    """Class probabilities for every pixel of every frame.

    Parameters
    ----------
    images : ndarray, shape (T, H, W)
        Raw frames (any intensity scale).
    model : AtomUNet
    pixel_size_A : float
        Angstrom per pixel of ``images``.
    device : torch device
    batch_size : int
        Frames per forward pass.
    at_input_sampling : bool
        Resample the probabilities back to the pixels of the input (default); False
        keeps them at the model's sampling (``model_shape(...)``), which is cheaper
        when only atom positions are wanted.
    tile_px, overlap_px : int
        Frames larger than ``tile_px`` (at the model's sampling) are segmented in
        overlapping tiles, so memory stays bounded however large the frame.
    precision : {"auto", "float32", "bfloat16"}
        "bfloat16" runs the network's convolutions under bfloat16 autocast (the
        softmax in float32): twice as fast on CPUs and GPUs with bfloat16 units, the
        same F1 to the fourth digit on the low-dose table (docs/benchmarks.md). "auto"
        (the default) takes it where the device has native bfloat16
        (:func:`latentpath.device.uses_bfloat16`), float32 elsewhere.
    augment : bool
        Average the network's logits over the eight rotations and reflections of each
        frame (eight passes instead of one). On the low-dose tables the matched atoms
        lie nearer the truth on every movie (at 2e4 e/A^2 a median of 0.080 -> 0.076
        A), while F1 moves by an atom or two either way (docs/atoms.md).

    Returns
    -------
    ndarray, shape (T, C, H, W) or (T, C, h, w), float32
        Probabilities (background, then each species of ``model.config.species``).
    """
    images = np.asarray(images, dtype=np.float32)
    if tile_px < 2 * overlap_px + 4 * model.multiple:
        raise ValueError(f"tile_px ({tile_px}) must exceed twice the overlap ({overlap_px}) "
                         f"by at least {4 * model.multiple} px")
    bfloat16 = uses_bfloat16(precision, torch.device(device))
    factor = pixel_size_A / model.config.pixel_size_A
    model = model.for_inference(device)
    n_frames, height, width = images.shape
    small = model_shape((height, width), factor)
    shape = (height, width) if at_input_sampling else small
    check_memory(f"the probabilities of {n_frames} frames of {shape[0]} x {shape[1]} px",
                 4.0 * n_frames * model.config.n_classes * shape[0] * shape[1])
    out = np.empty((n_frames, model.config.n_classes, *shape), np.float32)
    for start in tqdm(range(0, n_frames, batch_size), desc="segmenting", unit="batch",
                      disable=not progress):
        stop = min(start + batch_size, n_frames)
        batch = np.stack([normalize_frame(_fit(resample(images[t], factor), small))
                          for t in range(start, stop)])
        if max(small) > tile_px:
            probs = np.stack([_tiled_probabilities(model, frame, device, tile_px, overlap_px,
                                                   bfloat16, augment) for frame in batch])
        else:
            probs = _probabilities(model, batch, device, bfloat16, augment)
        if not at_input_sampling:
            out[start:stop] = probs
            continue
        for k, t in enumerate(range(start, stop)):
            for c in range(probs.shape[1]):
                out[t, c] = _fit(resample(probs[k, c], 1.0 / factor), shape)
    if at_input_sampling:
        # Resampling blurs probabilities slightly; renormalise so classes sum to one.
        out /= np.clip(out.sum(axis=1, keepdims=True), 1e-6, None)
    return out


def model_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Size of a frame of ``shape`` resampled by ``factor``."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def to_input_pixels(coord: np.ndarray, factor: float) -> np.ndarray:
    """Map coordinates at the model's sampling back to input pixels (pixel centres)."""
    return (np.asarray(coord, dtype=np.float64) + 0.5) / factor - 0.5


def to_model_pixels(coord: np.ndarray, factor: float) -> np.ndarray:
    """Map input-pixel coordinates to the model's sampling (pixel centres)."""
    return (np.asarray(coord, dtype=np.float64) + 0.5) * factor - 0.5


def _fit(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or edge-pad a resampled map to exactly ``shape``."""
    h, w = shape
    array = array[:h, :w]
    ph, pw = h - array.shape[0], w - array.shape[1]
    if ph or pw:
        array = np.pad(array, [(0, ph), (0, pw)], mode="edge")
    return array
