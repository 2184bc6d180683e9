"""Atom finding end to end: movie in, atom table out.

segment (at the model's sampling) -> blobs -> back to input pixels -> Gaussian
refinement on the raw frames -> border atoms dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from latentpath.atoms.locate import (
    FAINT_LEVEL,
    blobs,
    drop_border,
    faint_atoms,
    peak_heights,
    refine_gaussian,
)
from latentpath.atoms.model import AtomUNet, load_model
from latentpath.atoms.pixel_size import GRAPHENE_D100_A, estimate_pixel_size
from latentpath.atoms.quality import (
    MIN_BONDED,
    QUALITY_COLUMNS,
    bond_spacing,
    domain_problems,
    frame_quality,
    unusual_frames,
    unusual_warning,
)
from latentpath.atoms.segment import model_shape, segment, to_input_pixels
from latentpath.atoms.species import label_heavy
from latentpath.checks import check_float
from latentpath.device import resolve_device, uses_bfloat16
from latentpath.graph import CC_BOND_A
from latentpath.io import Movie, validate_movie

MIN_FRAME_A = 12.0
"""Field of view the network needs to see atoms in context; smaller frames are padded
(reflected) to it and the atoms found in the padding dropped."""
MIN_FIELD_A = 6.0
"""Smallest field of view accepted: about two rings across."""
MAX_PIXEL_A = 1.0
"""Coarsest sampling at which atoms can be found: a C-C bond over 1.4 px."""
MIN_PIXEL_A = 0.005
"""Finest sampling tried when the pixel size is estimated."""
PIXEL_SIZE_TOLERANCE = 0.2
"""Share by which a given pixel size may differ from a clear lattice's before a warning."""
PROBE_SIGMA_A = 0.45
"""Typical ADF probe width (Gaussian sigma) used as the starting width of the fits."""
FIT_MAX_ERROR_A = 0.03
"""A Gaussian fit moves an atom only where its position's standard error is below this:
the segmentation's own positions lie 0.03-0.05 A from the truth on clean synthetic
frames, and a fit less certain than that scatters the atoms more than it places them
(on noisy frames the fits were 0.07-0.11 A off where the segmentation was 0.04-0.08 A;
docs/atoms.md)."""
PROBE_FIELD_A = 48.0
"""Side of the piece of the first frame whose atoms check an estimated pixel size."""
SCALE_GUESSES = (1.0, np.sqrt(3.0), 1.0 / np.sqrt(3.0))
"""Pixel sizes tried, in units of the lattice reflection's: the strongest reflection of
a small field may be the {110} planes (1.23 A) or a {100} read as one (sqrt 3 apart)."""
CLEAR_REFLECTION = 2.0
"""Prominence of a lattice reflection that can be trusted (a lattice gives 4-30 on the
shared real images, noise up to about 1)."""
SETTLED = 0.03
"""Relative change of the pixel size below which the atoms' spacing agrees with it."""
AGREE = 0.08
"""Largest relative difference of the lattice reflection's and the atoms' pixel sizes
for a confident estimate (the reflection of a 20 A field is good to about 5 %)."""
MAX_ROUNDS = 4


@dataclass(frozen=True)
class PixelSize:
    """The pixel size atoms were found at, where it came from and how sure it is.

    Attributes
    ----------
    pixel_size_A : float
        Angstrom per pixel.
    source : {"argument", "file", "lattice"}
        Given by the user, read from the file, or estimated from the image (the
        lattice reflection of the power spectrum, then the spacing of the atoms found
        at it, until the two agree).
    confidence : {"given", "high", "low"}
        "high": the lattice reflection is clear and the atoms' spacing agrees with it
        within :data:`AGREE`, most atoms sitting in a honeycomb; "low": the atoms' spacing had to
        correct the reflection, or the honeycomb is partial (the value is still the
        atoms'; check it, or pass the pixel size).
    lattice_A : float or None
        The lattice reflection's estimate (read as graphene's {100} planes, 2.13 A).
    prominence : float or None
        The reflection's height over the spectrum's background (clear: 2 and more).
    atoms_A : float or None
        The estimate from the found atoms' C-C spacing.
    bonded : float or None
        Share of those atoms with two or three neighbours at one bond length.
    """

    pixel_size_A: float
    source: str
    confidence: str
    lattice_A: float | None = None
    prominence: float | None = None
    atoms_A: float | None = None
    bonded: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


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


def _check_given(data: np.ndarray, pixel_size_A: float, model: AtomUNet,
                 device: torch.device, spacing_A: float) -> PixelSize:
    """A given pixel size, questioned where a clear lattice reflection does not confirm
    it: by the atoms found at it (their C-C spacing, where they form a honeycomb), or
    else by that reflection; a warning with both numbers when they disagree by more
    than :data:`PIXEL_SIZE_TOLERANCE`. (Not for a
    file's pixel size: both assume graphene, and would question other materials'.)"""
    lattice, prominence = _lattice_estimate(data, spacing_A)
    if (prominence >= CLEAR_REFLECTION
            and abs(pixel_size_A / lattice - 1) <= PIXEL_SIZE_TOLERANCE):
        # a clear reflection agrees: the atoms need not be asked (on a few rings the
        # reflection can mislead, so a disagreement is checked with them)
        return PixelSize(pixel_size_A, "argument", "given", lattice_A=lattice,
                         prominence=prominence)
    bond_px, bonded = _spacing_at(data[0], pixel_size_A, model, device)
    atoms_A = CC_BOND_A / bond_px if np.isfinite(bond_px) else None
    if atoms_A is not None and bonded >= MIN_BONDED:
        other, source = atoms_A, (f"the C-C spacing of the atoms found at it ({bonded:.0%} "
                                  "of them in a honeycomb)")
    elif prominence >= CLEAR_REFLECTION:
        # a strong reflection only (a lattice gives 4-30, noise up to about 1): a
        # warning that cried wolf would teach users to ignore it
        other, source = lattice, (f"the image's lattice reflection (prominence "
                                  f"{prominence:.2f}, read as graphene's {spacing_A:.3g} A "
                                  "spacing)")
    else:
        other = None
    if other is not None and abs(pixel_size_A / other - 1) > PIXEL_SIZE_TOLERANCE:
        warnings.warn(f"the pixel size given, {pixel_size_A:.4g} A, disagrees by "
                      f"{abs(pixel_size_A / other - 1):.0%} with the {other:.4g} A of "
                      f"{source}: unless the material is not graphene, atoms will be found "
                      "at the wrong scale", stacklevel=4)
    return PixelSize(pixel_size_A, "argument", "given", lattice_A=lattice,
                     prominence=prominence, atoms_A=atoms_A,
                     bonded=None if np.isnan(bonded) else bonded)


def pad_field(data: np.ndarray, pixel_size_A: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Frames (T, H, W) reflected at their edges out to :data:`MIN_FRAME_A` on each
    axis, and the rows and columns added before the original (top, left)."""
    need = int(np.ceil(MIN_FRAME_A / pixel_size_A))
    height, width = data.shape[1:]
    add_y, add_x = max(0, need - height), max(0, need - width)
    if not add_y and not add_x:
        return data, (0, 0)
    top, left = add_y // 2, add_x // 2
    return (np.pad(data, [(0, 0), (top, add_y - top), (left, add_x - left)], mode="reflect"),
            (top, left))


def _locate(data: np.ndarray, pixel_size_A: float, model: AtomUNet, device: torch.device,
            *, threshold: float = 0.5, batch_size: int = 4, precision: str = "auto",
            augment: bool = False, progress: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Blobs of the segmentation, in input pixels, and the class probabilities at the
    model's sampling."""
    factor = pixel_size_A / model.config.pixel_size_A
    small = model_shape(data.shape[1:], factor)
    probs = segment(data, model, pixel_size_A=pixel_size_A, device=device,
                    batch_size=batch_size, at_input_sampling=False, precision=precision,
                    augment=augment, progress=progress)
    atoms = blobs(probs, species=model.config.species, threshold=threshold, min_area_px=3)
    atoms["y"] = to_input_pixels(atoms["y"].to_numpy(), small[0] / data.shape[1])
    atoms["x"] = to_input_pixels(atoms["x"].to_numpy(), small[1] / data.shape[2])
    return atoms, probs


def _spacing_at(frame: np.ndarray, pixel_size_A: float, model: AtomUNet,
                device: torch.device) -> tuple[float, float]:
    """C-C spacing (pixels) and honeycomb share of the atoms found at a trial pixel size
    in the middle of one frame."""
    side = int(min(PROBE_FIELD_A / pixel_size_A, *frame.shape))
    y0, x0 = (frame.shape[0] - side) // 2, (frame.shape[1] - side) // 2
    piece = frame[None, y0:y0 + side, x0:x0 + side]
    work, (top, left) = pad_field(piece, pixel_size_A)
    atoms, _ = _locate(work, pixel_size_A, model, device)
    y, x = atoms.y.to_numpy() - top, atoms.x.to_numpy() - left
    inside = (y >= 0) & (y <= side - 1) & (x >= 0) & (x <= side - 1)
    return bond_spacing(y[inside], x[inside], shape=(side, side))


def _estimate(data: np.ndarray, model: AtomUNet, device: torch.device, spacing_A: float
              ) -> PixelSize:
    """The pixel size at which the atoms found agree with the lattice they form."""
    lattice, prominence = _lattice_estimate(data, spacing_A)
    settled: list[tuple[float, float]] = []
    for guess in SCALE_GUESSES:
        pixel_A = lattice * guess
        for _ in range(MAX_ROUNDS):
            if not MIN_PIXEL_A <= pixel_A <= MAX_PIXEL_A:
                break
            bond_px, bonded = _spacing_at(data[0], pixel_A, model, device)
            if not (np.isfinite(bond_px) and np.isfinite(bonded)):
                break
            new = CC_BOND_A / bond_px
            if abs(new / pixel_A - 1) < SETTLED:
                settled.append((new, bonded))
                break
            pixel_A = new
    distinct: list[tuple[float, float]] = []
    for pixel_A, bonded in sorted(settled, key=lambda c: -c[1]):
        if bonded >= MIN_BONDED and all(abs(pixel_A / d[0] - 1) > 0.1 for d in distinct):
            distinct.append((pixel_A, bonded))
    ask = "pass the pixel size (--pixel-size, or pixel_size_A=)"
    if not distinct:
        raise ValueError(
            f"no honeycomb lattice to measure the pixel size on: the power spectrum's "
            f"strongest reflection gives {lattice:.4g} A/px (prominence {prominence:.2f}), "
            f"and the atoms found there and at sqrt(3) times it are not spaced as in "
            f"graphene; {ask}")
    tied = [d for d in distinct if d[1] >= distinct[0][1] - 0.2]
    if len(tied) > 1:
        # a clear reflection the atoms agree with settles it: at sqrt(3) times the
        # pixel size, the atoms found on a sharp lattice can form a honeycomb too
        agree = [d for d in tied if abs(d[0] / lattice - 1) <= 0.1]
        if prominence < CLEAR_REFLECTION or len(agree) != 1:
            options = " or ".join(f"{pixel_A:.4g} A/px ({b:.0%} of the atoms in a honeycomb)"
                                  for pixel_A, b in tied[:2])
            raise ValueError(f"the pixel size is ambiguous: the atoms form a graphene "
                             f"lattice at {options}, and the lattice reflection "
                             f"({lattice:.4g} A/px, prominence {prominence:.2f}) does not "
                             f"settle it; {ask}")
        tied = agree
    pixel_A, bonded = tied[0]
    clear = (prominence >= CLEAR_REFLECTION and abs(pixel_A / lattice - 1) <= AGREE
             and bonded >= 0.8)
    size = PixelSize(pixel_A, "lattice", "high" if clear else "low", lattice_A=lattice,
                     prominence=prominence, atoms_A=pixel_A, bonded=bonded)
    if not clear:
        warnings.warn(f"estimated pixel size {pixel_A:.4g} A with low confidence: the lattice "
                      f"reflection gave {lattice:.4g} A (prominence {prominence:.2f}), the "
                      f"atoms' C-C spacing {pixel_A:.4g} A with {bonded:.0%} of them in a "
                      f"honeycomb; check it, or {ask}", stacklevel=4)
    return size


def movie_pixel_size(movie: Movie | np.ndarray, pixel_size_A: float | None, *,
                     model: AtomUNet | None = None, device: str | torch.device = "cpu",
                     spacing_A: float = GRAPHENE_D100_A) -> PixelSize:
    """The pixel size to find atoms at: the one given, the file's, or estimated.

    Parameters
    ----------
    movie : Movie or ndarray (T, H, W)
    pixel_size_A : float, optional
        Given by the user: checked against the spacing of the atoms found at it, or a
        clear lattice reflection (a warning with both numbers beyond
        :data:`PIXEL_SIZE_TOLERANCE`).
    model : AtomUNet, optional
        The finder used to estimate it; the shipped weights by default.
    spacing_A : float
        Spacing of the strongest lattice reflection (graphene's {100} planes).

    Returns
    -------
    PixelSize

    Raises
    ------
    ValueError
        A pixel size that is not a positive number, or coarser than
        :data:`MAX_PIXEL_A`; or, when it must be estimated, an
        image without a honeycomb lattice, or one whose atoms form a lattice at two
        pixel sizes: the message asks for the pixel size.
    """
    data = movie_stack(movie)
    if pixel_size_A is not None:
        if not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
            raise ValueError(f"pixel size must be a positive number of angstrom, "
                             f"got {pixel_size_A!r}")
    if isinstance(movie, Movie) and movie.pixel_size is not None and pixel_size_A is None:
        return _resolvable(PixelSize(movie.pixel_size_in("A"), "file", "given"))
    device = resolve_device(device)
    model = load_model(device=device) if model is None else model
    if pixel_size_A is not None:
        _resolvable(PixelSize(float(pixel_size_A), "argument", "given"))
        return _check_given(data, float(pixel_size_A), model, device, spacing_A)
    return _resolvable(_estimate(data, model, device, spacing_A))


def _resolvable(size: PixelSize) -> PixelSize:
    """``size``, if atoms can be told apart at it."""
    pixel_A = size.pixel_size_A
    if pixel_A > MAX_PIXEL_A:
        raise ValueError(f"at {pixel_A:.4g} A/px ({size.source}) a C-C bond of {CC_BOND_A} A "
                         f"spans {CC_BOND_A / pixel_A:.2g} px: no atom can be resolved; is the "
                         "pixel size in angstrom?")
    return size


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
    precision: str = "auto",
    faint_level: float | None = FAINT_LEVEL,
    augment: bool = False,
    return_probabilities: bool = False,
    progress: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Find atoms in every frame of a movie.

    Parameters
    ----------
    movie : Movie or ndarray, shape (T, H, W) or (H, W)
        Raw frames.
    pixel_size_A : float, optional
        Angstrom per pixel; taken from the movie's file, or estimated from the image
        when not given (:func:`movie_pixel_size`: the lattice reflection, then the
        spacing of the atoms found at it; an error asking for it where the image shows
        no honeycomb, or one at two pixel sizes).
    model : AtomUNet, optional
        Segmentation model; the shipped weights by default.
    device : {"auto", "cpu", "cuda", ...}
    threshold : float
        Atom probability above which a pixel belongs to an atom.
    refine : bool
        Refine positions by 2-D Gaussian fits on the raw frames, where a fit places
        the atom to better than :data:`FIT_MAX_ERROR_A` (on clean frames; on noisy
        ones the segmentation's positions are kept).
    border_A : float
        Atoms closer than this to the frame edge are dropped...
    keep_border : bool
        ...unless this is True.
    batch_size : int, optional
        Frames per forward pass; default 4 on the CPU and 32 on a GPU.
    precision : {"auto", "float32", "bfloat16"}
        Of the network's convolutions (:func:`~latentpath.atoms.segment.segment`):
        "auto" (the default) takes bfloat16 where the device has native bfloat16 units,
        where it is about 0.08 s faster per 1024 x 1024 frame and finds the same atoms
        (docs/benchmarks.md); float32 elsewhere.
    faint_level : float or None
        Drop the ghosts low doses leave in holes: atoms the network is unsure of
        (score below :data:`~latentpath.atoms.locate.FAINT_SCORE`) that stand on less
        than this share of the way from the frame's floor to its typical atom
        (:func:`~latentpath.atoms.locate.faint_atoms`). None keeps every atom, and so
        does an image outside the model's domain (``outside_domain``), where a dim
        species would be taken for ghosts.
    augment : bool
        Average the network over the eight rotations and reflections of each frame
        (:func:`~latentpath.atoms.segment.segment`): for low doses, where it places
        the atoms nearer the truth (0.082 -> 0.078 A at 2e4 e/A^2, median of 16
        held-out movies; the same atoms found to an atom or two), at two to four
        times the time.
    return_probabilities : bool
        Also return the segmentation the atoms were found in, so that later steps
        (windows cut from the class maps) need not segment the movie again.

    Frames spanning less than :data:`MIN_FRAME_A` (down to :data:`MIN_FIELD_A`) are
    reflected at their edges out to it, and the atoms found in the reflection dropped.

    Returns
    -------
    DataFrame
        ``frame, y, x, species, score, intensity`` in pixels of the input, one row per
        atom: ``species`` is one of the model's classes, or "heavy" for an atom far
        brighter than Si (:func:`~latentpath.atoms.species.label_heavy`);
        ``intensity`` is the atom's brightness over its surroundings
        (:func:`~latentpath.atoms.locate.peak_heights`, units of the input).
        ``attrs`` records the pixel size used and its source (``pixel_size``:
        :class:`PixelSize` as a dict), the network's ``precision`` ("float32" or
        "bfloat16"), ``augmented`` (``augment``), ``padded_to_px`` (None, or the size small
        frames were padded to), ``faint_dropped`` (how many ghosts ``faint_level``
        dropped), the per-frame ``quality``
        (:func:`~latentpath.atoms.quality.frame_quality`, as lists per column),
        ``unusual_frames`` and ``outside_domain`` (sentences, also given as
        warnings). An input without atoms gives an empty table and a warning.
    ndarray (T, C, h, w), float32
        Only with ``return_probabilities``: class probabilities (background, then each
        species) at the model's sampling.

    Examples
    --------
    >>> from latentpath.synth import synth_stem_movie
    >>> sim = synth_stem_movie(1, 192, pixel_size_A=0.1, seed=0)
    >>> atoms = find_atoms(sim.movie, pixel_size_A=0.1)
    >>> atoms.columns.tolist()
    ['frame', 'y', 'x', 'species', 'score', 'intensity']
    >>> atoms.attrs["pixel_size_source"], atoms.attrs["outside_domain"]
    ('argument', [])
    >>> from latentpath.evaluate import score_atoms
    >>> inside = sim.atoms.y.between(10, 181) & sim.atoms.x.between(10, 181)
    >>> score_atoms(atoms, sim.atoms[inside], pixel_size_A=0.1)["recall"] > 0.95
    True
    """
    data = validate_movie(movie_stack(movie), name="movie")
    flat = np.flatnonzero(data.reshape(len(data), -1).std(axis=1) == 0)
    if len(flat):
        raise ValueError(f"frame(s) {flat.tolist()[:10]} are constant: no contrast to find "
                         "atoms in")
    if faint_level is not None:
        check_float("faint_level", faint_level, minimum=0, maximum=1)
    device = resolve_device(device)
    network_precision = "bfloat16" if uses_bfloat16(precision, device) else "float32"
    model = load_model(device=device) if model is None else model
    size = movie_pixel_size(movie if isinstance(movie, Movie) else data, pixel_size_A,
                            model=model, device=device)
    pixel_A, source = size.pixel_size_A, size.source
    height, width = data.shape[1:]
    if min(height, width) * pixel_A < MIN_FIELD_A:
        raise ValueError(f"frames of {height}x{width} px at {pixel_A:.3g} A/px ({source}) span "
                         f"{min(height, width) * pixel_A:.3g} A, less than {MIN_FIELD_A} A (about "
                         "two rings): too small to find atoms in")
    if batch_size is None:
        batch_size = 32 if device.type == "cuda" else 4
    work, (top, left) = pad_field(data, pixel_A)
    atoms, probs = _locate(work, pixel_A, model, device, threshold=threshold,
                           batch_size=batch_size, precision=network_precision, augment=augment,
                           progress=progress)
    if refine and len(atoms):
        half = max(2, round(0.3 * CC_BOND_A / pixel_A))
        atoms = refine_gaussian(work, atoms, half_width_px=half,
                                sigma_px=PROBE_SIGMA_A / pixel_A,
                                max_error_px=FIT_MAX_ERROR_A / pixel_A
                                ).drop(columns=["refined", "fit_error_px"])
    atoms["intensity"] = peak_heights(work, atoms, bond_px=CC_BOND_A / pixel_A)
    atoms["faint"] = (faint_atoms(work, atoms, bond_px=CC_BOND_A / pixel_A,
                                  min_level=faint_level)
                      if faint_level is not None and len(atoms) else False)
    if work.shape != data.shape:
        atoms = drop_border(atoms.assign(y=atoms.y - top, x=atoms.x - left),
                            (height, width), -0.5)
        probs = _crop_probabilities(probs, work.shape[1:], (top, left), (height, width))
    if not keep_border:
        atoms = drop_border(atoms, (height, width), border_A / pixel_A)
    if len(atoms) == 0:
        warnings.warn("no atoms found in the movie", stacklevel=2)
    found = atoms.reset_index(drop=True)
    atoms = label_heavy(found)
    quality = frame_quality(atoms, (height, width), pixel_A, n_frames=len(data))
    outside = domain_problems(atoms, quality, pixel_size_known=source != "lattice")
    # the ghosts' test takes the frame's typical atom for a graphene lattice's: on an
    # image outside that domain, a dim species would be taken for ghosts
    n_faint = 0 if outside else int(found["faint"].sum())
    if n_faint:
        # labelled again without them: their low heights pulled the frame's C median down
        atoms = label_heavy(found[~found["faint"]].reset_index(drop=True))
        quality = frame_quality(atoms, (height, width), pixel_A, n_frames=len(data))
    atoms = atoms.drop(columns=["fit_residual", "faint"], errors="ignore")
    unusual = unusual_frames(quality)
    if outside:
        warnings.warn("the image looks outside what the atom model knows (graphene, C and "
                      "Si): " + "; ".join(outside), stacklevel=2)
    if unusual:
        warnings.warn(unusual_warning(unusual), stacklevel=2)
    atoms.attrs.update({
        "pixel_size_A": pixel_A, "pixel_size_source": source, "pixel_size": size.as_dict(),
        "precision": network_precision, "augmented": augment,
        "padded_to_px": list(work.shape[1:]) if work.shape != data.shape else None,
        "faint_dropped": n_faint,
        "quality": _json_columns(quality), "unusual_frames": unusual,
        "outside_domain": outside,
    })
    return (atoms, probs) if return_probabilities else atoms


def _crop_probabilities(probs: np.ndarray, padded: tuple[int, int], offset: tuple[int, int],
                        shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities at the model's sampling of a padded frame, cut back to the
    original frame's field."""
    fy, fx = probs.shape[2] / padded[0], probs.shape[3] / padded[1]
    y0, x0 = round(offset[0] * fy), round(offset[1] * fx)
    return probs[:, :, y0:y0 + max(1, round(shape[0] * fy)),
                 x0:x0 + max(1, round(shape[1] * fx))]


def _json_columns(table: pd.DataFrame) -> dict[str, list]:
    """A table as lists per column, NaN as None (JSON has no NaN)."""
    return {c: [None if isinstance(v, float) and np.isnan(v) else v
                for v in table[c].tolist()] for c in table.columns}


def describe_found(atoms: pd.DataFrame) -> list[str]:
    """What a user should read about a table from :func:`find_atoms`, in sentences: the
    pixel size and how sure it is, padding, the heavy atoms and the quality of the
    frames (each of a few frames, the range over many). The frames that stand out and
    the doubts about the image's domain came as warnings already."""
    size = atoms.attrs.get("pixel_size") or {}
    lines = [f"pixel size {atoms.attrs.get('pixel_size_A', float('nan')):.4f} A "
             f"({size.get('source', atoms.attrs.get('pixel_size_source'))}, confidence "
             f"{size.get('confidence', '?')})"]
    if size.get("source") == "lattice":
        lines[0] += (f": lattice reflection {size['lattice_A']:.4f} A, atoms' C-C spacing "
                     f"{size['atoms_A']:.4f} A, {size['bonded']:.0%} in a honeycomb")
    if atoms.attrs.get("precision"):
        lines.append(f"network computed in {atoms.attrs['precision']}"
                     + (", averaged over 8 rotations and reflections"
                        if atoms.attrs.get("augmented") else ""))
    if atoms.attrs.get("padded_to_px"):
        h, w = atoms.attrs["padded_to_px"]
        lines.append(f"frames padded (reflected) to {h}x{w} px for the network, atoms "
                     "found in the padding dropped")
    if atoms.attrs.get("faint_dropped"):
        lines.append(f"{atoms.attrs['faint_dropped']} unsure atoms on dark ground (holes) "
                     "dropped as ghosts (faint_level)")
    heavy = int((atoms.species == "heavy").sum()) if len(atoms) else 0
    if heavy:
        lines.append(f"{heavy} atoms far brighter than Si, labelled 'heavy' (an element "
                     "the model does not know)")
    quality = pd.DataFrame(atoms.attrs.get("quality") or {})
    if len(quality):
        shown = quality[["frame", "atoms", "bond_A", "bonded", "doubles", "isolated",
                         "empty_area"]]
        if len(quality) <= 5:
            lines += ["quality per frame:",
                      *shown.round(3).to_string(index=False).splitlines()]
        else:
            lines.append("quality over the frames (min-max): " + ", ".join(
                f"{c} {shown[c].min():.3g}-{shown[c].max():.3g}"
                for c in shown.columns[1:]))
    return lines


def found_metadata(atoms: pd.DataFrame) -> dict:
    """The attributes :func:`find_atoms` records, with the quality columns explained:
    what a sidecar JSON of an atom table holds."""
    return {**atoms.attrs, "quality_columns": QUALITY_COLUMNS}
