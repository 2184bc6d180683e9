"""Frame-parallel steps over many movies on a Dask cluster, frames streamed from Zarr.

Atom finding, the bond graph, windows and their encoding treat each frame on its own,
so a movie splits into tasks of a few frames. Each task reads only its frames from the
movie's Zarr store (:func:`latentpath.io.open_zarr_frames`), finds their atoms and
rings, and, given a trained STEM run, cuts a window around every atom and every ring
and encodes it with the run's skip-rVAEs. Its results go to part files. Memory
therefore stays that of one task per worker, however long the movies. The tasks run
on a local cluster of ``workers`` processes, or on any Dask scheduler
(``scheduler="tcp://host:8786"``), whose workers must see the same files.

:func:`atoms_many` writes, for each movie::

    OUT/<movie>/movie.zarr      the movie as a Zarr store (unless it was one already)
    OUT/<movie>/parts/          each task's tables
    OUT/<movie>/atoms.parquet   frame, y, x, species, score, coordination, n5..n8
    OUT/<movie>/rings.parquet   frame, ring, size, y, x, members (rows of atoms.parquet)
    OUT/<movie>/quality.parquet the atom finder's measures of each frame
        (:func:`latentpath.atoms.quality.frame_quality`)
    OUT/<movie>/doubts.json     what the atom finder doubted (the image outside the
        model's domain, a pixel size the lattice disagrees with, ...), each sentence
        named with its frames, and the frames unlike the rest of the movie
    OUT/<movie>/latents_atom.parquet, latents_hollow.parquet   (with a run) every
        window's frame, y, x, its atom or ring row, latents and the run's map class

These are the tables the one-process functions give for the whole movie. The doubts are
also warned, with the movie's name. Each task is
stamped when its parts are written (:mod:`latentpath.pipeline.steps`), so a call
killed part way resumes: the next call into ``OUT`` runs only the missing tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from latentpath import rundir
from latentpath.atoms.quality import unusual_frames, unusual_warning
from latentpath.io import (
    Movie,
    MovieError,
    load_movie,
    open_zarr_frames,
    read_table,
    save_zarr,
    write_json,
    write_table,
)
from latentpath.modelfiles import WEIGHTS
from latentpath.pipeline.common import own_warnings
from latentpath.pipeline.steps import RunSteps, StepOutput, content_key, movie_content_key

if TYPE_CHECKING:
    from latentpath.pipeline import StemRun

#: the window kinds a run's models encode: the table each kind is centred on, and the
#: latents' column that names the row of that table
KIND_CENTRES = {"atom": ("atoms", "atom"), "hollow": ("rings", "ring")}
#: the tables every frame task writes a part of (with a run, also its latents)
TASK_TABLES = ("atoms", "rings", "quality")
#: a movie's doubts, in its folder
DOUBTS = "doubts.json"
#: doubts a call warns of per movie (the rest are in its doubts file)
DOUBTS_WARNED = 3


def atoms_many(movies: Sequence[str | os.PathLike], out: str | os.PathLike, *,
               run: StemRun | str | os.PathLike | None = None, scheduler: str | None = None,
               workers: int = 1, frames_per_task: int = 8, pixel_size_A: float | None = None,
               channel: str | None = None, device: str = "cpu", overwrite: bool = False,
               resume: bool = True, progress: bool = True) -> pd.DataFrame:
    """Atoms and rings of every frame of many movies, and with ``run`` the latents of a
    window around every atom and ring, in parallel on a Dask cluster.

    Parameters
    ----------
    movies : sequence of paths
        Movie files (any format :func:`latentpath.io.load_movie` reads) or Zarr stores.
        A file is read whole once, to write it as a Zarr store; a ``.zarr`` store is
        streamed and never read whole.
    out : path
        Folder of the results, one subfolder per movie (named after its file).
    run : StemRun or path, optional
        A finished STEM run (:func:`latentpath.pipeline.run_stem`, or its directory)
        whose skip-rVAEs encode the windows: they are cut as the run cut its own
        (window size, source image, taper) and labelled with its chemical-space maps.
        Its self-trained segmentation model, if it has one, also finds the atoms.
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
        Where each task segments and encodes ("cpu", "cuda", "auto").
    overwrite : bool
        Replace the results of a different earlier call in ``out`` (other settings, run
        or movie content); tasks the two share are still reused.
    resume : bool
        Reuse the tasks an earlier call with the same inputs finished (False: run all).

    Returns
    -------
    DataFrame
        Per movie: ``movie, folder, frames, atoms, rings`` (with a run also
        ``windows_atom, windows_hollow``), ``pixel_size_A``, ``doubts`` (the number of
        sentences in its doubts file, each also warned of, up to
        :data:`DOUBTS_WARNED`), ``tasks_reused``, and ``seconds``, the time of the
        whole call (all movies together).
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    if not movies:
        raise ValueError("movies is empty: give at least one movie")
    if workers < 1 or frames_per_task < 1:
        raise ValueError(f"workers and frames_per_task must be at least 1, got {workers} "
                         f"and {frames_per_task}")
    started = time.perf_counter()
    # the tasks read the run's models from its directory, whichever way it was given
    run = getattr(run, "out", run)
    run_key = None if run is None else _run_key(Path(run))
    run = None if run is None else str(Path(run).resolve())
    folders = _movie_folders([Path(m) for m in movies], Path(out))
    # each movie folder's claim settles (or, after a failure, stays for a resume)
    with contextlib.ExitStack() as held:
        movies_steps, tasks, todo = {}, {}, []
        for movie, folder in folders.items():
            steps, store, n_frames, px = _open_movie(movie, folder, run_key, pixel_size_A,
                                                     channel, overwrite, resume)
            held.enter_context(steps)
            movies_steps[movie] = steps, n_frames, px
            (folder / "parts").mkdir(exist_ok=True)
            for start in range(0, n_frames, frames_per_task):
                stop = min(start + frames_per_task, n_frames)
                name = f"frames {start:07d}-{stop - 1:07d}"
                key = content_key(name, steps.values("movie")["movie_key"], px, run_key,
                                  TASK_TABLES)
                tasks[movie, start] = name, key, (*store, start, stop, px)
                if not steps.reusable(name, key):
                    steps.begin(name, key)
                    todo.append((movie, start))
        # one torch thread per core of a local cluster, shared among its workers
        threads = None if scheduler else max(1, (os.cpu_count() or 1) // workers)
        if todo:
            if scheduler:
                client, cluster = Client(scheduler), None
            else:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                client = Client(cluster)
            try:
                futures = {client.submit(_frames_task, *tasks[task][2], run, device, threads,
                                         str(folders[task[0]]), pure=False): task
                           for task in todo}
                for future in tqdm(as_completed(futures), total=len(futures),
                                   desc="frame tasks", disable=not progress):
                    # raises here what failed on a worker
                    seconds, files, doubts = future.result()
                    movie, start = futures[future]
                    name, key, _ = tasks[movie, start]
                    movies_steps[movie][0].finish(name, key, [Path(f) for f in files],
                                                  seconds=seconds, values={"doubts": doubts})
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        rows = []
        for movie, folder in folders.items():
            steps, n_frames, px = movies_steps[movie]
            starts = sorted(start for m, start in tasks if m == movie)
            rows_of = _join(steps, folder, [tasks[movie, start][1] for start in starts], starts,
                            run is not None)
            row = {"movie": str(movie), "folder": str(folder), "frames": n_frames,
                   "atoms": rows_of["atoms"], "rings": rows_of["rings"]}
            row.update({f"windows_{kind}": rows_of[f"latents_{kind}"]
                        for kind in KIND_CENTRES if f"latents_{kind}" in rows_of})
            row["pixel_size_A"] = px
            row["doubts"] = len(_movie_doubts(movie, steps, folder, [
                (start, min(start + frames_per_task, n_frames), tasks[movie, start][0])
                for start in starts]))
            row["tasks_reused"] = sum(name.startswith("frames ") for name in steps.reused)
            rows.append(row)
        table = pd.DataFrame(rows)
        table["seconds"] = round(time.perf_counter() - started, 2)
        return table


def _movie_doubts(movie: Path, steps: RunSteps, folder: Path,
                  frame_tasks: list[tuple[int, int, str]]) -> list[str]:
    """What was doubted in a movie: its pixel size (step "movie"), each frame task's
    doubts named with its frames ``(start, stop, step name)``, then the frames unlike
    the rest of the whole movie. Written to its doubts file and warned of."""
    doubts = list(steps.values("movie").get("doubts", []))
    doubts += [f"frames {start}-{stop - 1}: {doubt}" for start, stop, name in frame_tasks
               for doubt in steps.values(name).get("doubts", [])]
    unusual = unusual_frames(read_table(_joined(folder, "quality")))
    if unusual:
        doubts.append(unusual_warning(unusual))
    write_json(doubts, folder / DOUBTS, overwrite=True)
    for doubt in doubts[:DOUBTS_WARNED]:
        warnings.warn(f"{movie.name}: {doubt}", stacklevel=3)
    if len(doubts) > DOUBTS_WARNED:
        warnings.warn(f"{movie.name}: {len(doubts) - DOUBTS_WARNED} more doubt(s) in "
                      f"{folder / DOUBTS}", stacklevel=3)
    return doubts


def _run_key(run: Path) -> str:
    """A hash of what the windows' latents depend on in a STEM run: its settings, the
    skip-rVAEs' weights, the maps and the segmentation model it trained, if any."""
    record = rundir.read_run_record(run)
    if record.get("pipeline") != "stem":
        raise ValueError(f"{run} is a {record.get('pipeline')!r} run; windows are encoded "
                         "with the models of a STEM run")
    files = [run / kind / name for kind in KIND_CENTRES
             for name in (f"{rundir.MODEL}/weights.safetensors", rundir.MAPS)]
    missing = [str(f.relative_to(run)) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{run} is not a finished STEM run: missing {', '.join(missing)}")
    segmenter = run / rundir.SEGMENTER / WEIGHTS
    files += [segmenter] if segmenter.is_file() else []
    return content_key(record["config"],
                       *(np.frombuffer(f.read_bytes(), np.uint8) for f in files))


def _open_movie(movie: Path, folder: Path, run_key: str | None, pixel_size_A: float | None,
                channel: str | None, overwrite: bool, resume: bool
                ) -> tuple[RunSteps, tuple[str, str | None], int, float]:
    """Claim the movie's folder, write the movie's Zarr store if it has none, and fix
    its pixel size (step "movie"). Returns the folder's steps, the store and the array
    in it, the number of frames and angstrom per pixel."""
    from latentpath import __version__

    zarr_input = movie.suffix.lower() == ".zarr"
    if zarr_input:
        frames = open_zarr_frames(movie, channel)[0]  # fails here on a bad store
        movie_key = _store_key(movie, frames)
        data = None
    else:
        data = load_movie(movie, channel=channel)
        movie_key = movie_content_key(data)
    identity = {"pipeline": "atoms-many", "version": __version__, "movie_key": movie_key,
                "truth": None, "config": {"pixel_size_A": pixel_size_A, "channel": channel,
                                          "run": run_key}}
    tables = [*TASK_TABLES, *(f"latents_{kind}" for kind in KIND_CENTRES)]
    steps = RunSteps.open(folder, identity,
                          outputs=[_joined(folder, name) for name in tables]
                          + [folder / DOUBTS],
                          folders=[folder / "movie.zarr", folder / "parts"],
                          inputs={"the movie": movie}, overwrite=overwrite, resume=resume,
                          progress=False)
    store, array = (movie, channel) if zarr_input else (folder / "movie.zarr", None)

    def store_movie() -> StepOutput:
        if data is not None:
            save_zarr(data, store, chunk_frames=1, overwrite=True)
        frames = open_zarr_frames(store, array)[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pixel_A = _pixel_size(store, array, pixel_size_A)
        return StepOutput([] if zarr_input else [store],
                          values={"movie_key": movie_key, "frames": int(frames.shape[0]),
                                  "pixel_size_A": pixel_A,
                                  "doubts": list(dict.fromkeys(own_warnings(caught)))})

    steps.run("movie", content_key("movie", movie_key, pixel_size_A), store_movie)
    values = steps.values("movie")
    return steps, (str(store), array), values["frames"], values["pixel_size_A"]


def _store_key(store: Path, frames) -> str:
    """A Zarr store's identity without reading it: where it is, its shape and type,
    and the names, sizes and times of its files."""
    files = sorted(p for p in store.rglob("*") if p.is_file())
    return content_key(str(store.resolve()), list(frames.shape), str(frames.dtype),
                       [(str(p.relative_to(store)), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in files])


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


def _pixel_size(store: Path, array: str | None, pixel_size_A: float | None) -> float:
    """The movie's pixel size (angstrom): given, from the store, or from its lattice."""
    from latentpath.atoms.find import movie_pixel_size

    frames, attrs = open_zarr_frames(store, array)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise MovieError(f"{store}: expected frames (T, H, W), got shape {frames.shape}")
    first = Movie(np.asarray(frames[: min(5, frames.shape[0])]),
                  pixel_size=attrs.get("pixel_size"), pixel_unit=attrs.get("pixel_unit"))
    return movie_pixel_size(first, pixel_size_A).pixel_size_A


def _joined(folder: Path, table: str) -> Path:
    """A movie's joined ``table``."""
    return folder / f"{table}.parquet"


def _part(folder: Path, start: int, table: str) -> Path:
    """The part file of ``table`` (atoms, rings, latents_atom, ...) of the task from frame
    ``start``."""
    return folder / "parts" / f"{table}-{start:07d}.parquet"


def _frames_task(store: str, array: str | None, start: int, stop: int, pixel_size_A: float,
                 run: str | None, device: str, threads: int | None, folder: str
                 ) -> tuple[float, list[str], list[str]]:
    """One task: atoms, rings and quality measures of frames ``start:stop`` of a Zarr
    store's ``array`` (None: ``movie``), and with a ``run`` the latents of their
    windows, written to their parts in ``folder`` with frames numbered as in the movie.
    Returns its seconds, the files it wrote and the atom finder's warnings (but that of
    the frames unlike the rest, which only the whole movie can say)."""
    import torch

    from latentpath.atoms import find_atoms, load_model
    from latentpath.pipeline.stem import frame_graphs

    began = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    frames = np.asarray(open_zarr_frames(store, array)[0][start:stop], dtype=np.float32)
    segmenter = None if run is None else Path(run) / rundir.SEGMENTER
    model = load_model(segmenter if segmenter and segmenter.is_dir() else None,
                       device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            atoms, probs = find_atoms(frames, pixel_size_A=pixel_size_A, model=model,
                                      device=device, return_probabilities=True)
        except ValueError as err:  # name the movie and its frames, not the task's
            raise ValueError(f"{store}, frames {start}-{stop - 1} (numbered from {start}): "
                             f"{err}") from None
    # which frames are unlike the rest is judged on the whole movie, once it is joined
    unlike = unusual_warning(atoms.attrs["unusual_frames"])
    doubts = [doubt for doubt in dict.fromkeys(own_warnings(caught)) if doubt != unlike]
    # measures a frame without atoms lacks are None in the attrs' lists: NaN here
    quality = pd.DataFrame(atoms.attrs["quality"])
    quality = quality.astype({c: float for c in quality if quality[c].dtype == object})
    atoms, rings = frame_graphs(atoms, pixel_size_A)
    tables = {"atoms": atoms, "rings": rings.assign(members=[list(m) for m in rings.members]),
              "quality": quality}
    if run is not None:
        map_pixel_A = pixel_size_A * frames.shape[2] / probs.shape[3]
        tables.update(_encode_frames(Path(run), frames, pixel_size_A, 1.0 - probs[:, 0],
                                     map_pixel_A, atoms, rings, device))
    files = []
    for name, table in tables.items():
        table["frame"] += start
        files.append(str(write_table(table, _part(Path(folder), start, name),
                                     overwrite=True)))
    return time.perf_counter() - began, files, doubts


def _encode_frames(run: Path, frames: np.ndarray, pixel_size_A: float,
                   probability: np.ndarray, map_pixel_A: float, atoms: pd.DataFrame,
                   rings: pd.DataFrame, device: str) -> dict[str, pd.DataFrame]:
    """``latents_<kind>``: a window around every atom and ring, cut as the STEM ``run``
    cut its own, encoded with its skip-rVAE and labelled by its chemical-space map."""
    from latentpath.latent import ChemicalSpaceMap, labels_at
    from latentpath.pipeline.stem import (
        StemConfig,
        cut_kind_windows,
        window_images,
        window_points,
    )
    from latentpath.rvae import encode, load_rvae

    # every atom and ring, not the run's sample of them
    config = dataclasses.replace(StemConfig.from_dict(rundir.read_run_record(run)["config"]),
                                 atoms_per_frame=None, hollow_per_frame=None)
    source, source_px_A = window_images(Movie(frames), probability, map_pixel_A,
                                        pixel_size_A, config)
    tables = {}
    for kind in KIND_CENTRES:
        points = window_points(atoms, rings, kind, config)
        windows, table = cut_kind_windows(source, source_px_A, frames.shape, points, config,
                                          None)
        latents = encode(load_rvae(run / kind / rundir.MODEL, device=device), windows,
                         table=table)
        with np.load(run / kind / rundir.MAPS) as data:
            space = ChemicalSpaceMap.from_arrays(data)
        tables[f"latents_{kind}"] = latents.join(labels_at(space, latents).add_prefix("map_"))
    return tables


def _join(steps: RunSteps, folder: Path, task_keys: list[str], starts: list[int],
          encoded: bool) -> dict[str, int]:
    """Join the movie's tables from the parts of its tasks (step "join"): frames in
    order, ring members and the windows' atom and ring rows renumbered to rows of the
    joined tables. Part files of other tasks (an earlier ``frames_per_task``) go.
    Returns the rows of each table."""
    names = [*TASK_TABLES] + [f"latents_{kind}" for kind in KIND_CENTRES if encoded]
    key = content_key("join", *task_keys)
    if not steps.reusable("join", key):
        steps.begin("join", key)
        parts: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
        offsets = {"atoms": 0, "rings": 0}
        for start in starts:
            chunk = {name: read_table(_part(folder, start, name)) for name in names}
            chunk["rings"]["members"] = [[int(i) + offsets["atoms"] for i in m]
                                         for m in chunk["rings"].members]
            if encoded:
                for kind, (centres, column) in KIND_CENTRES.items():
                    chunk[f"latents_{kind}"][column] += offsets[centres]
            for name in names:
                parts[name].append(chunk[name])
            offsets = {name: offsets[name] + len(chunk[name]) for name in offsets}
        for name in names:
            write_table(pd.concat(parts[name], ignore_index=True), _joined(folder, name),
                        overwrite=True)
        steps.finish("join", key, [_joined(folder, name) for name in names],
                     values={name: sum(map(len, parts[name])) for name in names})
        kept = {_part(folder, start, name) for start in starts for name in names}
        for stale in set((folder / "parts").glob("*.parquet")) - kept:
            stale.unlink()
    return steps.values("join")
