"""The PFM pipeline, step by step, into a run directory.

phase movie (+ amplitude) -> polarisation signal -> drift (amplitude against the first
frame) -> frames aligned on the first -> Canny walls -> walls as ordered curves with
their curvature -> windows centred on sampled wall pixels, the same place at frames t
and t + d -> skip-rVAE -> latents, manifold, maps of switching degree, wall count and
curvature over the latent plane -> the longest-lived wall through the movie -> figures.

:func:`run_pfm` writes::

    RUN/config.json            the settings, the movie and the library version
    RUN/drift.csv              frame, dy, dx (pixels), error
    RUN/walls.parquet          frame, wall, order, y, x, closed, curvature (1/px), aligned
    RUN/frames.csv             per frame: switched share, wall pixels, walls
    RUN/signal.npy             (T, H, W) float32: the polarisation signal, aligned
    RUN/wall_mask.npz          walls, valid: (T, H, W) wall pixels and pixels inside
                               every frame after alignment
    RUN/walls/windows.npy      (N, 2, s, s) windows (frames t, t + d) or (N, s, s)
    RUN/walls/windows.parquet  frame, y, x of each window's wall pixel (aligned pixels)
    RUN/walls/model/           the skip-rVAE
    RUN/walls/latents.parquet  window table + latents + the window's own switching,
                               walls, curvature + the maps' values at its latent point
    RUN/walls/maps.npz         manifold and the physics maps over (z1, z2)
    RUN/wall_history.csv       the longest-lived wall: per frame its length and its
                               curvature's mean and dispersion
    RUN/wall_latents.parquet   that wall's pixels with the latents of their windows
    RUN/figures/*.png
    RUN/report.html            the page to read and explore the run
    RUN/.latentpath/           the run's identity and its finished steps, for resuming
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from latentpath import __version__, rundir
from latentpath.io import (
    Movie,
    load_movie,
    read_table,
    save_npy,
    save_npz,
    write_table,
)
from latentpath.latent import latent_grid, manifold, nearest_index
from latentpath.pfm import (
    align_frames,
    find_walls,
    follow_wall,
    level_set_curvature,
    normalize_phase,
    register_frames,
    registration_doubts,
    wall_curves,
    wall_points,
    window_physics,
)
from latentpath.pipeline.common import (
    MODEL_SETTINGS,
    RVAE_SIZES,
    ModelJob,
    RunSettings,
    check_enough_windows,
    check_sizes,
    model_steps,
    read_run,
    write_run_record,
)
from latentpath.pipeline.steps import (
    RunSteps,
    StepOutput,
    content_key,
    movie_content_key,
    recorded_identity,
    run_identity,
    step_key,
)
from latentpath.windows import cut_windows, sample_points

#: channel names tried, in order, when none is given: the synthetic movies' names, then
#: those of Asylum Research scans exported through pyNSID
PHASE_CHANNELS = (None, "phase", "PhaseRetrace", "Phase")
AMPLITUDE_CHANNELS = ("amplitude", "AmplitudeRetrace", "Amplitude")
PHYSICS = ("switching", "walls", "curvature")

#: PFM runs train to convergence too: until the validation loss has not improved for 10
#: epochs, at most 700 steps on a CPU, then a cool-down. On four 50-frame movies (tip and
#: field switching, two seeds) the latent maps read as well after 700 steps as after the
#: 1,400 of 40 epochs, in about half the model's time (docs/pfm.md).
PFM_RVAE_SIZES = {"cpu": {**RVAE_SIZES["cpu"], "epochs": 1000, "max_steps": 700,
                          "patience": 10},
                  "cuda": {**RVAE_SIZES["cuda"], "patience": 10}}


@dataclass
class PfmConfig(RunSettings):
    """Settings of a PFM run. Lengths in pixels of the movie.

    Attributes
    ----------
    phase_channel, amplitude_channel : str, optional
        Channels inside the movie file(s); by default the first of
        :data:`PHASE_CHANNELS` and :data:`AMPLITUDE_CHANNELS` that the file has. Without
        an amplitude the drift comes from the phase, frame to frame (less exact).
    median_px, canny_sigma_px, min_wall_px
        Wall finding (:func:`latentpath.pfm.find_walls`).
    window_px : int
        Side of the windows, pixels of the movie (the method's 40).
    window_samples : int
        Samples per window side (the windows are resampled to it): walls are smooth on
        the window's scale, and the rVAE's cost grows with the samples.
    walls_per_frame : int, optional
        Wall pixels drawn per frame to centre windows on (the method's 80; None: all).
    delay : int
        Frames between the two images of a window (0: one image, the same time). The
        window's switching degree is then the change D(t + d) - D(t), which follows the
        wall's motion.
    curvature_sigma_px : float
        Smoothing of the curvature along the walls (:func:`level_set_curvature`).
    switching_sigma_px, static_px : float
        The switching degree weighs the areas about the window's centre with a Gaussian
        of this width (None: evenly, as the method), and counts changes smaller than a
        wall moving ``static_px`` through the centre as a static wall
        (:func:`latentpath.pfm.window_physics`).
    map_points, manifold_points : int
        Grid points per axis of the physics maps and of the manifold figure.
    latent_dim, hidden, layers, epochs, patience, max_steps, min_steps, time_budget_s,
    cooldown, batch_size, lr, kl_weight, precision, compile, device, seed
        The skip-rVAE, its training, device and seed
        (:class:`~latentpath.pipeline.common.RunSettings`). Unless set, training stops
        when the validation loss has not improved for 10 epochs, at most 700 steps on a
        CPU (:data:`PFM_RVAE_SIZES`), and either stop begins a cool-down of 30 % of the
        training (``cooldown``), the learning rate falling to zero.
    """

    phase_channel: str | None = None
    amplitude_channel: str | None = None
    median_px: int = 3
    canny_sigma_px: float = 1.5
    min_wall_px: int = 12
    window_px: int = 40
    window_samples: int = 20
    walls_per_frame: int | None = 80
    delay: int = 2
    curvature_sigma_px: float = 2.0
    switching_sigma_px: float | None = 6.0
    static_px: float = 0.4
    map_points: int = 40
    manifold_points: int = 10
    cooldown: float = 0.3
    label: ClassVar[str] = "PFM"
    rvae_sizes: ClassVar[dict] = PFM_RVAE_SIZES

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(self, {"window_px": (8, 1024), "window_samples": (8, 256),
                           "walls_per_frame": (1, 100_000), "map_points": (2, 2000),
                           "manifold_points": (2, 64), "median_px": (1, 255),
                           "min_wall_px": (1, 10**6)})
        if self.window_samples < 8 or self.window_samples > self.window_px:
            raise ValueError(f"window_samples must lie in [8, window_px={self.window_px}], "
                             f"got {self.window_samples}")
        if self.delay < 0:
            raise ValueError(f"delay must be 0 or more frames, got {self.delay}")
        if not self.canny_sigma_px > 0 or not self.curvature_sigma_px > 0:
            raise ValueError("canny_sigma_px and curvature_sigma_px must be positive")
        if self.switching_sigma_px is not None and not self.switching_sigma_px > 0:
            raise ValueError(f"switching_sigma_px must be positive or None, got "
                             f"{self.switching_sigma_px}")
        if not self.static_px >= 0:
            raise ValueError(f"static_px must be 0 or more, got {self.static_px}")

    @property
    def step_px(self) -> float:
        """Movie pixels per window sample."""
        return self.window_px / self.window_samples

    def physics(self, windows: np.ndarray) -> pd.DataFrame:
        """:func:`latentpath.pfm.window_physics` of windows cut with these settings."""
        return window_physics(windows, step_px=self.step_px,
                              switching_sigma_px=self.switching_sigma_px,
                              static_px=self.static_px)


def load_pfm(path: str | Path | list, config: PfmConfig) -> tuple[Movie, np.ndarray | None]:
    """The phase movie (degrees) and, when the file has one, the amplitude.

    Raises
    ------
    ValueError
        No phase channel (naming the channels tried), or an amplitude whose shape
        differs from the phase's.
    """
    tried = [config.phase_channel] if config.phase_channel else list(PHASE_CHANNELS)
    errors: dict[str, str] = {}
    for channel in tried:
        try:
            phase = load_movie(path, channel=channel)
            break
        except (ValueError, KeyError) as err:
            errors[channel or "default"] = str(err).splitlines()[0]
    else:
        # a file of one array (npy, tif) refuses every named channel: what went wrong
        # with its one array is the trouble, not a missing channel
        problems = {p for p in errors.values() if "cannot be used with them" not in p}
        if len(problems) == 1 and "channel" not in next(iter(problems)):
            raise ValueError(next(iter(problems)))
        shown = "; ".join(f"{channel}: {problem}" for channel, problem in errors.items())
        raise ValueError(f"{path}: no phase channel found ({shown}); name it with "
                         f"phase_channel (--phase-channel)")
    amplitude = None
    for channel in ([config.amplitude_channel] if config.amplitude_channel
                    else AMPLITUDE_CHANNELS):
        try:
            amplitude = load_movie(path, channel=channel).data
            break
        except (ValueError, KeyError):
            if config.amplitude_channel:
                raise
    if amplitude is not None and amplitude.shape != phase.data.shape:
        raise ValueError(f"amplitude has shape {amplitude.shape}, phase {phase.data.shape}")
    return phase, amplitude


#: a drift registered on the phase alone beyond this many pixels is worth a warning
PHASE_DRIFT_WARN_PX = 2.0


def signal_and_drift(phase_deg: np.ndarray, amplitude: np.ndarray | None, *,
                     reference: str = "pairs") -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The polarisation signal aligned on the first frame, its valid pixels and the
    drift (of the amplitude, registered by ``reference``: see
    :func:`latentpath.pfm.register_frames`; without it, of the signal frame to frame).

    Whatever puts the drift in doubt (:func:`latentpath.pfm.registration_doubts`, and a
    drift registered on the phase alone) is warned of and listed, one sentence each, in
    the drift table's ``attrs["doubts"]``."""
    signal = normalize_phase(phase_deg)
    if signal.ndim == 2:
        signal = signal[None]
    doubts: list[str] = []
    if len(signal) < 2:
        drift = pd.DataFrame({"frame": [0], "dy": [0.0], "dx": [0.0], "error": [0.0]})
    else:
        source = signal if amplitude is None else amplitude
        drift = register_frames(source, reference="previous" if amplitude is None
                                else reference)
        doubts = registration_doubts(source, drift)
        reach = float(np.hypot(drift.dy, drift.dx).max())
        if amplitude is None and reach > PHASE_DRIFT_WARN_PX:
            doubts.append(f"the drift ({reach:.1f} px at most) was registered on the phase "
                          "alone, whose moving walls pull it (3-27 px off on synthetic "
                          "movies); give the amplitude channel if the file has one")
        doubts = [f"registration: {doubt}" for doubt in doubts]
        for doubt in doubts:
            warnings.warn(doubt, stacklevel=2)
    aligned, valid = align_frames(signal, drift)
    drift.attrs["doubts"] = doubts
    return aligned, valid, drift


def walls_and_curves(aligned: np.ndarray, valid: np.ndarray, config: PfmConfig
                     ) -> tuple[np.ndarray, pd.DataFrame]:
    """Wall pixels of every frame and the walls as curves with their curvature (1/px)."""
    walls = find_walls(aligned, sigma_px=config.canny_sigma_px, median_px=config.median_px,
                       min_length_px=config.min_wall_px) & valid
    curves = wall_curves(walls, min_length_px=config.min_wall_px)
    kappa = level_set_curvature(aligned, sigma_px=config.curvature_sigma_px)
    index = (curves.frame.to_numpy(), curves.y.to_numpy(int), curves.x.to_numpy(int))
    curves["curvature"] = kappa[index].astype(np.float64)
    return walls, curves


def wall_centres(walls: np.ndarray, valid: np.ndarray, config: PfmConfig
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every wall pixel a window fits around (with its frame t + delay), and the seeded
    sample of ``walls_per_frame`` of them per frame that the windows are centred on."""
    margin = int(np.ceil(config.window_px / 2)) + 1
    candidates = wall_points(walls, delay=config.delay, valid=valid, margin_px=margin)
    return candidates, sample_points(candidates, config.walls_per_frame, seed=config.seed)


def cut_wall_windows(aligned: np.ndarray, points: pd.DataFrame, config: PfmConfig
                     ) -> tuple[np.ndarray, pd.DataFrame]:
    """Windows centred on wall pixels: (N, s, s), or (N, 2, s, s) with frame t + delay."""
    first, table = cut_windows(aligned, points, config.window_samples, step_px=config.step_px)
    if config.delay == 0:
        return first, table
    later, _ = cut_windows(aligned, table[["frame", "y", "x"]].assign(
        frame=table.frame + config.delay), config.window_samples, step_px=config.step_px)
    return np.stack([first, later], axis=1), table


def physics_at(maps: dict, latents: pd.DataFrame) -> pd.DataFrame:
    """The physics maps' values at each window's encoded ``(z1, z2)`` (nearest point)."""
    j = nearest_index(maps["z1"], latents["z1"].to_numpy(np.float64))
    i = nearest_index(maps["z2"], latents["z2"].to_numpy(np.float64))
    return pd.DataFrame({f"map_{name}": maps[name][i, j] for name in PHYSICS},
                        index=latents.index)


def wall_history(curves: pd.DataFrame, chain: pd.DataFrame) -> pd.DataFrame:
    """Per frame of a followed wall: its length and its curvature's mean and dispersion."""
    pixels = curves.merge(chain, on=["frame", "wall"])
    history = pixels.groupby("frame").agg(wall=("wall", "first"), length_px=("x", "size"),
                                          curvature_mean=("curvature", "mean"),
                                          curvature_std=("curvature", "std"))
    return history.reset_index()


#: the tables of a run, by the names :class:`PfmRun` gives them, and their files
RUN_TABLES = {"drift": rundir.DRIFT, "curves": rundir.WALL_CURVES, "frames": rundir.FRAMES,
              "latents": f"{rundir.WALLS}/{rundir.LATENTS}",
              "wall_history": rundir.WALL_HISTORY, "wall_latents": rundir.WALL_LATENTS}

#: the settings each step's results depend on (besides the steps it reads); the speed
#: settings (steps.SPEED_SETTINGS) change only how fast they come
STEP_SETTINGS = {
    "walls": ("phase_channel", "amplitude_channel", "median_px", "canny_sigma_px",
              "min_wall_px", "curvature_sigma_px"),
    "windows": ("window_px", "window_samples", "walls_per_frame", "delay", "seed"),
    "model": MODEL_SETTINGS,
    "maps": ("switching_sigma_px", "static_px", "map_points", "manifold_points"),
}


@dataclass(frozen=True)
class PfmRun:
    """A PFM run: what :func:`run_pfm` returns, and :meth:`read` reads back from its
    directory, in the same shape.

    Attributes
    ----------
    out : Path
        The run directory.
    settings : PfmConfig
        The settings it ran with, the skip-rVAE's size filled in for its device.
    movie : str or list of str
        The movie's path, or the paths of its files in order.
    truth : str or None
        The synthetic truth's path.
    signal : ndarray (T, H, W), float32
        The polarisation signal (switched +1), aligned on the first frame.
    valid, walls : ndarray (T, H, W), bool
        The pixels inside every frame after alignment; the found wall pixels.
    drift, curves, frames, latents, wall_history, wall_latents : DataFrame
        The tables of :data:`RUN_TABLES` (the module's docstring gives their columns).
    maps : dict of str to ndarray
        ``z1`` (m,), ``z2`` (n,) and each of :data:`PHYSICS` over them, (n, m).
    manifold : tuple of ndarray
        ``(z1, z2, images)``: the manifold figure's grid and its decoded windows.
    warnings : list of str
        What the run doubted (the drift's registration).
    timings_s : dict of str to float
        Seconds each step took when it was computed.
    reused : tuple of str
        Steps :func:`run_pfm` took from an earlier run into ``out`` (() when read).
    total_s : float or None
        Seconds the :func:`run_pfm` call took (None when read).
    """

    out: Path
    settings: PfmConfig
    movie: str | list[str]
    truth: str | None
    signal: np.ndarray
    valid: np.ndarray
    walls: np.ndarray
    drift: pd.DataFrame
    curves: pd.DataFrame
    frames: pd.DataFrame
    latents: pd.DataFrame
    wall_history: pd.DataFrame
    wall_latents: pd.DataFrame
    maps: dict[str, np.ndarray]
    manifold: tuple[np.ndarray, np.ndarray, np.ndarray]
    warnings: list[str]
    timings_s: dict[str, float]
    reused: tuple[str, ...] = ()
    total_s: float | None = None

    @property
    def report(self) -> Path:
        """The run's page (``report.html``)."""
        return self.out / rundir.REPORT

    @classmethod
    def read(cls, out: str | Path) -> PfmRun:
        """A finished PFM run, from its directory ``out`` (ValueError if it holds
        none)."""
        out, settings, facts, _ = read_run(out, "pfm", PfmConfig)
        return cls.of_directory(out, settings, **facts)

    @classmethod
    def of_directory(cls, out: Path, settings: PfmConfig, **recorded) -> PfmRun:
        """The run whose tables and maps are in ``out``, with its settings and the
        facts its record keeps (``movie``, ``truth``, ``warnings``, ``timings_s``)."""
        if not (out / rundir.WALL_MASK).is_file():
            raise ValueError(f"{out} has no {rundir.WALL_MASK}: a run of an earlier "
                             "version; run it again")
        with np.load(out / rundir.WALL_MASK) as data:
            walls, valid = data["walls"], data["valid"]
        with np.load(out / rundir.WALLS / rundir.MAPS) as data:
            maps = {name: data[name] for name in ("z1", "z2", *PHYSICS)}
            manifold_ = (data["manifold_z1"], data["manifold_z2"], data["manifold"])
        return cls(out=out, settings=settings, signal=pfm_run_frames(out), valid=valid,
                   walls=walls, maps=maps, manifold=manifold_,
                   **{name: read_table(out / file) for name, file in RUN_TABLES.items()},
                   **recorded)


def run_pfm(movie: str | Path | list, out: str | Path,
            config: PfmConfig | dict | str | Path | None = None, *,
            truth: str | Path | None = None, overwrite: bool = False, resume: bool = True,
            progress: bool = True, inputs: Mapping[str, str | Path] | None = None
            ) -> PfmRun:
    """The whole PFM pipeline on a phase movie, into the run directory ``out``.

    Each step (walls, windows, skip-rVAE, maps and the followed wall, figures and
    report) is stamped when it finishes (:mod:`latentpath.pipeline.steps`), so running
    again into ``out`` reuses the finished steps: a killed run completes, with the
    results it would have had.

    Parameters
    ----------
    movie : path, or list of paths (one frame or more each, stacked in order)
    out : path
        Run directory. If it holds a run of other inputs or settings, that run is only
        replaced with ``overwrite``, and the steps the two share are reused.
    config : PfmConfig, dict or path, optional
        Settings, as settings, a dict of them, or a JSON config file
        (:func:`latentpath.pipeline.common.read_config_file`); default: the defaults.
    truth : path, optional
        Synthetic truth (.npz) of the movie, recorded for ``latentpath evaluate RUN``.
    resume : bool
        Reuse the steps an earlier run into ``out`` finished with the same inputs and
        settings (False: compute every step again).
    inputs : mapping, optional
        Further files the run reads, by what they are to the user (``{"--config":
        path}``): like the movie, the truth and a config file given as ``config``,
        they are never replaced. Files in ``out`` that no run there wrote are only
        replaced with ``overwrite`` (:class:`~latentpath.pipeline.steps.RunSteps`).

    Returns
    -------
    PfmRun
        The run's signal, walls, tables, maps and settings, as :meth:`PfmRun.read`
        reads them back, with the steps taken from an earlier run (``reused``) and the
        seconds this call took (``total_s``).
    """
    started = time.perf_counter()
    inputs = {**(inputs or {}),
              "the config file": config if isinstance(config, str | Path) else None}
    config = PfmConfig.resolve(config)
    config = config.for_device(config.device)
    out = Path(out)
    # absolute, so that the record replays from anywhere (latentpath pfm --config)
    source = ([str(Path(p).resolve()) for p in movie] if isinstance(movie, list | tuple)
              else str(Path(movie).resolve()))
    phase, amplitude = load_pfm(movie, config)
    if phase.n_frames <= config.delay:
        raise ValueError(f"the movie has {phase.n_frames} frame(s); time-delayed windows "
                         f"need more than delay={config.delay} (set delay 0 for one frame)")
    truth = None if truth is None else str(Path(truth).resolve())
    movie_key = movie_content_key(phase, amplitude)
    movies = source if isinstance(source, list) else [source]
    files, folders = pfm_outputs(out)
    steps = RunSteps.open(out, run_identity("pfm", movie_key, config, truth),
                          outputs=files, folders=folders,
                          inputs={**{"the movie" if len(movies) == 1 else
                                     f"movie {i + 1} of {len(movies)}": p
                                     for i, p in enumerate(movies)},
                                  "the truth": truth, **inputs},
                          rereadable=[out / rundir.RECORD], overwrite=overwrite,
                          resume=resume, progress=progress)
    with steps:
        return _pfm_steps(steps, phase, amplitude, source, truth, movie_key, config,
                          started, progress=progress)


def pfm_outputs(out: Path) -> tuple[list[Path], list[Path]]:
    """The files and the folders a PFM run writes in its directory ``out``."""
    files = [out / name for name in (rundir.RECORD, rundir.SIGNAL, rundir.WALL_MASK,
                                     rundir.REPORT, *RUN_TABLES.values())]
    return files, [out / rundir.WALLS, out / rundir.FIGURES]


def _walls_step(steps: RunSteps, phase: Movie, amplitude: np.ndarray | None, movie_key: str,
                config: PfmConfig) -> str:
    """The aligned signal, its drift, the walls as curves and the frames' table, reused
    when finished earlier; returns the step's key."""
    out = steps.out
    key = step_key("walls", config, STEP_SETTINGS["walls"], movie_key)
    tables = [RUN_TABLES[name] for name in ("drift", "curves", "frames")]

    def find_walls() -> StepOutput:
        signal, valid, drift = signal_and_drift(phase.data, amplitude)
        walls, curves = walls_and_curves(signal, valid, config)
        if not walls.any():
            raise ValueError("no domain walls found in the movie: is it a PFM phase channel "
                             "with two polarisation states?")
        frames = frame_table(signal, valid, walls, curves)
        for name, table in zip(tables, (drift, curves, frames), strict=True):
            write_table(table, out / name, overwrite=True)
        save_npy(signal, out / rundir.SIGNAL, overwrite=True)
        save_npz(out / rundir.WALL_MASK, {"walls": walls, "valid": valid}, overwrite=True)
        return StepOutput([*(out / name for name in tables), out / rundir.SIGNAL,
                           out / rundir.WALL_MASK],
                          values={"warnings": drift.attrs["doubts"]},
                          note=f"{len(curves)} px, {len(curves.groupby(['frame', 'wall']))} "
                               f"curves; drift from the "
                               f"{'phase' if amplitude is None else 'amplitude'}")

    steps.run("walls", key, find_walls)
    return key


def _pfm_steps(steps: RunSteps, phase, amplitude, source: str | list[str],
               truth: str | None, movie_key: str, config: PfmConfig, started: float, *,
               progress: bool) -> PfmRun:
    """The steps of :func:`run_pfm` in its claimed directory."""
    from latentpath.rvae import load_rvae

    out = steps.out
    folder = out / rundir.WALLS
    folder.mkdir(exist_ok=True)

    key = _walls_step(steps, phase, amplitude, movie_key, config)
    keys = [key]
    curves = read_table(out / RUN_TABLES["curves"])
    signal = np.load(out / rundir.SIGNAL)
    with np.load(out / rundir.WALL_MASK) as data:
        walls, valid = data["walls"], data["valid"]
    candidates, points = wall_centres(walls, valid, config)

    key = step_key("windows", config, STEP_SETTINGS["windows"], key)
    keys.append(key)

    def cut() -> StepOutput:
        windows, table = cut_wall_windows(signal, points, config)
        check_enough_windows(len(table), "wall", f"the movie is too small or has too few "
                                                 f"walls for windows of {config.window_px} px")
        save_npy(windows, folder / rundir.WINDOWS, overwrite=True)
        write_table(table, folder / rundir.WINDOW_TABLE, overwrite=True)
        return StepOutput([folder / rundir.WINDOWS, folder / rundir.WINDOW_TABLE],
                          note=f"{len(table)} windows")

    steps.run("windows", key, cut)
    windows = np.load(folder / rundir.WINDOWS, mmap_mode="r")
    table = read_table(folder / rundir.WINDOW_TABLE)

    key = step_key("model", config, STEP_SETTINGS["model"], key)
    keys.append(key)
    model_steps(steps, [ModelJob("model", key, config, folder / rundir.WINDOWS, folder)],
                side_by_side=False, progress=progress)

    key = step_key("maps", config, STEP_SETTINGS["maps"], key)
    keys.append(key)
    outputs = [out / RUN_TABLES[name] for name in ("latents", "wall_history", "wall_latents")]
    outputs.append(folder / rundir.MAPS)

    def map_physics() -> StepOutput:
        physics_maps(load_rvae(folder / rundir.MODEL), windows, table, signal, curves, candidates,
                     config, out)
        return StepOutput(outputs)

    steps.run("maps", key, map_physics)
    run = PfmRun.of_directory(out, config, movie=source, truth=truth,
                              warnings=steps.values("walls").get("warnings", []),
                              timings_s=steps.timings)
    key = content_key("report", __version__, *keys, source, truth)
    steps.run("report", key, lambda: StepOutput(_pfm_record(
        run, steps, phase=phase, amplitude=amplitude is not None)))
    return dataclasses.replace(run, timings_s=steps.timings, reused=tuple(steps.reused),
                               total_s=round(time.perf_counter() - started, 1))


def frame_table(signal: np.ndarray, valid: np.ndarray, walls: np.ndarray,
                curves: pd.DataFrame) -> pd.DataFrame:
    """Per frame: the switched share of the valid pixels, the wall pixels and walls."""
    return pd.DataFrame({
        "frame": np.arange(len(signal)),
        "switched_fraction": [float((s > 0)[v].mean()) for s, v in zip(signal, valid,
                                                                        strict=True)],
        "wall_px": walls.sum((1, 2)),
        "walls": curves.groupby("frame").wall.nunique().reindex(range(len(signal)),
                                                                fill_value=0).to_numpy()})


def physics_maps(model, windows: np.ndarray, table: pd.DataFrame, signal: np.ndarray,
                 curves: pd.DataFrame, candidates: pd.DataFrame, config: PfmConfig,
                 out: Path) -> None:
    """Latents with each window's physics and the maps' values, the physics maps and
    manifold over (z1, z2), and the longest-lived wall's history and latents, into
    ``out``."""
    from latentpath.rvae import encode

    latents = encode(model, windows, table=table)
    latents = latents.join(config.physics(windows))
    z1, z2 = latent_grid(latents, config.map_points)
    decoded = manifold(model, z1, z2)
    physics = config.physics(decoded.reshape(-1, *decoded.shape[2:]))
    maps = {"z1": z1, "z2": z2, **{name: physics[name].to_numpy().reshape(len(z2), len(z1))
                                   for name in PHYSICS}}
    m1, m2 = latent_grid(latents, config.manifold_points)
    latents = latents.join(physics_at(maps, latents))
    write_table(latents, out / RUN_TABLES["latents"], overwrite=True)
    save_npz(out / rundir.WALLS / rundir.MAPS, {**maps, "manifold": manifold(model, m1, m2),
                                          "manifold_z1": m1, "manifold_z2": m2},
             overwrite=True)
    chain = follow_wall(curves)
    # the followed wall's pixels that can centre a window (frames with a t + delay)
    wall_px = curves.merge(chain, on=["frame", "wall"]).merge(
        candidates[["frame", "y", "x"]], on=["frame", "y", "x"])
    wall_latents = wall_px.iloc[:0]
    if len(wall_px):
        along, along_table = cut_wall_windows(signal, wall_px, config)
        wall_latents = encode(model, along, table=along_table)
    write_table(wall_history(curves, chain), out / RUN_TABLES["wall_history"],
                overwrite=True)
    write_table(wall_latents, out / RUN_TABLES["wall_latents"], overwrite=True)


def _pfm_record(run: PfmRun, steps: RunSteps, *, phase: Movie, amplitude: bool
                ) -> list[Path]:
    """The figures, ``config.json`` and ``report.html`` of a run; returns their paths."""
    from latentpath.figures import pfm_run_figures
    from latentpath.report import write_report

    figures = pfm_run_figures(run, run.out / rundir.FIGURES)
    record = write_run_record(run, "pfm", steps, figures, pixel_size=phase.pixel_size,
                              pixel_unit=phase.pixel_unit, amplitude=amplitude)
    return [*figures, record, write_report(run, run.signal, overwrite=True)]


def pfm_run_frames(out: str | Path) -> np.ndarray:
    """The frames a finished PFM run's windows were cut from: the aligned polarisation
    signal it saved (``signal.npy``; for runs without one, that of its movie, read again
    from the paths its record names and aligned by its drift)."""
    if (Path(out) / rundir.SIGNAL).is_file():
        return np.load(Path(out) / rundir.SIGNAL)
    record = rundir.read_run_record(out)
    phase, _ = load_pfm(record["movie"], PfmConfig.from_dict(record["config"]))
    signal = normalize_phase(phase.data)
    return align_frames(signal if signal.ndim == 3 else signal[None],
                        read_table(Path(out) / rundir.DRIFT))[0]


def check_pfm_truth(out: str | Path, truth: str | Path) -> None:
    """Refuse synthetic truth (.npz, which holds its movie) of another movie than the
    one the PFM run in ``out`` analysed (ValueError)."""
    recorded = (recorded_identity(out) or {}).get("movie_key")
    if recorded is None:
        return
    phase, amplitude = load_pfm(truth, PfmConfig.from_dict(rundir.read_run_record(out)["config"]))
    if movie_content_key(phase, amplitude) != recorded:
        raise ValueError(f"{truth} is the truth of another movie than the one the run in "
                         f"{out} analysed; give the truth of its movie")
