"""Tables on disk (CSV or Parquet, by extension) and tables inside ``.npz`` files as
``<table>.<column>`` arrays."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from latentpath.io.writers import atomic_write


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
    with atomic_write(path, overwrite) as tmp:
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> table = pd.DataFrame({"frame": [0, 1], "y": [2.5, 3.0]})
    >>> read_table(write_table(table, folder / "atoms.parquet")).equals(table)
    True
    >>> write_table(table, folder / "atoms.parquet")  # a file is never replaced unasked
    Traceback (most recent call last):
    ...
    FileExistsError: ...atoms.parquet already exists; pass overwrite=True...
    """
    path = Path(path)
    fmt = _table_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parquet":
        return pd.read_parquet(path, engine="pyarrow")
    return pd.read_csv(path)


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
