"""Crops of the shared real graphene images, with the Si atoms in each checked by eye.

Each crop is cut from a real HAADF image, binned first where a coarser sampling is
wanted, and carries no pixel size: the finder must estimate it, as on a
microscopist's crop of a few rings. Si positions are (row, column) in the crop's
pixels, read off the full images (docs/atoms.md, "Real images") and checked on the
crops' figures (``python benchmarks/eval_atoms_real.py --figure F``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "graphene_stem"


@dataclass(frozen=True)
class Crop:
    """A square crop of ``image`` (binned ``bin`` x ``bin`` first) at ``top, left``."""

    name: str
    image: str
    bin: int
    top: int
    left: int
    size: int
    si: tuple[tuple[float, float], ...]


#: Si positions in the full images (row, column), found by the shipped finder and
#: checked by eye: the single bright atom of G-Si-2nm, the two of the dimer image and
#: the three of the trimer image.
FULL_SI = {
    "G-Si-2nm.npy": ((136.4, 95.2),),
    "G-GrainBoundary-4nm.npy": (),
    "G-dimSi.hdf5": ((295.0, 388.7), (307.3, 298.9)),
    "G-trimSi.hdf5": ((238.6, 288.8), (276.5, 330.3), (295.9, 276.6)),
}

#: sampling of the full images, angstrom per pixel (their lattice, docs/atoms.md)
FULL_PIXEL_A = {"G-Si-2nm.npy": 0.077, "G-GrainBoundary-4nm.npy": 0.078,
                "G-dimSi.hdf5": 0.038, "G-trimSi.hdf5": 0.039}


def _crop(name: str, image: str, bin_: int, top: int, left: int, size: int) -> Crop:
    si = []
    for y, x in FULL_SI[image]:
        yb, xb = (y + 0.5) / bin_ - 0.5 - top, (x + 0.5) / bin_ - 0.5 - left
        if 0 <= yb <= size - 1 and 0 <= xb <= size - 1:
            si.append((round(yb, 2), round(xb, 2)))
    return Crop(name, image, bin_, top, left, size, tuple(si))


CROPS = (
    _crop("Si-128", "G-Si-2nm.npy", 1, 80, 40, 128),
    _crop("Si-96", "G-Si-2nm.npy", 1, 90, 50, 96),
    _crop("Si-64-bin2", "G-Si-2nm.npy", 2, 36, 16, 64),
    _crop("plain-128", "G-Si-2nm.npy", 1, 0, 128, 128),
    _crop("boundary-128", "G-GrainBoundary-4nm.npy", 1, 0, 0, 128),
    _crop("boundary-96", "G-GrainBoundary-4nm.npy", 1, 200, 300, 96),
    _crop("boundary-64-bin2", "G-GrainBoundary-4nm.npy", 2, 100, 100, 64),
    _crop("dimer-128-bin2", "G-dimSi.hdf5", 2, 90, 110, 128),
    _crop("dimer-64-bin4", "G-dimSi.hdf5", 4, 40, 50, 64),
    _crop("plain-96-bin2", "G-dimSi.hdf5", 2, 0, 0, 96),
    _crop("trimer-96-bin2", "G-trimSi.hdf5", 2, 85, 105, 96),
    _crop("trimer-128-bin3", "G-trimSi.hdf5", 3, 40, 40, 128),
)


def full_image(image: str) -> np.ndarray:
    """One of the shared real images, float32."""
    path = REAL / image
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32)
    import h5py

    with h5py.File(path) as f:
        return np.asarray(f["image_data"], dtype=np.float32)


def binned(image: np.ndarray, bin_: int) -> np.ndarray:
    """Sum over bin x bin blocks (a coarser scan of the same field)."""
    h, w = (s // bin_ * bin_ for s in image.shape)
    return image[:h, :w].reshape(h // bin_, bin_, w // bin_, bin_).sum((1, 3))


def cut(crop: Crop) -> np.ndarray:
    """The crop's pixels."""
    image = binned(full_image(crop.image), crop.bin)
    return image[crop.top:crop.top + crop.size, crop.left:crop.left + crop.size].copy()


def pixel_size_A(crop: Crop) -> float:
    """The crop's approximate pixel size, from its full image's lattice."""
    return FULL_PIXEL_A[crop.image] * crop.bin


def describe() -> str:
    """The crops as JSON, for a reader checking them."""
    return json.dumps([{**c.__dict__, "pixel_size_A": pixel_size_A(c),
                        "field_A": round(c.size * pixel_size_A(c), 1)} for c in CROPS],
                      indent=1)
