"""Writing results without losing user files: every writer refuses to replace an existing
file unless asked to, and writes to a temporary file in the target directory that is
renamed into place only once complete, so an interrupted run never leaves a half-written
result or a damaged earlier one. :func:`check_writable` and :func:`check_not_input` check
a command's outputs before it starts."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


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
    with atomic_write(path, overwrite) as tmp, open(tmp, "wb") as f:
        # A file object, unlike a name, stops numpy from appending ".npz" to the temp name.
        save(f, **members)
    return path


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
    # Serialise before touching the disk so an unserialisable object leaves no trace.
    return write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path,
                      overwrite=overwrite)


def write_text(text: str, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write text (UTF-8) atomically: the file is either absent, the old one, or whole.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False; the file is left untouched.
    """
    path = Path(path)
    with atomic_write(path, overwrite) as tmp:
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
    with atomic_write(path, overwrite) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array))
    return path


@contextmanager
def atomic_write(path: Path, overwrite: bool) -> Iterator[Path]:
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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
