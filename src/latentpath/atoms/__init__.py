"""Atom finding: a dilated U-Net segments frames, blobs are located and refined by
Gaussian fits, and the model can be self-trained on the user's movie."""

from latentpath.atoms.find import find_atoms
from latentpath.atoms.locate import blobs, drop_border, refine_gaussian
from latentpath.atoms.model import (
    AtomNetConfig,
    AtomUNet,
    ModelFileError,
    load_model,
    save_model,
)
from latentpath.atoms.pixel_size import estimate_pixel_size
from latentpath.atoms.segment import segment
from latentpath.atoms.self_train import compare_tables, self_train
from latentpath.device import resolve_device

__all__ = [
    "AtomNetConfig",
    "AtomUNet",
    "ModelFileError",
    "blobs",
    "compare_tables",
    "drop_border",
    "estimate_pixel_size",
    "find_atoms",
    "load_model",
    "refine_gaussian",
    "resolve_device",
    "save_model",
    "segment",
    "self_train",
]
