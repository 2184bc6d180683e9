"""The run directory's layout: the name of every file a run writes, spelled here only,
and its record (docs/DESIGN.md, "Run directory")."""

from __future__ import annotations

import json
from pathlib import Path

#: the run's record: its settings, inputs, timings and figures
RECORD = "config.json"
REPORT = "report.html"
#: ``latentpath evaluate RUN`` against synthetic truth
SCORES = "scores.json"
FIGURES = "figures"

# STEM runs
ATOMS = "atoms.parquet"
#: per frame: the atom finder's measures that need no truth (atoms.quality)
ATOM_QUALITY = "atom_quality.csv"
RINGS = "rings.parquet"
#: the images the windows are cut from (the smoothed atom probability)
WINDOW_IMAGES = "window_images.npy"
#: the self-trained segmentation model (``--self-train``)
SEGMENTER = "segmenter"
DRIFT = "drift.csv"
TRACKS = "tracks.parquet"
TRANSITIONS = "transitions.csv"
TRANSITION_COUNTS = "transition_counts.csv"
STATE_LIFETIMES = "state_lifetimes.csv"

# in the folder of each window kind (STEM: one per kind, ``atom/`` and ``hollow/``;
# PFM: ``walls/``)
WINDOWS = "windows.npy"
WINDOW_TABLE = "windows.parquet"
MODEL = "model"
#: (STEM ``atom/``, with ``StemConfig.atom_draws`` above 1) each draw's model, as
#: ``DRAWS/<i>/``, and the choice among them, ``DRAWS/DRAW_CHOICE``
DRAWS = "draws"
DRAW_CHOICE = "choice.json"
LATENTS = "latents.parquet"
MAPS = "maps.npz"
DISCOVERY = "discovery.json"
#: (STEM ``atom/``) the windows of the tracked atoms
TRACK_WINDOWS = "track_windows.npz"

# PFM runs
WALLS = "walls"
SIGNAL = "signal.npy"
WALL_MASK = "wall_mask.npz"
WALL_CURVES = "walls.parquet"
FRAMES = "frames.csv"
WALL_HISTORY = "wall_history.csv"
WALL_LATENTS = "wall_latents.parquet"


def read_run_record(out: str | Path) -> dict:
    """The ``config.json`` of a finished run directory (ValueError if there is none)."""
    path = Path(out) / RECORD
    if not path.is_file():
        raise ValueError(f"{out} is not a finished run: no {RECORD}")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path} is not a readable run record ({type(err).__name__})"
                         ) from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a run record (not a JSON object)")
    return record
