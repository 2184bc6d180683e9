"""Atom finding end to end: movie in, atom table out.

segment (at the model's sampling) -> blobs -> back to input pixels -> Gaussian
refinement on the raw frames -> border atoms dropped.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from latentpath.atoms.locate import blobs, drop_border, refine_gaussian
from latentpath.atoms.model import AtomUNet, load_model
from latentpath.atoms.pixel_size import GRAPHENE_D100_A, estimate_pixel_size
from latentpath.atoms.segment import model_shape, segment, to_input_pixels
from latentpath.device import resolve_device
from latentpath.graph import CC_BOND_A
from latentpath.io import Movie, validate_movie

MIN_FRAME_A = 12.0
"""Smallest field of view worth segmenting: a few bond lengths of context."""
MAX_PIXEL_A = 1.0
"""Coarsest sampling at which atoms can be found: a C-C bond over 1.4 px."""
PIXEL_SIZE_TOLERANCE = 0.2
"""Share by which a given pixel size may differ from a clear lattice's before a warning."""
PROBE_SIGMA_A = 0.45
"""Typical ADF probe width (Gaussian sigma) used as the starting width of the fits."""


def movie_stack(movie: Movie | np.ndarray) -> np.ndarray:
    """The frames of a Movie or an array as (T, H, W); one (H, W) image is one frame."""
    data = np.asarray(movie.data if isinstance(movie, Movie) else movie)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"movie must be (T, H, W) frames or one (H, W) image, "
                         f"got shape {data.shape}")
    return data


def _lattice_estimate(data: np.ndarray, spacing_A: float) -> tuple[float, float]:
    """Pixel size and prominence of the lattice reflection of the first frames."""
    return estimate_pixel_size(data[: min(len(data), 5)], spacing_A=spacing_A)


def _compare_with_lattice(data: np.ndarray, pixel_size_A: float, spacing_A: float) -> None:
    """Warn when a clear lattice reflection puts the pixel size more than
    :data:`PIXEL_SIZE_TOLERANCE` away from the one given. (Not for a file's pixel size:
    the estimate assumes graphene's spacing, and would question other materials'.)"""
    estimate, prominence = _lattice_estimate(data, spacing_A)
    # a strong reflection only (a lattice gives 4-13, noise up to about 1): a warning
    # that cried wolf would teach users to ignore it
    if prominence >= 2.0 and abs(pixel_size_A / estimate - 1) > PIXEL_SIZE_TOLERANCE:
        warnings.warn(f"the pixel size given, {pixel_size_A:.4g} A, disagrees by "
                      f"{abs(pixel_size_A / estimate - 1):.0%} with the {estimate:.4g} A of "
                      f"the image's lattice reflection (prominence {prominence:.2f}, read as "
                      f"graphene's {spacing_A:.3g} A spacing): unless the material has another "
                      "lattice, atoms will be found at the wrong scale", stacklevel=3)


def movie_pixel_size_A(movie: Movie | np.ndarray, pixel_size_A: float | None,
                       spacing_A: float = GRAPHENE_D100_A) -> tuple[float, str]:
    """The pixel size to use, and where it came from ("argument", "file", "lattice")."""
    data = movie_stack(movie)
    if pixel_size_A is not None:
        if not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
            raise ValueError(f"pixel size must be a positive number of angstrom, "
                             f"got {pixel_size_A!r}")
        _compare_with_lattice(data, float(pixel_size_A), spacing_A)
        return float(pixel_size_A), "argument"
    if isinstance(movie, Movie) and movie.pixel_size is not None:
        return movie.pixel_size_in("A"), "file"
    estimate, prominence = _lattice_estimate(data, spacing_A)
    if prominence < 0.5:
        warnings.warn(f"no clear lattice reflection (prominence {prominence:.2f}); the "
                      f"estimated pixel size {estimate:.4f} A may be wrong: pass it "
                      "explicitly", stacklevel=3)
    return estimate, "lattice"


def find_atoms(
    movie: Movie | np.ndarray,
    *,
    pixel_size_A: float | None = None,
    model: AtomUNet | None = None,
    device: str | torch.device = "auto",
    threshold: float = 0.5,
    refine: bool = True,
    border_A: float = 1.0,
    keep_border: bool = False,
    batch_size: int | None = None,
    return_probabilities: bool = False,
    progress: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Find atoms in every frame of a movie.

    Parameters
    ----------
    movie : Movie or ndarray, shape (T, H, W) or (H, W)
        Raw frames.
    pixel_size_A : float, optional
        Angstrom per pixel; taken from the movie's file, or estimated from the
        graphene lattice (:func:`~latentpath.atoms.pixel_size.estimate_pixel_size`)
        when not given.
    model : AtomUNet, optional
        Segmentation model; the shipped weights by default.
    device : {"auto", "cpu", "cuda", ...}
    threshold : float
        Atom probability above which a pixel belongs to an atom.
    refine : bool
        Refine positions by 2-D Gaussian fits on the raw frames.
    border_A : float
        Atoms closer than this to the frame edge are dropped...
    keep_border : bool
        ...unless this is True.
    batch_size : int, optional
        Frames per forward pass; default 4 on the CPU and 32 on a GPU.
    return_probabilities : bool
        Also return the segmentation the atoms were found in, so that later steps
        (windows cut from the class maps) need not segment the movie again.

    Returns
    -------
    DataFrame
        ``frame, y, x, species, score`` in pixels of the input, one row per atom.
        ``attrs`` records the pixel size used and its source. An input without atoms
        gives an empty table and a warning.
    ndarray (T, C, h, w), float32
        Only with ``return_probabilities``: class probabilities (background, then each
        species) at the model's sampling.
    """
    data = validate_movie(movie_stack(movie), name="movie")
    flat = np.flatnonzero(data.reshape(len(data), -1).std(axis=1) == 0)
    if len(flat):
        raise ValueError(f"frame(s) {flat.tolist()[:10]} are constant: no contrast to find "
                         "atoms in")
    px, source = movie_pixel_size_A(movie if isinstance(movie, Movie) else data, pixel_size_A)
    height, width = data.shape[1:]
    if px > MAX_PIXEL_A:
        raise ValueError(f"at {px:.4g} A/px ({source}) a C-C bond of {CC_BOND_A} A spans "
                         f"{CC_BOND_A / px:.2g} px: no atom can be resolved; is the pixel "
                         "size in angstrom?")
    if min(height, width) * px < MIN_FRAME_A:
        raise ValueError(f"frames of {height}x{width} px at {px:.3g} A/px span less than "
                         f"{MIN_FRAME_A} A, too small for the network to see atoms in context")
    device = resolve_device(device)
    model = load_model(device=device) if model is None else model
    if batch_size is None:
        batch_size = 32 if device.type == "cuda" else 4
    factor = px / model.config.pixel_size_A
    small = model_shape((height, width), factor)
    probs = segment(data, model, pixel_size_A=px, device=device, batch_size=batch_size,
                    at_input_sampling=False, progress=progress)
    atoms = blobs(probs, species=model.config.species, threshold=threshold,
                  min_area_px=3)
    atoms["y"] = to_input_pixels(atoms["y"].to_numpy(), small[0] / height)
    atoms["x"] = to_input_pixels(atoms["x"].to_numpy(), small[1] / width)
    if refine and len(atoms):
        half = max(2, round(0.3 * CC_BOND_A / px))
        atoms = refine_gaussian(data, atoms, half_width_px=half,
                                sigma_px=PROBE_SIGMA_A / px).drop(columns="refined")
    if not keep_border:
        atoms = drop_border(atoms, (height, width), border_A / px)
    if len(atoms) == 0:
        warnings.warn("no atoms found in the movie", stacklevel=2)
    atoms = atoms.reset_index(drop=True)
    atoms.attrs.update({"pixel_size_A": px, "pixel_size_source": source})
    return (atoms, probs) if return_probabilities else atoms
