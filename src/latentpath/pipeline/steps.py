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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentpath.io import check_writable, write_json

STATE_DIR = ".latentpath"


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
    """

    out: Path
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    _started: float = field(default=0.0, repr=False)

    @classmethod
    def open(cls, out: str | Path, identity: dict, *, outputs: list[Path],
             overwrite: bool = False, resume: bool = True, progress: bool = True
             ) -> RunSteps:
        """Claim ``out`` for the run ``identity`` (JSON-able: pipeline, movie key,
        settings, version), checking what the directory holds.

        Parameters
        ----------
        out : path
        identity : dict
        outputs : list of Path
            Files of the pipeline that, without a run record, mean the directory holds
            an earlier run (or a user's files) that must not be replaced.
        overwrite : bool
            Allow replacing a different earlier run; its steps that this run shares
            (same key) are still reused.
        resume : bool
            Reuse finished steps (False: recompute every step).

        Raises
        ------
        FileExistsError
            ``out`` holds a different run, or files of an unrecorded one, and not
            ``overwrite``; the message names the differences.
        """
        out = Path(out)
        state = out / STATE_DIR
        record = state / "run.json"
        if record.is_file():
            try:
                old = json.loads(record.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            changes = _differences(old, identity)
            if changes and not overwrite:
                shown = "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")
                raise FileExistsError(
                    f"{out} holds a different run ({shown}); pass overwrite=True "
                    "(--overwrite) to replace it, reusing the steps the two share, or "
                    "choose another output directory")
        else:
            check_writable(outputs, overwrite=overwrite)
        state.mkdir(parents=True, exist_ok=True)
        if not resume:
            for stamp in state.glob("*.json"):
                stamp.unlink()
        write_json(identity, record, overwrite=True)
        return cls(out=out, progress=progress)

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
               values: dict | None = None, note: str = "", seconds: float | None = None
               ) -> None:
        """Stamp ``step`` as finished: its key, its output files (all under the run
        directory) and small ``values`` a later run needs when it reuses the step.
        ``seconds`` is the step's time when it ran elsewhere (default: since
        :meth:`begin`)."""
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
                    "values": values or {}}, self._stamp_path(step), overwrite=True)
        self.timings[step] = seconds
        if self.progress:
            print(f"  {step}{f' ({note})' if note else ''}: {seconds:.1f} s", flush=True)

    def values(self, step: str) -> dict:
        """The ``values`` a finished step was stamped with."""
        return (self._stamp(step) or {}).get("values", {})

    @property
    def total_s(self) -> float:
        """Seconds of all the run's steps, whichever run computed them."""
        return round(sum(self.timings.values()), 1)


#: settings that change how fast a run goes, not what it finds: they are left out of
#: its identity and of its steps' keys
SPEED_SETTINGS = ("device", "compile")


def run_identity(pipeline: str, movie_key: str, settings: Any, truth: str | None) -> dict:
    """What a run directory's ``.latentpath/run.json`` records of the run it holds."""
    from latentpath import __version__

    config = {name: value for name, value in dataclasses.asdict(settings).items()
              if name not in SPEED_SETTINGS}
    return {"pipeline": pipeline, "version": __version__, "movie_key": movie_key,
            "truth": truth, "config": json.loads(json.dumps(config, default=str))}


def step_key(step: str, settings: Any, names: tuple[str, ...], *upstream: str) -> str:
    """The key of ``step``: its name, the library version, the settings ``names`` and
    the keys of the steps it reads."""
    from latentpath import __version__

    return content_key(step, __version__, {name: getattr(settings, name) for name in names},
                       *upstream)
