"""Reading microscopy movies: :func:`load_movie` reads NumPy (``.npy``, ``.npz``), TIFF
stacks, HDF5 (plain or pyNSID/sidpy), Zarr, and, through RosettaSciIO, Gatan
DigitalMicrograph (``.dm3``, ``.dm4``) and EMD (``.emd``) files; :func:`save_zarr` and
:func:`open_zarr_frames` keep a large movie on disk in chunks of frames.

Pixel sizes read from a file are re-expressed in the unit that suits their scale:
angstrom below 1 nm per pixel (atomic-resolution STEM), nanometre below 1 um per
pixel (typical PFM/AFM scans), micrometre above."""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentpath.io.movie import NAN_POLICIES, Movie, MovieError, checked_array
from latentpath.io.units import convert_length, length_unit, length_with_unit, movie_unit
from latentpath.io.writers import check_writable

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


# HDF5 attributes holding object references or h5py bookkeeping, useless in metadata.
_H5_SKIP_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "DIMENSION_LABELS"}


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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "scan.npy"
    >>> np.save(path, np.zeros((3, 64, 64), dtype=np.uint16))
    >>> movie = load_movie(path, pixel_size=0.5, pixel_unit="nm")  # 0.5 nm: 5 A
    >>> movie.shape, movie.data.dtype, movie.pixel_size, movie.pixel_unit
    ((3, 64, 64), dtype('float32'), 0.5, 'nm')
    >>> movie.pixel_size_in("A")
    5.0
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if pixel_size is not None and pixel_unit is None:
        raise MovieError(
            f"pixel_size={pixel_size!r} was given without pixel_unit; pass pixel_unit='A', "
            "'nm' or 'um'"
        )
    if pixel_unit is not None:
        pixel_unit = movie_unit(pixel_unit)

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise MovieError("load_movie was given an empty list of files")
    paths = [Path(p) for p in paths]

    frames, infos = [], []
    for p in paths:
        raw_data, pixel, meta = _read_file(p, channel)
        data, n_filled = checked_array(raw_data, str(p), nan_policy)
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
        infos.append((None if pixel is None else convert_length(*pixel, "m"), pixel, meta))

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
        size = convert_length(*pixel, unit)
    else:
        metadata["pixel_size_source"] = None
    return Movie(data=data, pixel_size=size, pixel_unit=unit, metadata=_jsonable(metadata))


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
        pixel = length_with_unit(attrs["pixel_size"], attrs.get("pixel_unit"))
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
            pixel = length_with_unit(size, unit)
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
        if length_unit(unit) is not None:
            tags = tif.pages[0].tags
            xres = tags.get("XResolution")
            if xres is not None:
                num, den = xres.value
                if num > 0:
                    meta["file_pixel_size"], meta["file_pixel_unit"] = den / num, unit
                    pixel = length_with_unit(den / num, unit)
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
        if length_unit(units) is None and _h5_attr(scale, "dimension_type") == "SPATIAL" \
                and 1e-9 <= extent <= 1e-3:
            # sidpy copies a channel's units onto its axes (PFM phase axes say "deg"); a
            # spatial axis spanning 1 nm to 1 mm in those numbers can only be in metres.
            meta["pixel_unit_assumed"] = f"m (the axis says {units!r})"
            units = "m"
        return length_with_unit(spacing, units)
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
    return np.asarray(sig["data"]), length_with_unit(x_axis.get("scale"), x_axis.get("units")), meta


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
        return length_unit(axes[-1].get("units")) == length_unit(axes[-2].get("units"))
    return True


def _pixel_from_sidecar(meta: dict, width: int) -> tuple[float, str] | None:
    spatial = meta.get("sidecar", {})
    for key in ("experimental_details", "spatial_info"):
        spatial = spatial.get(key, {}) if isinstance(spatial, dict) else {}
    if not isinstance(spatial, dict):
        return None
    fov = length_with_unit(spatial.get("field_of_view_x"), spatial.get("field_of_view_units"))
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
