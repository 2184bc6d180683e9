"""The pipelines, from a movie file to a run directory: STEM (:mod:`.stem`) and PFM
(:mod:`.pfm`), with what they share (:mod:`.common`)."""

from pathlib import Path

import numpy as np

from latentpath.pipeline.common import RVAE_SIZES
from latentpath.pipeline.pfm import (
    PfmConfig,
    PfmRun,
    check_pfm_truth,
    pfm_run_frames,
    run_pfm,
)
from latentpath.pipeline.stem import (
    KINDS,
    KindResult,
    StemConfig,
    StemRun,
    atom_density,
    atoms_and_probabilities,
    check_stem_truth,
    cut_kind_windows,
    frame_graphs,
    run_stem,
    stem_run_frames,
    track_atoms,
    track_latents,
    window_images,
    window_points,
    write_tracks,
)
from latentpath.rundir import read_run_record


def run_frames(out: str | Path) -> np.ndarray:
    """The frames a finished run's windows were cut from, whichever pipeline made it
    (:func:`stem_run_frames`, :func:`pfm_run_frames`)."""
    pipeline = read_run_record(out).get("pipeline")
    return (pfm_run_frames if pipeline == "pfm" else stem_run_frames)(out)


def read_finished_run(out: str | Path) -> StemRun | PfmRun:
    """A finished run read back, whichever pipeline made it (:meth:`StemRun.read`,
    :meth:`PfmRun.read`; ValueError where ``out`` holds neither)."""
    pipeline = read_run_record(out).get("pipeline")
    return (PfmRun if pipeline == "pfm" else StemRun).read(out)


__all__ = [
    "KINDS",
    "RVAE_SIZES",
    "KindResult",
    "PfmConfig",
    "PfmRun",
    "StemConfig",
    "StemRun",
    "atom_density",
    "atoms_and_probabilities",
    "check_pfm_truth",
    "check_stem_truth",
    "cut_kind_windows",
    "frame_graphs",
    "pfm_run_frames",
    "read_finished_run",
    "read_run_record",
    "run_frames",
    "run_pfm",
    "run_stem",
    "stem_run_frames",
    "track_atoms",
    "track_latents",
    "window_images",
    "window_points",
    "write_tracks",
]
