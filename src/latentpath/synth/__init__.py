"""Synthetic movies with exact ground truth: STEM of Si-doped graphene, PFM of
ferroelectric domain switching."""

from latentpath.synth.stem import SynthSTEM, read_synth_stem, synth_stem_movie, write_synth_stem

__all__ = ["SynthSTEM", "read_synth_stem", "synth_stem_movie", "write_synth_stem"]
