"""What the STEM and PFM pipelines share: the skip-rVAE's size by device, settings from
a dict, the time of each step, and reading a finished run's record."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, ClassVar

#: skip-rVAE size and training length when not set, by device: the CPU default
#: finishes the demo movies in minutes on two cores; the GPU one is the paper's network.
RVAE_SIZES = {"cpu": {"hidden": 128, "layers": 3, "epochs": 40},
              "cuda": {"hidden": 256, "layers": 4, "epochs": 300}}


class RunSettings:
    """Mixin of the pipelines' settings dataclasses (which carry ``hidden``, ``layers``,
    ``epochs`` and ``device``)."""

    label: ClassVar[str] = ""

    def for_device(self, device: Any) -> Any:
        """A copy with the skip-rVAE's size and epochs filled in for ``device``."""
        from latentpath.device import resolve_device

        kind = "cuda" if resolve_device(device).type == "cuda" else "cpu"
        return dataclasses.replace(self, **{k: v for k, v in RVAE_SIZES[kind].items()
                                            if getattr(self, k) is None})

    @classmethod
    def from_dict(cls, values: dict) -> Any:
        """Settings from a dict, refusing keys the settings do not have."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.label} setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def read_run_record(out: str | Path) -> dict:
    """The ``config.json`` of a finished run directory (ValueError if there is none)."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ValueError(f"{out} is not a finished run: no config.json")
    return json.loads(path.read_text())


class StepClock:
    """Seconds spent in each step of a run, printed as each step ends."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.started = self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        """Record the time since the previous step (or the start) under ``step``."""
        now = time.perf_counter()
        self.timings[step] = round(now - self._last, 2)
        self._last = now
        if self.progress:
            print(f"  {step}: {self.timings[step]:.1f} s", flush=True)

    @property
    def total_s(self) -> float:
        """Seconds since the clock started."""
        return round(time.perf_counter() - self.started, 1)


def clear_window_outputs(folder: Path) -> None:
    """Remove what an earlier run wrote into a window folder (``RUN/atom``,
    ``RUN/walls``, ...), and only that: anything else a user put there stays."""
    import shutil

    for name in ("windows.npy", "windows.parquet", "latents.parquet", "maps.npz",
                 "track_windows.npz"):
        (folder / name).unlink(missing_ok=True)
    if (folder / "model").is_dir():
        shutil.rmtree(folder / "model")
