"""Resumable steps of a run directory.

A run is a chain of steps (atoms, windows, a model, maps, ...). Each step has a *key*: a
hash of what its results depend on, namely the keys of the steps it reads, the
settings it uses and the library version. A finished step leaves a stamp,
``RUN/.latentpath/<step>.json``, naming its key and its output files with their sizes.
The stamp is written atomically after the outputs. A later run into the same
directory reuses a step whose stamp has the same key and whose files are all there,
and recomputes every other step. So a run killed at any moment resumes from its last
finished step, and a changed setting recomputes only the steps that use it and the
steps after them.

The directory's ``.latentpath/run.json`` names the run it holds: the pipeline, the
movie's content hash and the settings. A run into a directory that holds a different
run is refused unless the caller passes ``overwrite``.

Nothing a user wrote is replaced without ``overwrite``, and an input never:
``.latentpath/owned.json`` lists the files the directory's runs wrote, each with its
size and modification time. A run claims its outputs when it opens the directory and
settles the list when it ends (:meth:`RunSteps.close`); a file at an output's place
that the list does not hold, or that changed since (a user's edit), is the user's. A
run killed before it settled still owns what it claimed, so it resumes. While a run
works in a directory it holds ``.latentpath/lock`` (its process id): a second run into
the same directory is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentpath.io import check_not_input, write_json

STATE_DIR = ".latentpath"
#: the identity of the directory's run: its inputs and settings (``STATE_DIR/IDENTITY_FILE``)
IDENTITY_FILE = "run.json"
#: the files the directory's runs wrote (``STATE_DIR/OWNED_FILE``)
OWNED_FILE = "owned.json"
#: the process id of the run working in the directory (``STATE_DIR/LOCK_FILE``)
LOCK_FILE = "lock"


def content_key(*parts: Any) -> str:
    """A hex hash of JSON-able values and arrays, the arrays hashed by content, shape
    and dtype (frame by frame, so a memory-mapped movie is not read into memory)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"array {part.shape} {part.dtype.str}".encode())
            for chunk in (part if part.ndim > 1 else [part]):
                digest.update(np.ascontiguousarray(chunk).data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def movie_content_key(movie: Any, *extra: Any) -> str:
    """The content key of a :class:`~latentpath.io.Movie` (its frames, pixel size and
    unit) and of ``extra`` arrays read with it (a PFM amplitude): a run's identity, and
    what a movie read again is checked against."""
    return content_key(movie.data, *extra, movie.pixel_size, movie.pixel_unit)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What differs between two run identities, as ``name: old -> new``."""
    found = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{name}.")
        elif a != b:
            what = "its content" if name == "movie_key" else f"{a!r} -> {b!r}"
            found.append(f"{prefix}{name}: {what}")
    return found


@dataclass(frozen=True)
class StepOutput:
    """What a step wrote (:meth:`RunSteps.run`): its ``files`` and folders under the run
    directory, small ``values`` a later run reads back when it reuses the step
    (:meth:`RunSteps.values`) and a ``note`` for the progress line."""

    files: Sequence[Path]
    values: dict | None = None
    note: str = ""


@dataclass
class RunSteps:
    """The steps of one run into a directory: which are finished and may be reused.

    Create it with :meth:`open`. For each step, the pipeline asks :meth:`reusable`
    and otherwise calls :meth:`begin`, computes, writes its outputs and calls
    :meth:`finish`.

    Attributes
    ----------
    out : Path
        The run directory.
    progress : bool
        Print each step's seconds as it ends, or that it was reused.
    timings : dict
        Seconds of each step, as measured by the run that computed it.
    reused : list of str
        The steps this run took from an earlier one.
    alongside : dict
        Per step, the steps it ran at the same time as (models trained side by side).
    """

    out: Path
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    alongside: dict[str, list[str]] = field(default_factory=dict)
    _started: float = field(default=0.0, repr=False)

    _outputs: list[Path] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, out: str | Path, identity: dict, *, outputs: Sequence[Path],
             folders: Sequence[Path] = (),
             inputs: Mapping[str, str | Path | None] | None = None,
             rereadable: Sequence[Path] = (), overwrite: bool = False,
             resume: bool = True, progress: bool = True) -> RunSteps:
        """Claim ``out`` for the run ``identity`` (JSON-able: pipeline, movie key,
        settings, version), checking what the directory holds. Close it with
        :meth:`close` (or use it as a context manager), which settles what the run
        owns and lets the directory go.

        Parameters
        ----------
        out : path
        identity : dict
        outputs : sequence of Path
            Every file the run may write or replace.
        folders : sequence of Path
            Folders the run writes in and may empty: all that is in them counts as
            output.
        inputs : mapping, optional
            The run's inputs, as in :func:`latentpath.io.check_not_input`: none may be,
            or lie in, an output, even with ``overwrite``.
        rereadable : sequence of Path
            Outputs that may also be inputs while the directory's runs wrote them and
            they are unchanged: a run's record, read whole to repeat the run.
        overwrite : bool
            Allow replacing a different earlier run, and files at the outputs' places
            that the directory's runs did not write; steps this run shares with the
            earlier one (same key) are still reused.
        resume : bool
            Reuse finished steps (False: recompute every step).

        Raises
        ------
        FileExistsError
            ``out`` holds a different run, or files the directory's runs did not write
            at the outputs' places, and not ``overwrite``; the message names them. Or
            another live process is running in ``out``.
        ValueError
            An input is, or lies in, an output.
        NotADirectoryError
            ``out`` is a file (the movie itself, say): a run's output is a directory.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"the output {out} is a file, not a directory: choose "
                                     "a new or a run's directory for the run's output")
        state = out / STATE_DIR
        record = state / IDENTITY_FILE
        owned = _read_owned(state)
        outputs, folders = [Path(p) for p in outputs], [Path(p) for p in folders]
        own_records = {Path(p).resolve() for p in rereadable
                       if Path(p).is_file() and _owns(owned, out, Path(p))}
        check_not_input(outputs + folders,
                        {role: path for role, path in (inputs or {}).items()
                         if path is None or Path(path).resolve() not in own_records})
        if record.is_file():
            changes = _differences(recorded_identity(out) or {}, identity)
            if changes and not overwrite:
                shown = "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")
                raise FileExistsError(
                    f"{out} holds a different run ({shown}); pass overwrite=True "
                    "(--overwrite) to replace it, reusing the steps the two share, or "
                    "choose another output directory")
        foreign = [f for f in _files(outputs + folders) if not _owns(owned, out, f)]
        if foreign and not overwrite:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise FileExistsError(
                f"{foreign[0]}{more} was not written by a latentpath run in {out}; pass "
                "overwrite=True (--overwrite) to replace it, or choose another output "
                "directory")
        state.mkdir(parents=True, exist_ok=True)
        _take_lock(state / LOCK_FILE)
        if not resume:
            for stamp in state.glob("*.json"):
                if stamp.name not in (IDENTITY_FILE, OWNED_FILE):
                    stamp.unlink()
        # claimed before anything is written, so that a run killed half way still owns
        # what it wrote when it resumes
        claims = {_relative(out, p) + suffix: None
                  for paths, suffix in ((outputs, ""), (folders, "/")) for p in paths}
        write_json({**(owned or {}), **claims}, state / OWNED_FILE, overwrite=True)
        write_json(identity, record, overwrite=True)
        return cls(out=out, progress=progress, _outputs=outputs + folders)

    def close(self, *, settle: bool = True) -> None:
        """Let the directory go: record every file at the outputs' places with its
        size and time as the run's own (``settle``; a run that failed leaves its
        claims, so that it may resume) and remove the lock."""
        state = self.out / STATE_DIR
        if settle:
            owned = {k: v for k, v in (_read_owned(state) or {}).items()
                     if v is not None and (self.out / k).is_file()}
            owned.update({_relative(self.out, path): _mark(path)
                          for path in _files(self._outputs)})
            write_json(owned, state / OWNED_FILE, overwrite=True)
        lock = state / LOCK_FILE
        if _lock_holder(lock) == os.getpid():
            lock.unlink()

    def __enter__(self) -> RunSteps:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(settle=kind is None)

    def _stamp_path(self, step: str) -> Path:
        return self.out / STATE_DIR / f"{step.replace(' ', '_')}.json"

    def _stamp(self, step: str) -> dict | None:
        try:
            return json.loads(self._stamp_path(step).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def reusable(self, step: str, key: str) -> bool:
        """Whether ``step`` finished earlier with this key and its outputs are all
        there (with the sizes they were written with)."""
        stamp = self._stamp(step)
        if not stamp or stamp.get("key") != key or not stamp.get("finished"):
            return False
        for name, size in stamp.get("outputs", {}).items():
            path = self.out / name
            if not path.is_file() or path.stat().st_size != size:
                return False
        self.timings[step] = stamp.get("seconds", 0.0)
        self.alongside[step] = stamp.get("alongside", [])
        self.reused.append(step)
        if self.progress:
            print(f"  {step}: reused (computed earlier in {self.timings[step]:.1f} s)",
                  flush=True)
        return True

    def begin(self, step: str, key: str) -> bool:
        """Mark ``step`` as being computed with ``key``.

        Returns
        -------
        bool
            True when an unfinished attempt with the same key came before, so that
            work it saved on the way (a training checkpoint) may be continued;
            False when anything there belongs to other inputs and must be redone.
        """
        stamp = self._stamp(step)
        unfinished = bool(stamp) and stamp.get("key") == key and not stamp.get("finished")
        write_json({"key": key, "finished": False}, self._stamp_path(step), overwrite=True)
        self._started = time.perf_counter()
        return unfinished

    def finish(self, step: str, key: str, outputs: list[Path], *,
               values: dict | None = None, note: str = "", seconds: float | None = None,
               alongside: Sequence[str] = ()) -> None:
        """Stamp ``step`` as finished: its key, its output files (all under the run
        directory) and small ``values`` a later run needs when it reuses the step.
        ``seconds`` is the step's time when it ran elsewhere (default: since
        :meth:`begin`); ``alongside`` names the steps it ran at the same time as, whose
        time :attr:`total_s` counts once."""
        seconds = round(time.perf_counter() - self._started if seconds is None else seconds,
                        2)
        files = []
        for path in outputs:
            path = Path(path)
            files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() \
                else [path]
        write_json({"key": key, "finished": True, "seconds": seconds,
                    "outputs": {str(p.relative_to(self.out)): p.stat().st_size
                                for p in files},
                    "values": values or {}, "alongside": list(alongside)},
                   self._stamp_path(step), overwrite=True)
        self.timings[step] = seconds
        self.alongside[step] = list(alongside)
        if self.progress:
            print(f"  {step}{f' ({note})' if note else ''}: {seconds:.1f} s", flush=True)

    def run(self, step: str, key: str, compute: Callable[[], StepOutput]) -> bool:
        """Compute ``step`` unless an earlier run finished it with this ``key``
        (:meth:`reusable`): :meth:`begin`, ``compute()`` (which writes the step's outputs
        and says what they are) and :meth:`finish`. Returns whether it was computed now."""
        if self.reusable(step, key):
            return False
        self.begin(step, key)
        done = compute()
        self.finish(step, key, list(done.files), values=done.values, note=done.note)
        return True

    def values(self, step: str) -> dict:
        """The ``values`` a finished step was stamped with."""
        return (self._stamp(step) or {}).get("values", {})

    @property
    def total_s(self) -> float:
        """Seconds of all the run's steps, whichever run computed them; steps that ran
        at the same time count as long as the longest of them."""
        overlap = sum(min(self.timings[step], self.timings[other])
                      for step, others in self.alongside.items() for other in others
                      if step < other and step in self.alongside.get(other, ()))
        return round(sum(self.timings.values()) - overlap, 1)


def _relative(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def _files(outputs: Sequence[Path]) -> list[Path]:
    """The files at the outputs' places: a file output, or every file in a folder."""
    found: list[Path] = []
    for path in outputs:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.append(path)
    return found


def _read_owned(state: Path) -> dict | None:
    """The directory's ownership list; None for a run directory of a version before
    it (one with a run record but no list), whose files all count as its runs'."""
    try:
        owned = json.loads((state / OWNED_FILE).read_text())
        return owned if isinstance(owned, dict) else {}
    except FileNotFoundError:
        return None if (state / IDENTITY_FILE).is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _mark(path: Path) -> list[int]:
    """What the ownership list keeps of a file: its size and modification time."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _owns(owned: dict | None, out: Path, path: Path) -> bool:
    """Whether the directory's runs wrote ``path`` and it is as they left it: listed
    with its size and time, or claimed (itself or a folder above it) by a run that has
    not settled."""
    if owned is None:
        return True
    name = _relative(out, path)
    if name in owned:
        return owned[name] is None or list(owned[name]) == _mark(path)
    return any(owned.get(folder, False) is None
               for folder in (name[:i + 1] for i, c in enumerate(name) if c == "/"))


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _take_lock(lock: Path) -> None:
    """Hold ``lock`` for this process; a lock of a process that is gone is taken over."""
    for _ in range(2):
        try:
            with open(lock, "x") as f:
                f.write(str(os.getpid()))
            return
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and holder != os.getpid() and _alive(holder):
                raise FileExistsError(
                    f"{lock.parent.parent} is in use by another latentpath run (process "
                    f"{holder}); wait for it to end, or choose another output directory"
                    ) from None
            lock.unlink(missing_ok=True)  # a dead run's, or this process's own
    raise FileExistsError(f"could not lock {lock.parent.parent}: another run took it")


#: settings that change how fast a run goes, not what it finds: they are left out of
#: its identity and of its steps' keys
SPEED_SETTINGS = ("device", "compile", "side_by_side")


def run_identity(pipeline: str, movie_key: str, settings: Any, truth: str | None) -> dict:
    """What a run directory's ``.latentpath/run.json`` records of the run it holds."""
    from latentpath import __version__

    config = {name: value for name, value in dataclasses.asdict(settings).items()
              if name not in SPEED_SETTINGS}
    return {"pipeline": pipeline, "version": __version__, "movie_key": movie_key,
            "truth": truth, "config": json.loads(json.dumps(config, default=str))}


def check_run_file(out: str | Path, path: str | Path, *, overwrite: bool = False) -> None:
    """Refuse to replace ``path`` in the run directory ``out`` if its runs (or the
    commands that add to a run, such as ``evaluate`` and ``report``) did not write it
    as it stands: a user's file, or one edited since (FileExistsError unless
    ``overwrite``)."""
    out, path = Path(out), Path(path)
    if path.is_file() and not overwrite and not _owns(_read_owned(out / STATE_DIR), out,
                                                      path):
        raise FileExistsError(f"{path} was not written by latentpath, or was edited since; "
                              "pass --overwrite to replace it")


def record_run_files(out: str | Path, paths: Sequence[str | Path]) -> None:
    """List ``paths``, just written into the run directory ``out``, as its own (with
    their sizes and times), so that later commands may replace them."""
    out = Path(out)
    state = out / STATE_DIR
    owned = _read_owned(state)
    if owned is None or not state.is_dir():
        return  # a run of an earlier version: every file counts as its own already
    owned.update({_relative(out, Path(path)): _mark(Path(path)) for path in paths})
    write_json(owned, state / OWNED_FILE, overwrite=True)


def recorded_identity(out: str | Path) -> dict | None:
    """The identity (:func:`run_identity`) of the run a directory holds; None where it
    records none."""
    try:
        identity = json.loads((Path(out) / STATE_DIR / IDENTITY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return identity if isinstance(identity, dict) else None


def step_key(step: str, settings: Any, names: tuple[str, ...], *upstream: str) -> str:
    """The key of ``step``: its name, the library version, the settings ``names`` and
    the keys of the steps it reads."""
    from latentpath import __version__

    return content_key(step, __version__, {name: getattr(settings, name) for name in names},
                       *upstream)
