"""Synthetic movies with exact ground truth: STEM of Si-doped graphene, PFM of
ferroelectric domain switching."""

from latentpath.synth.pfm import (
    PfmSimParams,
    SynthPFM,
    read_synth_pfm,
    synth_pfm_movie,
    write_synth_pfm,
)
from latentpath.synth.stem import SynthSTEM, read_synth_stem, synth_stem_movie, write_synth_stem

__all__ = [
    "PfmSimParams",
    "SynthPFM",
    "SynthSTEM",
    "read_synth_pfm",
    "read_synth_stem",
    "synth_pfm_movie",
    "synth_stem_movie",
    "write_synth_pfm",
    "write_synth_stem",
]
