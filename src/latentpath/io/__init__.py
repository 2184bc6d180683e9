"""Reading microscopy movies and writing results without losing user files.

Movies are returned as :class:`Movie` (:mod:`.movie`): a float32 array of shape (T, H, W)
plus the size of one pixel and whatever metadata the file carried, read by
:func:`load_movie` (:mod:`.readers`) from NumPy, TIFF, HDF5, Zarr, DigitalMicrograph and
EMD files, with pixel sizes in the unit that suits their scale (:mod:`.units`).

Every writer (:mod:`.writers`: :func:`save_npz`, :func:`save_npy`, :func:`write_json`,
:func:`write_text`; :mod:`.tables`: :func:`write_table`) refuses to replace an existing
file unless asked to, and writes to a temporary file in the target directory that is
renamed into place only once complete, so an interrupted run never leaves a half-written
result or a damaged earlier one.
"""

from latentpath.io.movie import MIN_FRAME_SIZE, NAN_POLICIES, Movie, MovieError, validate_movie
from latentpath.io.readers import load_movie, open_zarr_frames, save_zarr
from latentpath.io.tables import read_table, tables_from_arrays, tables_to_arrays, write_table
from latentpath.io.writers import (
    check_not_input,
    check_writable,
    save_npy,
    save_npz,
    write_json,
    write_text,
)

__all__ = [
    "MIN_FRAME_SIZE",
    "NAN_POLICIES",
    "Movie",
    "MovieError",
    "check_not_input",
    "check_writable",
    "load_movie",
    "open_zarr_frames",
    "read_table",
    "save_npy",
    "save_npz",
    "save_zarr",
    "tables_from_arrays",
    "tables_to_arrays",
    "validate_movie",
    "write_json",
    "write_table",
    "write_text",
]
