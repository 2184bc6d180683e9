"""latentpath: unsupervised discovery of structural units and their transformation
pathways from atom-resolved STEM movies and piezoresponse force microscopy movies.

The pipelines mirror the command line: ``latentpath.run_stem(movie, out, config)`` is
``latentpath stem MOVIE --out OUT --config CONFIG``, and ``run_pfm`` likewise.
"""

__version__ = "0.1.0"

from latentpath.io import Movie, MovieError, load_movie

#: names served from latentpath.pipeline on first use, so that ``import latentpath``
#: stays light (the pipelines import torch)
_PIPELINE = ("PfmConfig", "PfmRun", "StemConfig", "StemRun", "run_pfm", "run_stem")

__all__ = ["Movie", "MovieError", "__version__", "load_movie", *_PIPELINE]


def __getattr__(name: str):
    if name in _PIPELINE:
        from latentpath import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'latentpath' has no attribute {name!r}")
