"""The :class:`Movie` (float32 frames, a pixel size and metadata) and the checks every
movie or image array passes (:func:`validate_movie`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentpath.io.units import convert_length, movie_unit

MIN_FRAME_SIZE = 8


NAN_POLICIES = ("raise", "fill", "ignore")


class MovieError(ValueError):
    """A movie file or array cannot be used; the message names the file and the problem."""


@dataclass(eq=False)
class Movie:
    """A grey-scale microscopy movie.

    Parameters
    ----------
    data : ndarray, shape (T, H, W), float32
        Frames in acquisition order. Converted to C-contiguous float32 if needed.
    pixel_size : float or None
        Size of one (square) pixel in ``pixel_unit``; None when unknown.
    pixel_unit : {"A", "nm", "um"} or None
        Unit of ``pixel_size`` (angstrom, nanometre, micrometre); None exactly
        when ``pixel_size`` is None. Common spellings ("Å", "micron") are accepted.
    metadata : dict
        JSON-serialisable description of where the movie came from: ``sources``
        (list of paths), ``format``, ``channel``, ``data_units``, the pixel size
        as the file gave it, and any metadata the file carried.
    """

    data: np.ndarray
    pixel_size: float | None = None
    pixel_unit: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float32)
        if data.ndim != 3:
            raise MovieError(
                f"Movie data must have shape (T, H, W), got {data.shape}; "
                "use validate_movie() to convert single images"
            )
        self.data = data
        if (self.pixel_size is None) != (self.pixel_unit is None):
            raise MovieError(
                "pixel_size and pixel_unit must be given together, got "
                f"pixel_size={self.pixel_size!r}, pixel_unit={self.pixel_unit!r}"
            )
        if self.pixel_size is not None:
            size = float(self.pixel_size)
            if not (np.isfinite(size) and size > 0):
                raise MovieError(f"pixel_size must be a positive number, got {self.pixel_size!r}")
            self.pixel_size = size
            self.pixel_unit = movie_unit(self.pixel_unit)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return self.data.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (T, H, W) of the data."""
        return self.data.shape

    def pixel_size_in(self, unit: str) -> float:
        """Pixel size converted to ``unit``.

        Parameters
        ----------
        unit : {"A", "nm", "um"}
            Target unit (angstrom, nanometre, micrometre).

        Returns
        -------
        float
            Size of one pixel in ``unit``.

        Raises
        ------
        ValueError
            If the pixel size is unknown or ``unit`` is not a supported length unit.
        """
        target = movie_unit(unit)
        if self.pixel_size is None:
            source = (self.metadata.get("sources") or ["this movie"])[0]
            raise ValueError(
                f"the pixel size of {source} is unknown; pass pixel_size= and "
                "pixel_unit= to load_movie (or --pixel-size on the command line)"
            )
        return convert_length(self.pixel_size, self.pixel_unit, target)

    def __repr__(self) -> str:
        size = "unknown" if self.pixel_size is None else f"{self.pixel_size:.4g} {self.pixel_unit}"
        sources = self.metadata.get("sources") or []
        where = ""
        if len(sources) == 1:
            where = f", source={sources[0]!r}"
        elif sources:
            where = f", sources={len(sources)} files"
        return f"Movie(shape={self.shape}, pixel_size={size}{where})"


def validate_movie(data: Any, name: str = "movie", nan_policy: str = "raise") -> np.ndarray:
    """Check an image or movie array and return it as float32 (T, H, W).

    Parameters
    ----------
    data : array_like, shape (H, W) or (T, H, W)
        Real-valued grey-scale image(s); integers and booleans are converted.
        A single image becomes a movie of one frame.
    name : str
        What to call the array in error messages (e.g. the file it came from).
    nan_policy : {"raise", "fill", "ignore"}
        What to do with NaN or infinite values: raise a :class:`MovieError` saying
        how many and in which frames; replace them with the median of the finite
        values of their frame; or keep them.

    Returns
    -------
    ndarray, shape (T, H, W), float32, C-contiguous
        Shares memory with ``data`` when that is already float32, C-contiguous
        and needed no filling.

    Raises
    ------
    MovieError
        For complex or non-numeric data, colour images, a number of dimensions
        other than 2 or 3, empty arrays, frames smaller than 8 x 8 pixels, and
        non-finite values (unless ``nan_policy`` allows them).

    Examples
    --------
    >>> import numpy as np
    >>> validate_movie(np.ones((16, 16), dtype=np.uint8)).shape  # one image, one frame
    (1, 16, 16)
    >>> image = np.ones((16, 16))
    >>> image[3, 4] = np.nan
    >>> validate_movie(image, "scan.npy")
    Traceback (most recent call last):
    ...
    latentpath.io.movie.MovieError: scan.npy: 1 NaN and 0 infinite values in frame 0...
    >>> float(validate_movie(image, nan_policy="fill")[0, 3, 4])
    1.0
    """
    arr, _ = checked_array(data, name, nan_policy)
    return arr


def checked_array(data: Any, name: str, nan_policy: str) -> tuple[np.ndarray, int]:
    """validate_movie, also returning how many values were filled."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    try:
        arr = np.asarray(data)
    except ValueError as err:
        raise MovieError(f"{name}: cannot be read as an array ({err})") from err
    if arr.dtype.kind == "c":
        raise MovieError(
            f"{name}: complex data ({arr.dtype}) is not supported; pass the amplitude, "
            "phase or real part"
        )
    if arr.dtype.kind not in "biuf":
        raise MovieError(f"{name}: data of type {arr.dtype} is not numeric")
    colour_hint = (
        "; colour images are not supported, convert them to grey first"
        if arr.ndim in (3, 4) and arr.shape[-1] in (3, 4)
        else ""
    )
    if arr.ndim == 3 and colour_hint:
        raise MovieError(
            f"{name}: shape {arr.shape} looks like a colour (RGB/RGBA) image{colour_hint}"
        )
    if arr.ndim not in (2, 3):
        raise MovieError(
            f"{name}: expected an image (H, W) or movie (T, H, W), got {arr.ndim}-D data of "
            f"shape {arr.shape}{colour_hint}"
        )
    if arr.size == 0:
        raise MovieError(f"{name}: empty data of shape {arr.shape}")
    if arr.shape[-2] < MIN_FRAME_SIZE or arr.shape[-1] < MIN_FRAME_SIZE:
        raise MovieError(
            f"{name}: frames of {arr.shape[-2]} x {arr.shape[-1]} pixels are smaller than "
            f"the minimum of {MIN_FRAME_SIZE} x {MIN_FRAME_SIZE}"
        )
    out = np.ascontiguousarray(arr if arr.ndim == 3 else arr[np.newaxis], dtype=np.float32)
    if nan_policy == "ignore":
        return out, 0
    # Checked after the cast: float64 values beyond the float32 range become inf.
    bad = ~np.isfinite(out)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return out, 0
    bad_frames = np.flatnonzero(bad.any(axis=(1, 2)))
    if nan_policy == "raise":
        n_nan = int(np.isnan(out).sum())
        raise MovieError(
            f"{name}: {n_nan} NaN and {n_bad - n_nan} infinite values in "
            f"{_frame_list(bad_frames)} (of {out.shape[0]}); replace them before the "
            "analysis, or load the movie in Python with load_movie(..., nan_policy='fill') "
            "(each frame's median)"
        )
    if np.may_share_memory(out, arr):
        out = out.copy()
    for t in bad_frames:
        finite = out[t][~bad[t]]
        if finite.size == 0:
            raise MovieError(f"{name}: frame {t} has no finite value to fill NaN/inf with")
        out[t][bad[t]] = np.median(finite)
    return out, n_bad


def _frame_list(frames: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(t) for t in frames[:limit])
    more = f", ... ({len(frames)} frames in all)" if len(frames) > limit else ""
    return f"frame{'s' if len(frames) > 1 else ''} {shown}{more}"
