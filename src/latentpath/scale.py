"""Frame-parallel steps over many movies on a Dask cluster, frames streamed from Zarr.

Atom finding and the bond graph treat each frame on its own, so a movie splits into
tasks of a few frames. Each task reads only its frames from the movie's Zarr store
(:func:`latentpath.io.open_zarr_frames`), finds their atoms and rings, and writes them
to a part file. Memory therefore stays that of one task per worker, however long the
movies. The tasks run on a local cluster of ``workers`` processes, or on any Dask
scheduler (``scheduler="tcp://host:8786"``), whose workers must see the same files.

:func:`atoms_many` writes, for each movie::

    OUT/<movie>/movie.zarr      the movie as a Zarr store (unless it was one already)
    OUT/<movie>/parts/          atoms and rings of each task's frames
    OUT/<movie>/atoms.parquet   frame, y, x, species, score, coordination, n5..n8
    OUT/<movie>/rings.parquet   frame, ring, size, y, x, members (rows of atoms.parquet)

These are the tables :func:`latentpath.atoms.find_atoms` and
:func:`latentpath.pipeline.frame_graphs` give for the whole movie in one process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from latentpath.io import (
    MovieError,
    check_writable,
    load_movie,
    open_zarr_frames,
    read_table,
    save_zarr,
    write_table,
)


def atoms_many(movies: Sequence[str | os.PathLike], out: str | os.PathLike, *,
               scheduler: str | None = None, workers: int = 1, frames_per_task: int = 8,
               pixel_size_A: float | None = None, channel: str | None = None,
               device: str = "cpu", overwrite: bool = False, progress: bool = True
               ) -> pd.DataFrame:
    """Atoms and rings of every frame of many movies, in parallel on a Dask cluster.

    Parameters
    ----------
    movies : sequence of paths
        Movie files (any format :func:`latentpath.io.load_movie` reads) or Zarr stores.
        A file is read whole once, to write it as a Zarr store; a ``.zarr`` store is
        streamed and never read whole.
    out : path
        Folder of the results, one subfolder per movie (named after its file).
    scheduler : str, optional
        Address of a running Dask scheduler; by default a local cluster is started.
    workers : int
        Processes of the local cluster (one thread each).
    frames_per_task : int
        Frames each task reads and analyses.
    pixel_size_A : float, optional
        Angstrom per pixel of every movie; by default from each file, else estimated
        from the lattice of its first frames.
    channel : str, optional
        Channel or dataset inside the files.
    device : str
        Where each task segments ("cpu", "cuda", "auto").
    overwrite : bool
        Replace the results of an earlier call in ``out``.

    Returns
    -------
    DataFrame
        Per movie: ``movie, folder, frames, atoms, rings, pixel_size_A``, and
        ``seconds``, the time of the whole call (all movies together).
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    if not movies:
        raise ValueError("movies is empty: give at least one movie")
    if workers < 1 or frames_per_task < 1:
        raise ValueError(f"workers and frames_per_task must be at least 1, got {workers} "
                         f"and {frames_per_task}")
    out = Path(out)
    folders = _movie_folders([Path(m) for m in movies], out)
    check_writable([folder / "atoms.parquet" for folder in folders.values()],
                   overwrite=overwrite)
    started = time.perf_counter()
    stores = {movie: _zarr_store(movie, folder, channel, overwrite)
              for movie, folder in folders.items()}
    sizes = {movie: _pixel_size(store, pixel_size_A) for movie, store in stores.items()}
    n_frames = {movie: open_zarr_frames(store)[0].shape[0] for movie, store in stores.items()}
    tasks = []
    for movie, n in n_frames.items():
        (folders[movie] / "parts").mkdir(exist_ok=True)
        tasks += [(movie, start, min(start + frames_per_task, n))
                  for start in range(0, n, frames_per_task)]
    # one torch thread per core of a local cluster, shared among its workers
    threads = None if scheduler else max(1, (os.cpu_count() or 1) // workers)
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_atoms_of_frames, str(stores[movie]), start, stop,
                                 sizes[movie], device, threads, str(folders[movie]),
                                 pure=False)
                   for movie, start, stop in tasks]
        for future in tqdm(as_completed(futures), total=len(futures), desc="frame tasks",
                           disable=not progress):
            future.result()  # raises here what failed on a worker
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows = []
    for movie, folder in folders.items():
        starts = sorted(start for m, start, _ in tasks if m == movie)
        atoms, rings = _join_parts(folder, starts)
        write_table(atoms, folder / "atoms.parquet", overwrite=True)
        write_table(rings, folder / "rings.parquet", overwrite=True)
        rows.append({"movie": str(movie), "folder": str(folder),
                     "frames": n_frames[movie], "atoms": len(atoms),
                     "rings": len(rings), "pixel_size_A": sizes[movie]})
    table = pd.DataFrame(rows)
    table["seconds"] = round(time.perf_counter() - started, 2)
    return table


def _movie_folders(movies: list[Path], out: Path) -> dict[Path, Path]:
    """A results folder for each movie, named after its file (made unique)."""
    folders: dict[Path, Path] = {}
    for movie in movies:
        name = movie.name.split(".")[0] or "movie"
        folder, k = out / name, 1
        while folder in folders.values():
            k += 1
            folder = out / f"{name}-{k}"
        folders[movie] = folder
    return folders


def _zarr_store(movie: Path, folder: Path, channel: str | None, overwrite: bool) -> Path:
    """The movie's Zarr store: the movie itself, or a copy written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if movie.suffix.lower() == ".zarr":
        open_zarr_frames(movie, channel)  # fail here, on the client, on a bad store
        return movie
    return save_zarr(load_movie(movie, channel=channel), folder / "movie.zarr",
                     chunk_frames=1, overwrite=overwrite)


def _pixel_size(store: Path, pixel_size_A: float | None) -> float:
    """The movie's pixel size (angstrom): given, from the store, or from its lattice."""
    from latentpath.atoms.find import movie_pixel_size_A
    from latentpath.io import Movie

    frames, attrs = open_zarr_frames(store)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise MovieError(f"{store}: expected frames (T, H, W), got shape {frames.shape}")
    first = Movie(np.asarray(frames[: min(5, frames.shape[0])]),
                  pixel_size=attrs.get("pixel_size"), pixel_unit=attrs.get("pixel_unit"))
    return movie_pixel_size_A(first, pixel_size_A)[0]


def _part(folder: Path, start: int, table: str) -> Path:
    """The part file of ``table`` ("atoms" or "rings") of the task from frame ``start``."""
    return folder / "parts" / f"{table}-{start:07d}.parquet"


def _atoms_of_frames(store: str, start: int, stop: int, pixel_size_A: float, device: str,
                     threads: int | None, folder: str) -> int:
    """One task: atoms and rings of frames ``start:stop`` of a Zarr store, written to
    their parts in ``folder``, frames numbered as in the movie."""
    import torch

    from latentpath.atoms import find_atoms
    from latentpath.pipeline.stem import frame_graphs

    if threads:
        torch.set_num_threads(threads)
    frames = np.asarray(open_zarr_frames(store)[0][start:stop], dtype=np.float32)
    try:
        atoms = find_atoms(frames, pixel_size_A=pixel_size_A, device=device)
    except ValueError as err:  # name the movie and its frames, not the task's
        raise ValueError(f"{store}, frames {start}-{stop - 1} (numbered from {start}): "
                         f"{err}") from None
    atoms, rings = frame_graphs(atoms, pixel_size_A)
    atoms["frame"] += start
    rings["frame"] += start
    write_table(rings.assign(members=[list(m) for m in rings.members]),
                _part(Path(folder), start, "rings"), overwrite=True)
    write_table(atoms, _part(Path(folder), start, "atoms"), overwrite=True)
    return len(atoms)


def _join_parts(folder: Path, starts: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parts of a movie in frame order, ring members renumbered to rows of the
    joined atom table."""
    atoms, rings, offset = [], [], 0
    for start in starts:
        chunk = read_table(_part(folder, start, "atoms"))
        ring_part = read_table(_part(folder, start, "rings"))
        ring_part["members"] = [[int(i) + offset for i in m] for m in ring_part.members]
        atoms.append(chunk)
        rings.append(ring_part)
        offset += len(chunk)
    return pd.concat(atoms, ignore_index=True), pd.concat(rings, ignore_index=True)
