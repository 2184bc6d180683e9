"""latentpath: unsupervised discovery of structural units and their transformation
pathways from atom-resolved STEM movies and piezoresponse force microscopy movies."""

__version__ = "0.1.0"

from latentpath.io import Movie, MovieError, load_movie

__all__ = ["Movie", "MovieError", "__version__", "load_movie"]
