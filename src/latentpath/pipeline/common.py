"""What the STEM and PFM pipelines share: the skip-rVAE's settings, its size by device,
settings from a dict or a config file, and reading a finished run's record."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from latentpath import rundir
from latentpath.allocator import keep_large_blocks
from latentpath.io import write_json
from latentpath.rvae.model import SIZE_LIMITS

#: skip-rVAE size and training length when not set, by device: the CPU default
#: finishes the demo movies in minutes on two cores; the GPU one is the paper's network.
RVAE_SIZES = {"cpu": {"hidden": 128, "layers": 3, "epochs": 40},
              "cuda": {"hidden": 256, "layers": 4, "epochs": 300}}


#: the settings a skip-rVAE's training depends on, in every pipeline (part of its step's
#: key; the speed settings, steps.SPEED_SETTINGS, change only how fast it comes)
MODEL_SETTINGS = ("latent_dim", "hidden", "layers", "epochs", "patience", "max_steps",
                  "min_steps", "cooldown", "pixel_fraction", "time_budget_s", "batch_size",
                  "lr", "kl_weight", "neighbour_weight", "precision", "seed")
#: fewer windows than this cannot train a skip-rVAE
MIN_WINDOWS = 20

#: the sizes of the skip-rVAE and its training a run accepts, (lowest, highest): beyond
#: them a setting is a typo (a petabyte model, training that never ends)
RUN_SIZE_BOUNDS = {"epochs": (1, 100_000), "batch_size": (1, 65_536),
                   "hidden": (1, SIZE_LIMITS["hidden"]), "layers": (1, SIZE_LIMITS["layers"]),
                   "patience": (1, 100_000), "max_steps": (1, 10**8),
                   "min_steps": (1, 10**8),
                   "latent_dim": (2, SIZE_LIMITS["latent_dim"])}


def check_sizes(settings: Any, bounds: dict[str, tuple[int, int]]) -> None:
    """Refuse integer settings outside their ``bounds`` (None values are left alone)."""
    for name, (low, high) in bounds.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or value != int(value) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number from {low} to {high}, got "
                             f"{value!r}")


@dataclasses.dataclass
class RunSettings:
    """What the settings of every pipeline (:class:`~latentpath.pipeline.StemConfig`,
    :class:`~latentpath.pipeline.PfmConfig`) hold: the skip-rVAE, its device and seed.

    Attributes
    ----------
    latent_dim, hidden, layers, epochs, batch_size, lr, kl_weight, precision, compile
        The skip-rVAE and its training (:func:`latentpath.rvae.fit_rvae`). ``hidden``,
        ``layers`` and ``epochs`` left as None follow the device (``rvae_sizes``,
        :data:`RVAE_SIZES` unless a pipeline sets its own): 3 x 128 units for 40
        epochs on a CPU, minutes on two cores; the paper's 4 x 256 for 300 epochs on
        a GPU.
    device : str
        "auto", "cpu" or "cuda".
    seed : int
    patience, max_steps : int, optional
        Stop the skip-rVAE's training once its validation loss has not improved for
        ``patience`` epochs, or after ``max_steps`` optimiser steps (None, the
        default: train for ``epochs``). See :func:`latentpath.rvae.fit_rvae`.
    min_steps : int, optional
        The patience does not stop training before this many optimiser steps (None:
        no floor, unless the pipeline's ``rvae_sizes`` give one; 1: none). See
        :func:`latentpath.rvae.fit_rvae`.
    time_budget_s : float, optional
        Wall-clock budget of one training call, seconds; a run stopped by it is not
        reproducible.
    cooldown : float
        Share of the training spent at the end with the learning rate falling to zero
        (0: none). See :func:`latentpath.rvae.fit_rvae`.
    pixel_fraction : float
        Share of each window's pixels decoded in a training step (1: all). See
        :func:`latentpath.rvae.fit_rvae`.
    neighbour_weight : float
        Weight of the term that keeps each window's nearest windows near it in the
        latent plane (0: the plain skip-rVAE). See :func:`latentpath.rvae.fit_rvae`.
    side_by_side : bool
        On a CPU, train the run's skip-rVAEs (STEM: of atom and hollow windows) at the
        same time, each on its share of the threads (:func:`model_steps`); False: one
        after the other on all of them. Like the device, it changes how fast they come,
        and their weights in the last digits.
    """

    latent_dim: int = 2
    hidden: int | None = None
    layers: int | None = None
    epochs: int | None = None
    batch_size: int = 100
    lr: float = 1e-3
    kl_weight: float = 1.0
    precision: str = "auto"
    compile: bool | str = "auto"
    device: str = "auto"
    seed: int = 0
    patience: int | None = None
    max_steps: int | None = None
    min_steps: int | None = None
    time_budget_s: float | None = None
    cooldown: float = 0.0
    pixel_fraction: float = 1.0
    neighbour_weight: float = 0.0
    side_by_side: bool = True
    label: ClassVar[str] = ""
    #: size and epochs of the skip-rVAE per device kind, where left as None
    rvae_sizes: ClassVar[dict] = RVAE_SIZES

    def __post_init__(self) -> None:
        check_sizes(self, RUN_SIZE_BOUNDS)
        if self.time_budget_s is not None and not 0 < self.time_budget_s < float("inf"):
            raise ValueError(f"time_budget_s must be a positive number of seconds, got "
                             f"{self.time_budget_s}")
        if not 0 <= self.cooldown < 1:
            raise ValueError(f"cooldown must lie in [0, 1), got {self.cooldown}")
        if not 0 < self.pixel_fraction <= 1:
            raise ValueError(f"pixel_fraction must lie in (0, 1], got {self.pixel_fraction}")
        if not 0 <= self.neighbour_weight < float("inf"):
            raise ValueError(f"neighbour_weight must be 0 or a positive number, got "
                             f"{self.neighbour_weight}")
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"compile must be true, false or \"auto\", got {self.compile!r}")

    def train_rvae(self, windows: Any, folder: Path, *, resume: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   sample_weights: Any = None) -> Any:
        """Train the skip-rVAE with these settings into ``folder`` (continuing its
        checkpoint if ``resume``, replacing a model there if ``overwrite``; windows
        drawn in proportion to ``sample_weights``, one per window, if given) and load
        it back."""
        from latentpath.rvae import fit_rvae, load_rvae

        fit_rvae(windows, folder, latent_dim=self.latent_dim, hidden=self.hidden,
                 layers=self.layers, epochs=self.epochs, batch_size=self.batch_size,
                 lr=self.lr, kl_weight=self.kl_weight, seed=self.seed, device=self.device,
                 precision=self.precision, compile=self.compile, resume=resume,
                 progress=progress, patience=self.patience, max_steps=self.max_steps,
                 min_steps=self.min_steps, time_budget_s=self.time_budget_s,
                 cooldown=self.cooldown, pixel_fraction=self.pixel_fraction,
                 sample_weights=sample_weights, neighbour_weight=self.neighbour_weight,
                 overwrite=overwrite)
        return load_rvae(folder)

    def for_device(self, device: Any) -> Any:
        """A copy with the skip-rVAE's size and epochs filled in for ``device``."""
        from latentpath.device import resolve_device

        kind = "cuda" if resolve_device(device).type == "cuda" else "cpu"
        return dataclasses.replace(self, **{k: v for k, v in self.rvae_sizes[kind].items()
                                            if getattr(self, k) is None})

    @classmethod
    def from_dict(cls, values: dict) -> Any:
        """Settings from a dict (a config file's), refusing keys the settings do not have
        and values of the wrong kind, each with a message naming the setting."""
        if not isinstance(values, dict):
            raise ValueError(f"{cls.label} settings must be a mapping of names to values, "
                             f"got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown {cls.label} setting(s) {unknown}; known: "
                             f"{sorted(fields)}")
        for name, value in values.items():
            _check_kind(f"{cls.label} setting {name}", str(fields[name].type), value)
        return cls(**values)


    @classmethod
    def resolve(cls, config: Any) -> Any:
        """Settings from what a user may pass: None (the defaults), settings, a dict, or
        the path of a config file (:func:`read_config_file`)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, str | Path):
            config = read_config_file(config, cls.label.lower())["config"]
        if isinstance(config, dict):
            return cls.from_dict(config)
        raise ValueError(f"config must be {cls.__name__}, a dict or a config file, got "
                         f"{type(config).__name__}")


def read_run(out: str | Path, pipeline: str, cls: type, *, unnamed_is_this: bool = False
             ) -> tuple[Path, Any, dict, dict]:
    """What the record of the finished ``pipeline`` run in ``out`` says (ValueError if
    there is none, or a run of another pipeline; a record that names no pipeline is this
    one's if ``unnamed_is_this``, as records of early STEM runs did).

    Returns
    -------
    out : Path
    settings
        Of class ``cls``. Settings of another version that this one does not know are
        left out with a warning naming them: the run is read as it was made, but they
        no longer mean anything.
    facts : dict
        ``movie``, ``truth``, ``warnings`` and ``timings_s``, as the run objects hold them.
    record : dict
        The whole record, for what only one pipeline records.
    """
    import warnings

    out = Path(out)
    record = rundir.read_run_record(out)
    named = record.get("pipeline", pipeline if unnamed_is_this else None)
    if named != pipeline:
        raise ValueError(f"{out} is a {named} run, not a {cls.label} run")
    values = record.get("config")
    if not isinstance(values, dict):
        raise ValueError(f"{out / rundir.RECORD} holds no settings (\"config\")")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        warnings.warn(f"{out} was made by latentpath {record.get('version', '?')} with "
                      f"settings this version does not know, left out: {unknown}",
                      stacklevel=3)
    facts = {"movie": record.get("movie"), "truth": record.get("truth"),
             "warnings": record.get("warnings", []), "timings_s": record.get("timings_s", {})}
    return out, cls.from_dict({k: v for k, v in values.items() if k in known}), facts, record


def write_run_record(run: Any, pipeline: str, steps: Any, figures: list[Path],
                     **facts: Any) -> Path:
    """``config.json`` of a ``run`` (a ``StemRun`` or ``PfmRun``): the pipeline, version,
    movie and truth, the pipeline's own ``facts``, the settings, the ``steps``' timings,
    the warnings and the ``figures``. Returns its path."""
    from latentpath import __version__

    return write_json({"pipeline": pipeline, "version": __version__, "movie": run.movie,
                       "truth": run.truth, **facts,
                       "config": dataclasses.asdict(run.settings),
                       "timings_s": steps.timings, "total_s": steps.total_s,
                       "warnings": run.warnings,
                       "figures": [str(f.relative_to(run.out)) for f in figures]},
                      run.out / rundir.RECORD, overwrite=True)


def read_config_file(path: str | Path, pipeline: str) -> dict:
    """A run's settings, and the movie, truth and run directory it names, from a JSON file.

    The file is either a run's record (``RUN/config.json``: ``pipeline``, ``movie``,
    ``truth``, ``config``), which repeats that run into its own directory, or a file a
    user wrote: ``{"config": {...}}`` with optional ``movie``, ``truth``, ``out``, or
    the settings alone.

    Returns
    -------
    dict
        ``config`` (settings dict), ``movie``, ``truth``, ``out`` (None where not named).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"config file {path} is not readable JSON: {err}") from None
    except RecursionError:
        raise ValueError(f"config file {path} is JSON nested too deeply to be settings"
                         ) from None
    if not isinstance(record, dict):
        raise ValueError(f"config file {path} must hold a JSON object")
    if record.get("pipeline", pipeline) != pipeline:
        raise ValueError(f"config file {path} is the record of a {record['pipeline']} run, "
                         f"not of a {pipeline} run")
    if "config" not in record:
        return {"config": record, "movie": None, "truth": None, "out": None}
    extra = sorted(set(record) - {"config", "movie", "truth", "out"}) if "pipeline" not in \
        record else []
    if extra:
        raise ValueError(f"config file {path}: unknown key(s) {extra}; known: config, movie, "
                         f"truth, out")
    out = record.get("out") or (str(path.parent) if "pipeline" in record else None)
    return {"config": record["config"], "movie": record.get("movie"),
            "truth": record.get("truth"), "out": out}


#: what a JSON value may be for each kind named in a settings annotation
_KINDS = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
          "dict": (dict,), "tuple": (list, tuple, str)}


def _check_kind(name: str, annotation: str, value: Any) -> None:
    """Refuse ``value`` unless it is of a kind the annotation (a string such as
    ``"int | None"`` or ``"tuple[str, ...] | None"``) allows."""
    if value is None:
        if "None" not in annotation:
            raise ValueError(f"{name} must be set, got null")
        return
    words = annotation.replace("[", " ").split()
    kinds = [kind for kind in _KINDS if kind in words]
    if not kinds:
        return
    allowed = tuple(t for kind in kinds for t in _KINDS[kind])
    if (isinstance(value, bool) and "bool" not in kinds) or not isinstance(value, allowed):
        raise ValueError(f"{name} must be {' or '.join(kinds)}, got {value!r}")


def own_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """The sentences of the user warnings latentpath itself raised among ``caught``
    (``warnings.catch_warnings(record=True)``); those of libraries are left out."""
    package = Path(__file__).parents[1]
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)
            and Path(w.filename).is_relative_to(package)]


def check_enough_windows(n: int, what: str, why: str) -> None:
    """Refuse a run with fewer than :data:`MIN_WINDOWS` windows of a kind, saying why
    there are so few (ValueError)."""
    if n < MIN_WINDOWS:
        raise ValueError(f"only {n} {what} windows inside the frames; {why}")


@dataclasses.dataclass(frozen=True)
class ModelJob:
    """One window kind's skip-rVAE step for :func:`model_steps`: the step's ``name`` and
    ``key``, the ``settings`` it trains with, its windows (a ``.npy`` file, read
    memory-mapped), the kind's ``folder`` (the model goes to ``folder/model``), what
    gives the windows' training draws (None: uniform) and, for settings that keep the
    best of several trained models, what gives the labels they are judged by; both are
    called only if the model is trained."""

    name: str
    key: str
    settings: RunSettings
    windows: Path
    folder: Path
    sample_weights: Callable[[], Any] | None = None
    draw_labels: Callable[[], Any] | None = None


def model_steps(steps: Any, jobs: list[ModelJob], *, side_by_side: bool,
                progress: bool = True) -> dict[str, Any]:
    """The steps that train each window kind's skip-rVAE into its ``folder/model``, in
    every pipeline, side by side on a CPU: nothing where ``steps``
    (:class:`~latentpath.pipeline.steps.RunSteps`) holds a finished one of the job's
    key; a checkpoint of the same training continues, anything else in its place is
    stale and goes.

    Side by side, each model trains on its share of the CPU's threads (two models on two
    cores: one each), the first in this process and the others in processes of their
    own, which end with this one. The small matrices of a step use two threads poorly:
    two models on one thread each finish in about 70 % of the time of one after the
    other on two (docs/benchmarks.md). The share depends on the number of jobs, not on
    how many still need training, so that a resumed run trains as a whole one would.

    Returns
    -------
    dict
        Per step name, the model trained in this process, or None (kept from an earlier
        run, or trained in another process: load it from its folder).
    """
    import torch

    todo = [job for job in jobs if not steps.reusable(job.name, job.key)]
    side_by_side = (side_by_side and len(jobs) > 1 and _can_spawn()
                    and all(_on_cpu(job.settings.device) for job in jobs))
    threads = max(1, torch.get_num_threads() // len(jobs)) if side_by_side else None
    made = {job.name: (job.sample_weights and job.sample_weights(),
                       job.draw_labels and job.draw_labels()) for job in todo}
    # the other processes get the job without its (unpicklable) makers
    todo = [dataclasses.replace(job, sample_weights=None, draw_labels=None) for job in todo]
    for job in todo:
        if not steps.begin(job.name, job.key):
            for stale in (job.folder / rundir.MODEL, job.folder / rundir.DRAWS):
                if stale.exists():
                    shutil.rmtree(stale)
    trained: dict[str, Any] = dict.fromkeys(job.name for job in jobs)
    if not todo:
        return trained
    context = multiprocessing.get_context("spawn")
    others = []
    if side_by_side:
        for job in todo[1:]:
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_train_elsewhere, daemon=True,
                                    args=(job, made[job.name], threads, os.getpid(),
                                          send))
            child.start()
            # the child holds the only sending end now, so its death ends the wait
            # below (an end left open here would keep that wait open forever)
            send.close()
            others.append((job, child, receive))
            if progress:
                print(f"  {job.name}: training in a second process, side by side",
                      flush=True)
    try:
        for job in todo if not side_by_side else todo[:1]:
            started = time.perf_counter()
            trained[job.name] = _train_here(job, made[job.name], threads,
                                            progress=progress)
            steps.finish(job.name, job.key, [job.folder / rundir.MODEL],
                         seconds=time.perf_counter() - started,
                         alongside=[other.name for other, _, _ in others])
        for job, child, receive in others:
            try:
                outcome = receive.recv()
            except EOFError:  # the process died without a word (killed, or never ran)
                outcome = None
            child.join()
            if not isinstance(outcome, float):
                error, trace = outcome or (f"exit code {child.exitcode}", "")
                raise RuntimeError(f"the {job.name}, trained in a second process, failed: "
                                   f"{error}\n{trace}")
            steps.finish(job.name, job.key, [job.folder / rundir.MODEL], seconds=outcome,
                         alongside=[todo[0].name])
    finally:
        for _, child, _ in others:
            if child.is_alive():
                child.terminate()
                child.join()
    return trained


def _can_spawn() -> bool:
    """Whether a spawned process can start here: it runs the main module's file again,
    and a program read from standard input (``python - < script.py``) has none (a
    notebook's or ``python -c``'s main module has no file and is not run again)."""
    path = getattr(sys.modules["__main__"], "__file__", None)
    return path is None or Path(path).is_file()


def _on_cpu(device: str) -> bool:
    from latentpath.device import resolve_device

    return resolve_device(device).type == "cpu"


def _train_here(job: ModelJob, weights_and_labels: tuple[Any, Any], threads: int | None, *,
                progress: bool) -> Any:
    """Train ``job``'s model in this process, on ``threads`` threads if given, with its
    sample weights and, where the job has them, the labels its draws are judged by."""
    import torch

    sample_weights, labels = weights_and_labels
    judged = {} if labels is None else {"draw_labels": labels}
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        windows = np.load(job.windows, mmap_mode="r")
        return job.settings.train_rvae(windows, job.folder / rundir.MODEL, resume=True,
                                       overwrite=True, progress=progress,
                                       sample_weights=sample_weights, **judged)
    finally:
        torch.set_num_threads(before)


def _train_elsewhere(job: ModelJob, weights_and_labels: tuple[Any, Any], threads: int,
                     parent: int, send: Any) -> None:
    """A second process's work: train ``job``'s model, send its seconds (or the error and
    its traceback) back, and end at once should the process that started it end first."""
    def end_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=end_with_parent, daemon=True).start()
    keep_large_blocks()
    started = time.perf_counter()
    try:
        _train_here(job, weights_and_labels, threads, progress=False)
    except Exception as err:
        send.send((f"{type(err).__name__}: {err}", traceback.format_exc()))
        return
    send.send(time.perf_counter() - started)
