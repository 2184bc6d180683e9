"""The pipelines, from a movie file to a run directory: STEM (:mod:`.stem`) and PFM
(:mod:`.pfm`), with what they share (:mod:`.common`)."""

from latentpath.pipeline.common import RVAE_SIZES, read_run_record
from latentpath.pipeline.pfm import (
    PfmConfig,
    check_pfm_truth,
    pfm_run_frames,
    read_pfm_run,
    run_pfm,
)
from latentpath.pipeline.stem import (
    KINDS,
    StemConfig,
    atom_density,
    atoms_and_probabilities,
    check_stem_truth,
    cut_kind_windows,
    frame_graphs,
    read_stem_run,
    run_stem,
    stem_run_frames,
    track_atoms,
    track_latents,
    window_images,
    window_points,
    write_tracks,
)

__all__ = [
    "KINDS",
    "RVAE_SIZES",
    "PfmConfig",
    "StemConfig",
    "atom_density",
    "atoms_and_probabilities",
    "check_pfm_truth",
    "check_stem_truth",
    "cut_kind_windows",
    "frame_graphs",
    "pfm_run_frames",
    "read_pfm_run",
    "read_run_record",
    "read_stem_run",
    "run_pfm",
    "run_stem",
    "stem_run_frames",
    "track_atoms",
    "track_latents",
    "window_images",
    "window_points",
    "write_tracks",
]
