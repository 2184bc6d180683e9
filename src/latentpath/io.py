"""Reading microscopy movies and writing results without losing user files.

Movies are returned as :class:`Movie`: a float32 array of shape (T, H, W) plus the
size of one pixel and whatever metadata the file carried. :func:`load_movie` reads
NumPy (``.npy``, ``.npz``), TIFF stacks, HDF5 (plain or pyNSID/sidpy), and, through
RosettaSciIO, Gatan DigitalMicrograph (``.dm3``, ``.dm4``) and EMD (``.emd``) files.

Pixel sizes read from a file are re-expressed in the unit that suits their scale:
angstrom below 1 nm per pixel (atomic-resolution STEM), nanometre below 1 um per
pixel (typical PFM/AFM scans), micrometre above.

Every writer (:func:`save_npz`, :func:`write_table`, :func:`write_json`) refuses to
replace an existing file unless asked to, and writes to a temporary file in the
target directory that is renamed into place only once complete, so an interrupted
run never leaves a half-written result or a damaged earlier one.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Movie",
    "MovieError",
    "load_movie",
    "read_table",
    "save_npy",
    "save_npz",
    "validate_movie",
    "write_json",
    "write_table",
    "write_text",
]

MIN_FRAME_SIZE = 8
NAN_POLICIES = ("raise", "fill", "ignore")

_FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".dm3": "dm3",
    ".dm4": "dm4",
    ".emd": "emd",
    ".zarr": "zarr",
}

# Units a Movie may carry.
_MOVIE_UNITS = ("A", "nm", "um")

# Spellings of length units met in files and on the command line, lower-cased.
_UNIT_ALIASES = {
    "m": "m",
    "mm": "mm",
    "um": "um",
    "µm": "um",  # micro sign
    "μm": "um",  # greek mu
    "\\u00b5m": "um",  # ImageJ writes the micro sign escaped
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometre": "um",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "a": "A",
    "å": "A",  # latin a with ring
    "Å": "A",  # angstrom sign, which lower() leaves alone
    "ang": "A",
    "angstrom": "A",
    "angstroms": "A",
    "pm": "pm",
}
# Powers of ten in metres: converting with exact integer powers keeps 0.05 nm = 0.5 A
# exact, where multiplying by 1e-9 and dividing by 1e-10 would not.
_LENGTH_EXP = {"m": 0, "mm": -3, "um": -6, "nm": -9, "A": -10, "pm": -12}

# HDF5 attributes holding object references or h5py bookkeeping, useless in metadata.
_H5_SKIP_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "DIMENSION_LABELS"}


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
            self.pixel_unit = _movie_unit(self.pixel_unit)

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
        target = _movie_unit(unit)
        if self.pixel_size is None:
            source = (self.metadata.get("sources") or ["this movie"])[0]
            raise ValueError(
                f"the pixel size of {source} is unknown; pass pixel_size= and "
                "pixel_unit= to load_movie (or --pixel-size on the command line)"
            )
        return _convert(self.pixel_size, self.pixel_unit, target)

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
    """
    arr, _ = _validate(data, name, nan_policy)
    return arr


def load_movie(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    channel: str | None = None,
    *,
    nan_policy: str = "raise",
    pixel_size: float | None = None,
    pixel_unit: str | None = None,
) -> Movie:
    """Read a microscopy movie (or single image) from one or several files.

    The format follows the extension (case-insensitive):

    ``.npy``
        The array itself.
    ``.npz``
        The member named ``channel``; without a channel, the member ``movie`` if
        present, else the only 2-D or 3-D numeric member. A scalar ``pixel_size``
        member with a string ``pixel_unit`` gives the pixel size, and a JSON string
        ``metadata`` member goes to ``metadata["file_metadata"]``.
    ``.tif``, ``.tiff``
        The first image series (multi-page stacks give one frame per page); pixel
        size from the ImageJ ``unit`` and the resolution tags.
    ``.h5``, ``.hdf5``, ``.hdf``
        ``channel`` is a dataset path, the ``quantity`` attribute of a pyNSID/sidpy
        dataset (case-insensitive, e.g. "PhaseRetrace") or a unique dataset name;
        without it, the only 2-D or 3-D numeric dataset. Pixel size from attached
        dimension scales or sibling ``x``/``y`` datasets. A JSON string dataset
        ``metadata`` goes to ``metadata["file_metadata"]``.
    ``.dm3``, ``.dm4``, ``.emd``
        Through RosettaSciIO; ``channel`` picks an image signal by title. A
        navigation axis becomes the time axis.
    ``.zarr`` (a directory)
        The array ``channel`` (default ``movie``) of a Zarr group, as
        :func:`save_zarr` writes it, with its pixel size and metadata; or a bare Zarr
        array. :func:`open_zarr_frames` reads a few frames at a time instead.

    A JSON sidecar ``<stem>.json`` beside a file goes to ``metadata["sidecar"]``
    and, when the file gives no pixel size, its
    ``experimental_details.spatial_info.field_of_view_x`` (with
    ``field_of_view_units``) divided by the image width gives one.

    Parameters
    ----------
    path : str, path-like, or sequence of them
        File to read, or files whose frames are stacked in the order given. All
        must have frames of the same size; the pixel size comes from the first.
    channel : str, optional
        Which array, dataset or signal to read when a file holds several.
    nan_policy : {"raise", "fill", "ignore"}
        Handling of NaN or infinite values, see :func:`validate_movie`.
    pixel_size : float, optional
        Pixel size overriding the file's; requires ``pixel_unit``.
    pixel_unit : {"A", "nm", "um"}, optional
        Unit of ``pixel_size``. Given alone, the file's pixel size is re-expressed
        in it (and stays unknown if the file has none).

    Returns
    -------
    Movie
        float32 data of shape (T, H, W); a single image gives T = 1.

    Raises
    ------
    FileNotFoundError
        If a file does not exist.
    MovieError
        If a file is a directory, has an unsupported extension, cannot be parsed,
        holds no image or several without ``channel`` naming one, lacks the
        requested channel, or its data fail :func:`validate_movie`; if stacked
        files differ in frame size.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if pixel_size is not None and pixel_unit is None:
        raise MovieError(
            f"pixel_size={pixel_size!r} was given without pixel_unit; pass pixel_unit='A', "
            "'nm' or 'um'"
        )
    if pixel_unit is not None:
        pixel_unit = _movie_unit(pixel_unit)

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise MovieError("load_movie was given an empty list of files")
    paths = [Path(p) for p in paths]

    frames, infos = [], []
    for p in paths:
        raw_data, pixel, meta = _read_file(p, channel)
        data, n_filled = _validate(raw_data, str(p), nan_policy)
        if n_filled:
            meta["n_nonfinite_filled"] = n_filled
        if pixel is None:
            pixel = _pixel_from_sidecar(meta, data.shape[2])
            if pixel is not None:
                meta["pixel_size_source"] = "sidecar"
        elif "pixel_size_source" not in meta:
            meta["pixel_size_source"] = "file"
        if frames and data.shape[1:] != frames[0].shape[1:]:
            raise MovieError(
                f"{p}: frames of shape {data.shape[1:]} cannot be stacked with those of "
                f"{paths[0]}, which have shape {frames[0].shape[1:]}"
            )
        frames.append(data)
        infos.append((None if pixel is None else _convert(*pixel, "m"), pixel, meta))

    metres, pixel, metadata = infos[0]
    metadata = dict(metadata)
    metadata["sources"] = [str(p) for p in paths]
    if len(paths) > 1:
        metadata.pop("source", None)
        metadata["frames_per_source"] = [f.shape[0] for f in frames]
        metadata["pixel_size_m_per_source"] = [info[0] for info in infos]
        known = [(p, info[0]) for p, info in zip(paths, infos, strict=True)
                 if info[0] is not None]
        if known and not np.allclose([m for _, m in known], known[0][1], rtol=0.01, atol=0):
            # same pixel counts over other fields of view: stacked, they would read as a
            # sample that drifts and grows
            odd = next((p, m) for p, m in known
                       if not np.isclose(m, known[0][1], rtol=0.01, atol=0))
            raise MovieError(
                f"{odd[0]} has pixels of {odd[1]:.4g} m and {known[0][0]} of "
                f"{known[0][1]:.4g} m: frames of different scan sizes are not one movie; "
                "analyse them one by one, or resample them to one pixel size first")
    data = frames[0] if len(frames) == 1 else np.concatenate(frames, axis=0)

    size = unit = None
    if pixel_size is not None:
        size, unit = float(pixel_size), pixel_unit
        metadata["pixel_size_source"] = "argument"
    elif pixel is not None:
        if pixel_unit is None:
            unit = "A" if metres < 1e-9 else "nm" if metres < 1e-6 else "um"
        else:
            unit = pixel_unit
        size = _convert(*pixel, unit)
    else:
        metadata["pixel_size_source"] = None
    return Movie(data=data, pixel_size=size, pixel_unit=unit, metadata=_jsonable(metadata))


def save_npz(
    path: str | os.PathLike,
    arrays: dict[str, Any],
    *,
    overwrite: bool = False,
    compressed: bool = True,
) -> Path:
    """Write arrays to a ``.npz`` file atomically.

    Parameters
    ----------
    path : str or path-like
        Target file; must end in ``.npz``.
    arrays : dict of str to array_like
        Members to store. Scalars and strings are allowed; object arrays are not,
        because they could only be read back with pickling enabled.
    overwrite : bool
        Replace an existing file instead of raising.
    compressed : bool
        Use zip deflate compression.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    ValueError
        If the extension is not ``.npz`` or a member is an object array.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: save_npz writes .npz files only")
    members = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"{path}: member {key!r} is an object array and cannot be saved")
        members[key] = arr
    save = np.savez_compressed if compressed else np.savez
    with _atomic_write(path, overwrite) as tmp, open(tmp, "wb") as f:
        # A file object, unlike a name, stops numpy from appending ".npz" to the temp name.
        save(f, **members)
    return path


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a table atomically as Parquet (``.parquet``) or CSV (``.csv``).

    Parameters
    ----------
    df : DataFrame
        Table to write. The index is not written; call ``reset_index()`` first to
        keep it as a column.
    path : str or path-like
        Target file; the extension selects the format.
    overwrite : bool
        Replace an existing file instead of raising.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    ValueError
        If the extension is neither ``.parquet`` nor ``.csv``.
    """
    path = Path(path)
    fmt = _table_format(path)
    with _atomic_write(path, overwrite) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, engine="pyarrow", index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table`.

    Parameters
    ----------
    path : str or path-like
        A ``.parquet`` or ``.csv`` file.

    Returns
    -------
    DataFrame

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is neither ``.parquet`` nor ``.csv``.
    """
    path = Path(path)
    fmt = _table_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parquet":
        return pd.read_parquet(path, engine="pyarrow")
    return pd.read_csv(path)


def write_json(obj: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an object as indented JSON atomically.

    Parameters
    ----------
    obj : JSON-serialisable object
        NumPy scalars and arrays and paths are converted to plain JSON values.
    path : str or path-like
        Target file.
    overwrite : bool
        Replace an existing file instead of raising.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    TypeError
        If ``obj`` holds values JSON cannot represent.
    """
    path = Path(path)
    # Serialise before touching the disk so an unserialisable object leaves no trace.
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    with _atomic_write(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_text(text: str, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write text (UTF-8) atomically: the file is either absent, the old one, or whole.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    """
    path = Path(path)
    with _atomic_write(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_npy(array: np.ndarray, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save one array as .npy atomically (it can then be memory-mapped).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    """
    path = Path(path)
    with _atomic_write(path, overwrite) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array))
    return path


# --------------------------------------------------------------------------- writing


@contextmanager
def _atomic_write(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    _refuse_existing(path, overwrite)
    # Same directory so os.replace is a rename on one filesystem, hence atomic.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        # Checked again: the target may have appeared while we were writing.
        _refuse_existing(path, overwrite)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    check_writable([path], overwrite=overwrite)


def check_not_input(outputs: Sequence[str | os.PathLike],
                    inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse outputs that are one of a command's inputs, or a folder holding one.

    Parameters
    ----------
    outputs : paths
        Files or folders the command would write (or replace, or empty).
    inputs : mapping
        What each input is to the user (``"the movie"``, ``"--truth"``) -> its path;
        None values are skipped. Compared by the file itself (``os.path.samefile``, so
        links and other spellings of a path are caught), not by name.

    Raises
    ------
    ValueError
        Naming the output and the input it would replace: an input is never replaced,
        even with ``--overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> movie = folder / "movie.npy"
    >>> _ = movie.write_bytes(b"")
    >>> check_not_input([folder / "atoms.csv"], {"the movie": movie})
    >>> check_not_input([folder], {"the movie": movie})
    Traceback (most recent call last):
    ...
    ValueError: ...movie.npy is the movie of this command and lies in the output ...
    """
    for role, given in inputs.items():
        if given is None or not Path(given).exists():
            continue
        source = Path(given)
        for out in map(Path, outputs):
            if not out.exists():
                continue
            if out.is_dir():
                # by place, or by file (a hard link elsewhere to a file in the folder)
                hit = source.resolve().is_relative_to(out.resolve()) or (
                    source.is_file() and any(os.path.samefile(source, f)
                                             for f in out.rglob("*") if f.is_file()))
                where = f"lies in the output {out}"
            else:
                hit = source.is_file() and os.path.samefile(source, out)
                where = f"would be replaced by the output {out}"
            if hit:
                raise ValueError(f"{source} is {role} of this command and {where}; an "
                                 "input is never replaced, even with --overwrite: choose "
                                 "another output")


def check_writable(paths: Sequence[str | os.PathLike], *, overwrite: bool = False,
                   inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse, before anything is written, to replace any of several output files.

    A writer that produces several files calls this first, so that an existing file
    stops it with nothing written rather than half way through.

    Parameters
    ----------
    paths : paths
        The output files.
    overwrite : bool
        Allow replacing existing files that are not inputs.
    inputs : mapping, optional
        The command's inputs (see :func:`check_not_input`): never replaced.

    Raises
    ------
    FileExistsError
        Naming the first existing file (and how many more exist), unless ``overwrite``.
    ValueError
        An output is one of ``inputs``.
    """
    check_not_input(paths, inputs or {})
    if overwrite:
        return
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more output files)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]}{more} already exists; pass overwrite=True (or --overwrite on "
            "the command line) to replace it"
        )


def tables_to_arrays(tables: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Flatten named tables into arrays ``<table>.<column>`` for an .npz file.

    Text columns become fixed-width unicode arrays, so the file loads without
    pickle; ``<table>.__columns__`` keeps the column order.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, df in tables.items():
        for col in df.columns:
            values = df[col].to_numpy()
            arrays[f"{name}.{col}"] = values.astype(str) if values.dtype == object else values
        arrays[f"{name}.__columns__"] = np.array([str(c) for c in df.columns], dtype=str)
    return arrays


def tables_from_arrays(data: Mapping[str, np.ndarray], names: Sequence[str]
                       ) -> dict[str, pd.DataFrame]:
    """Rebuild the tables written by :func:`tables_to_arrays` (e.g. from ``np.load``)."""
    tables = {}
    for name in names:
        cols = [str(c) for c in data[f"{name}.__columns__"]]
        tables[name] = pd.DataFrame({c: data[f"{name}.{c}"] for c in cols}, columns=cols)
    return tables


def _table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"{path}: tables must be .parquet or .csv files, not {suffix!r}")
    return suffix[1:]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- validation


def _validate(data: Any, name: str, nan_policy: str) -> tuple[np.ndarray, int]:
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


# --------------------------------------------------------------------------- units


def _movie_unit(unit: str | None) -> str:
    """Canonical Movie unit ("A", "nm" or "um") for a spelling of it."""
    canonical = _length_unit(unit)
    if canonical not in _MOVIE_UNITS:
        raise ValueError(
            f"unsupported pixel unit {unit!r}; use 'A' (angstrom), 'nm' or 'um'"
        )
    return canonical


def _length_unit(unit: Any) -> str | None:
    """Canonical length unit for a spelling found in a file, or None if not a length."""
    if not isinstance(unit, str):
        return None
    unit = unit.strip()
    return _UNIT_ALIASES.get(unit, _UNIT_ALIASES.get(unit.lower()))


def _length(value: Any, unit: Any) -> tuple[float, str] | None:
    """(value, canonical unit), or None if ``unit`` is not a length or ``value`` not positive."""
    canonical = _length_unit(unit)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if canonical is None or not (np.isfinite(value) and value > 0):
        return None
    return value, canonical


def _convert(value: float, unit: str, target: str) -> float:
    """``value`` in canonical length ``unit`` expressed in ``target``."""
    power = _LENGTH_EXP[unit] - _LENGTH_EXP[target]
    return value * 10**power if power >= 0 else value / 10**-power


# --------------------------------------------------------------------------- reading


def _read_file(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    """Raw array, pixel size as (value, length unit) or None, and metadata of one file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = _FORMATS.get(path.suffix.lower())
    if path.is_dir() != (fmt == "zarr"):
        raise MovieError(f"{path} is a directory, not a movie file" if path.is_dir() else
                         f"{path}: a .zarr store is a directory")
    if fmt is None:
        raise MovieError(
            f"{path}: unsupported extension {path.suffix!r}; supported: "
            f"{', '.join(sorted(_FORMATS))}"
        )
    reader = {
        "npy": _read_npy,
        "npz": _read_npz,
        "tiff": _read_tiff,
        "hdf5": _read_hdf5,
        "dm3": _read_rsciio,
        "dm4": _read_rsciio,
        "emd": _read_rsciio,
        "zarr": _read_zarr,
    }[fmt]
    try:
        data, pixel, meta = reader(path, channel)
    except MovieError:
        raise
    except Exception as err:  # the readers' libraries raise many unrelated types
        raise MovieError(
            f"{path}: could not read this {fmt} file ({type(err).__name__}: {err})"
        ) from err
    meta = {"source": str(path), "format": fmt, **meta}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            meta["sidecar"] = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            warnings.warn(f"ignoring unreadable sidecar {sidecar}: {type(err).__name__}",
                          stacklevel=3)
    return data, pixel, meta


def _no_channel(path: Path, channel: str | None, fmt: str) -> None:
    if channel is not None:
        raise MovieError(
            f"{path}: {fmt} files hold a single image or movie; channel={channel!r} "
            "cannot be used with them"
        )


#: the first bytes of the image formats a misnamed file most often holds
_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
          b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"PK": "a zip (.npz) archive",
          b"\x89HDF": "an HDF5 file", b"GIF8": "a GIF image", b"BM": "a BMP image"}


def _read_npy(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    _no_channel(path, channel, "npy")
    with open(path, "rb") as f:
        head = f.read(8)
    # numpy takes any other start for a pickle, and says so: name what the file is
    if not head.startswith(b"\x93NUMPY"):
        what = next((name for magic, name in _MAGIC.items() if head.startswith(magic)),
                    "no numpy array (no .npy header)")
        if not head:
            what = "nothing (the file is empty)"
        raise MovieError(f"{path}: could not read this npy file: it holds {what}; give it "
                         "its format's extension, or save the array with numpy.save")
    return np.load(path, allow_pickle=False), None, {}


def _read_zarr(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    """The array ``channel`` (default ``movie``) of a Zarr group, or a Zarr array, with
    the ``pixel_size``, ``pixel_unit`` and ``metadata`` attributes :func:`save_zarr`
    writes."""
    frames, attrs = open_zarr_frames(path, channel)
    meta: dict[str, Any] = {"channel": channel or "movie"}
    pixel = None
    if "pixel_size" in attrs:
        meta["file_pixel_size"] = attrs["pixel_size"]
        meta["file_pixel_unit"] = attrs.get("pixel_unit")
        pixel = _length(attrs["pixel_size"], attrs.get("pixel_unit"))
    if isinstance(attrs.get("metadata"), dict):
        meta["file_metadata"] = attrs["metadata"]
    return frames[...], pixel, meta


def open_zarr_frames(path: str | os.PathLike, channel: str | None = None
                     ) -> tuple[Any, dict]:
    """A movie in a Zarr store, lazily: frames are read from disk only when indexed.

    Parameters
    ----------
    path : path
        A ``.zarr`` directory written by :func:`save_zarr` (a group holding the array
        ``movie``), or any Zarr group or array of shape (T, H, W) or (H, W).
    channel : str, optional
        The array to open inside a group (default ``movie``).

    Returns
    -------
    frames : zarr.Array
        ``frames[a:b]`` reads frames a to b, chunk by chunk.
    attrs : dict
        The group's attributes (the array's, for a bare array): ``pixel_size``,
        ``pixel_unit``, ``metadata`` where :func:`save_zarr` wrote them.

    Raises
    ------
    MovieError
        Not a Zarr store, no such array, or not 2-D or 3-D numbers.
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a directory it cannot read
        raise MovieError(f"{path}: not a readable Zarr store ({type(err).__name__}: "
                         f"{err})") from err
    if isinstance(node, zarr.Group):
        name = channel or "movie"
        if name not in node.array_keys():
            raise MovieError(f"{path}: no array named {name!r}; available: "
                             f"{', '.join(sorted(node.array_keys())) or 'none'}")
        frames, attrs = node[name], dict(node.attrs)
    else:
        _no_channel(path, channel, "zarr")
        frames, attrs = node, dict(node.attrs)
    if frames.ndim not in (2, 3) or frames.dtype.kind not in "biuf":
        raise MovieError(f"{path}: expected a 2-D or 3-D numeric array, got shape "
                         f"{frames.shape} and dtype {frames.dtype}")
    return frames, attrs


def save_zarr(movie: Movie, path: str | os.PathLike, *, chunk_frames: int = 1,
              overwrite: bool = False) -> Path:
    """Write a movie as a Zarr store that can be read a few frames at a time
    (:func:`open_zarr_frames`; :func:`load_movie` reads it whole).

    The store is a group holding the array ``movie`` (T, H, W), float32, in chunks of
    ``chunk_frames`` whole frames, with the attributes ``pixel_size``, ``pixel_unit``
    and ``metadata``. It is written beside ``path`` and renamed into place when whole,
    so a killed write leaves no half store.

    Raises
    ------
    FileExistsError
        ``path`` exists and not ``overwrite``.
    """
    import shutil

    import zarr

    path = Path(path)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    check_writable([path], overwrite=overwrite)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        group = zarr.open_group(str(tmp), mode="w")
        data = movie.data
        frames = group.create_array("movie", shape=data.shape, dtype="float32",
                                    chunks=(min(chunk_frames, len(data)), *data.shape[1:]))
        for start in range(0, len(data), chunk_frames):
            frames[start:start + chunk_frames] = data[start:start + chunk_frames]
        group.attrs.update({"pixel_size": movie.pixel_size, "pixel_unit": movie.pixel_unit,
                            "metadata": json.loads(json.dumps(movie.metadata, default=str))})
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def _read_npz(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        if channel is not None:
            if channel not in names:
                raise MovieError(
                    f"{path}: no array named {channel!r}; available: {', '.join(names)}"
                )
            key = channel
        elif "movie" in names:
            key = "movie"
        else:
            # Members are loaded one at a time only to look at them; just one is kept.
            info = {}
            for n in names:
                member = npz[n]
                info[n] = (member.shape, member.dtype)
            candidates = [
                n for n, (shape, dtype) in info.items()
                if len(shape) in (2, 3) and dtype.kind in "biufc"
            ]
            listing = ", ".join(f"{n} {shape} {dtype}" for n, (shape, dtype) in info.items())
            if not candidates:
                raise MovieError(f"{path}: no 2-D or 3-D numeric array; members: {listing}")
            if len(candidates) > 1:
                raise MovieError(
                    f"{path}: several candidate arrays ({', '.join(candidates)}); "
                    "pass channel= to choose one"
                )
            key = candidates[0]
        data = npz[key]
        meta: dict[str, Any] = {"channel": key}
        pixel = None
        if "pixel_size" in names and npz["pixel_size"].ndim == 0:
            size = npz["pixel_size"].item()
            unit = npz["pixel_unit"].item() if "pixel_unit" in names else None
            meta["file_pixel_size"], meta["file_pixel_unit"] = size, unit
            pixel = _length(size, unit)
            if pixel is None:
                warnings.warn(
                    f"{path}: ignoring pixel_size={size!r} with pixel_unit={unit!r}, "
                    "which is not a length",
                    stacklevel=4,
                )
        if "metadata" in names and npz["metadata"].ndim == 0:
            meta["file_metadata"] = _parse_json(npz["metadata"].item())
    return data, pixel, meta


def _read_tiff(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    import tifffile

    _no_channel(path, channel, "TIFF")
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise MovieError(f"{path}: the TIFF file holds no image")
        series = tif.series[0]
        data = series.asarray()
        meta: dict[str, Any] = {"tiff_axes": series.axes, "n_series": len(tif.series)}
        ij = tif.imagej_metadata or {}
        unit = ij.get("unit")
        pixel = None
        # Without an ImageJ unit the resolution tags are usually a meaningless 72 dpi.
        if _length_unit(unit) is not None:
            tags = tif.pages[0].tags
            xres = tags.get("XResolution")
            if xres is not None:
                num, den = xres.value
                if num > 0:
                    meta["file_pixel_size"], meta["file_pixel_unit"] = den / num, unit
                    pixel = _length(den / num, unit)
        if ij:
            meta["imagej_metadata"] = ij
    return data, pixel, meta


def _read_hdf5(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        datasets: list[h5py.Dataset] = []

        def collect(_: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                datasets.append(obj)

        f.visititems(collect)
        candidates = [
            d for d in datasets
            if d.ndim in (2, 3) and d.dtype.kind in "biufc"
            and _h5_attr(d, "CLASS") != "DIMENSION_SCALE"
        ]
        dset = _pick_h5_dataset(path, f, channel, datasets, candidates)
        data = dset[()]
        attrs = {k: v for k, v in dset.attrs.items() if k not in _H5_SKIP_ATTRS}
        quantity = _h5_attr(dset, "quantity")
        meta: dict[str, Any] = {
            "dataset": dset.name,
            "channel": quantity or dset.name.rsplit("/", 1)[-1],
            "attrs": attrs,
        }
        if quantity is not None:
            meta["quantity"] = quantity
        if _h5_attr(dset, "units") is not None:
            meta["data_units"] = _h5_attr(dset, "units")
        # sidpy keeps the instrument's own parameters in a sibling group.
        original = dset.parent.get("original_metadata")
        if isinstance(original, h5py.Group):
            meta["original_metadata"] = dict(original.attrs)
        for group in (dset.parent, f):
            text = group.get("metadata")
            if isinstance(text, h5py.Dataset) and text.ndim == 0:
                meta["file_metadata"] = _parse_json(text[()])
                break
        pixel = _h5_pixel_size(dset, meta)
    return data, pixel, meta


def _pick_h5_dataset(
    path: Path, f: Any, channel: str | None, datasets: list, candidates: list
) -> Any:
    """The dataset ``channel`` names (path, quantity or unique name), else the only candidate."""
    import h5py

    def describe(d: h5py.Dataset) -> str:
        extra = [f"{k}={_h5_attr(d, k)!r}" for k in ("quantity", "units") if _h5_attr(d, k)]
        return f"{d.name} {d.shape}" + (f" ({', '.join(extra)})" if extra else "")

    listing = "; ".join(describe(d) for d in candidates) or "none"
    if channel is None:
        if not candidates:
            raise MovieError(f"{path}: no 2-D or 3-D numeric dataset in the file")
        if len(candidates) > 1:
            raise MovieError(
                f"{path}: several candidate datasets, pass channel= (a dataset path or "
                f"quantity) to choose one: {listing}"
            )
        return candidates[0]
    named = f.get(channel)
    if isinstance(named, h5py.Dataset):
        return named
    matches = [
        d for d in candidates if str(_h5_attr(d, "quantity") or "").lower() == channel.lower()
    ]
    if not matches:
        matches = [d for d in datasets if d.name.rsplit("/", 1)[-1] == channel]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise MovieError(
            f"{path}: channel {channel!r} matches several datasets "
            f"({', '.join(d.name for d in matches)}); pass the full dataset path"
        )
    raise MovieError(f"{path}: channel {channel!r} not found; available: {listing}")


def _h5_attr(obj: Any, key: str) -> Any:
    value = obj.attrs.get(key)
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    return value


def _h5_pixel_size(dset: Any, meta: dict) -> tuple[float, str] | None:
    """Pixel size from the dimension scales of the last (column) axis, else of the rows."""
    import h5py

    if dset.ndim < 2:
        return None
    scales: list = []
    for axis in (dset.ndim - 1, dset.ndim - 2):
        attached = dset.dims[axis].values()
        scales.append(attached[0] if attached else None)
    for i, name in enumerate(("x", "y")):
        sibling = dset.parent.get(name)
        if scales[i] is None and isinstance(sibling, h5py.Dataset) and sibling.ndim == 1:
            scales[i] = sibling
    for scale in scales:
        if scale is None or scale.ndim != 1 or scale.shape[0] < 2:
            continue
        values = scale[()].astype(float)
        spacing = abs(values[1] - values[0])
        extent = abs(values[-1] - values[0])
        units = _h5_attr(scale, "units")
        meta["file_pixel_size"], meta["file_pixel_unit"] = float(spacing), units
        if _length_unit(units) is None and _h5_attr(scale, "dimension_type") == "SPATIAL" \
                and 1e-9 <= extent <= 1e-3:
            # sidpy copies a channel's units onto its axes (PFM phase axes say "deg"); a
            # spatial axis spanning 1 nm to 1 mm in those numbers can only be in metres.
            meta["pixel_unit_assumed"] = f"m (the axis says {units!r})"
            units = "m"
        return _length(spacing, units)
    return None


def _read_rsciio(path: Path, channel: str | None) -> tuple[Any, tuple[float, str] | None, dict]:
    if path.suffix.lower() == ".emd":
        from rsciio.emd import file_reader

        # Images only: Velox spectrum images are large and need extra packages.
        signals = file_reader(str(path), select_type="image")
    else:
        from rsciio.digitalmicrograph import file_reader

        signals = file_reader(str(path))

    def title(sig: dict) -> str:
        return str(sig.get("metadata", {}).get("General", {}).get("title", ""))

    images = [s for s in signals if _is_image_signal(s)]
    if not images:
        found = ", ".join(f"{title(s)!r} {np.shape(s['data'])}" for s in signals) or "none"
        raise MovieError(f"{path}: no image signal; signals found: {found}")
    titles = ", ".join(repr(title(s)) for s in images)
    if channel is None:
        if len(images) > 1:
            raise MovieError(
                f"{path}: several image signals ({titles}); pass channel= with a title"
            )
        sig = images[0]
    else:
        matches = [s for s in images if title(s).lower() == channel.lower()]
        if not matches:
            raise MovieError(f"{path}: channel {channel!r} not found; available: {titles}")
        if len(matches) > 1:
            raise MovieError(f"{path}: several image signals are titled {channel!r}")
        sig = matches[0]
    x_axis = sig["axes"][-1]
    meta = {
        "channel": title(sig),
        "axes": sig["axes"],
        "file_pixel_size": x_axis.get("scale"),
        "file_pixel_unit": x_axis.get("units"),
        "signal_metadata": sig.get("metadata", {}),
        "original_metadata": sig.get("original_metadata", {}),
    }
    quantity = sig.get("metadata", {}).get("Signal", {}).get("quantity")
    if quantity:
        meta["data_units"] = quantity
    return np.asarray(sig["data"]), _length(x_axis.get("scale"), x_axis.get("units")), meta


def _is_image_signal(sig: dict) -> bool:
    """Whether a RosettaSciIO signal is an image or a stack of images along its first axis."""
    axes, ndim = sig.get("axes", []), np.ndim(sig.get("data"))
    if ndim not in (2, 3) or len(axes) != ndim:
        return False
    if any(a.get("navigate", False) for a in axes[-2:]):
        return False
    if ndim == 3 and not axes[0].get("navigate", False):
        # NCEM EMD marks every axis as a signal axis; a time stack has matching
        # spatial units on its last two axes, a spectrum image does not.
        return _length_unit(axes[-1].get("units")) == _length_unit(axes[-2].get("units"))
    return True


def _pixel_from_sidecar(meta: dict, width: int) -> tuple[float, str] | None:
    spatial = meta.get("sidecar", {})
    for key in ("experimental_details", "spatial_info"):
        spatial = spatial.get(key, {}) if isinstance(spatial, dict) else {}
    if not isinstance(spatial, dict):
        return None
    fov = _length(spatial.get("field_of_view_x"), spatial.get("field_of_view_units"))
    return None if fov is None else (fov[0] / width, fov[1])


def _parse_json(value: Any) -> Any:
    """JSON text from a file parsed, or kept as text if it does not parse."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _jsonable(value: Any, max_items: int = 64) -> Any:
    """Plain JSON value for metadata; arrays beyond ``max_items`` become a summary."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, max_items) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, max_items) for v in value]
    if isinstance(value, np.ndarray):
        if value.size > max_items:
            return f"<array shape={value.shape} dtype={value.dtype}>"
        return _jsonable(value.tolist(), max_items)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), max_items)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not np.isfinite(value):
        # Strict JSON has no NaN or infinity.
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
