"""The STEM pipeline, step by step, into a run directory.

movie -> atoms (shipped U-Net, optional self-training) -> bond graph per frame (rings,
ring counts per atom, hollow sites) -> atom-centred and hollow-site-centred windows cut
from the segmentation's atom probabilities -> a skip-rVAE for each kind -> latents,
manifold, chemical-space map, per-window classes -> figures.

Every step is a plain function of arrays and tables; :func:`run_stem` chains them and
writes::

    RUN/config.json            the settings, the movie and the library version
    RUN/atoms.parquet          frame, y, x, species, score, intensity, n5..n8, coordination
    RUN/atom_quality.csv       per frame: the finder's measures without truth (doubles,
                               isolated atoms, empty area, bond length, ...)
    RUN/rings.parquet          frame, ring, size, y, x (pixels), members (atom rows)
    RUN/window_images.npy      (T, h, w) float32: the images windows are cut from
    RUN/<kind>/windows.npy     kind = atom | hollow: the windows (N, w, w), float32
    RUN/<kind>/windows.parquet what each window is centred on
    RUN/<kind>/model/          the skip-rVAE
    RUN/<kind>/latents.parquet window table + latents + the map's class at each latent
    RUN/<kind>/maps.npz        manifold images and chemical-space map
    RUN/drift.csv              the sample's drift per frame (pixels)
    RUN/tracks.parquet         tracked atoms (Si by default): track, frame, state, latents
    RUN/atom/track_windows.npz their windows, row i for row i of tracks.parquet
    RUN/transitions.csv        changes of chemical state along the tracks
    RUN/transition_counts.csv  how often each change happened
    RUN/state_lifetimes.csv    how long atoms stay in each state (frames)
    RUN/figures/*.png
    RUN/report.html            the page to read and explore the run
    RUN/.latentpath/           the run's identity and its finished steps, for resuming
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd

from latentpath import __version__, rundir
from latentpath.discovery import DiscoveryScore, graph_labels, read_discovery, score_discovery
from latentpath.graph import (
    CC_BOND_A,
    KINDS,
    RING_SIZES,
    bond_frames,
    bond_window,
    find_bonds,
    find_rings,
    ring_counts,
)
from latentpath.io import (
    Movie,
    load_movie,
    read_table,
    save_npy,
    save_npz,
    write_json,
    write_table,
)
from latentpath.latent import (
    ChemicalSpaceMap,
    chemical_space_map,
    labels_at,
    latent_grid,
    manifold,
    map_reading,
)
from latentpath.pipeline.common import (
    MODEL_SETTINGS,
    RUN_SIZE_BOUNDS,
    RVAE_SIZES,
    ModelJob,
    RunSettings,
    check_enough_windows,
    check_sizes,
    model_steps,
    own_warnings,
    read_run,
    write_run_record,
)
from latentpath.pipeline.steps import (
    RunSteps,
    StepOutput,
    content_key,
    movie_content_key,
    recorded_identity,
    run_identity,
    step_key,
)
from latentpath.windows import cut_windows, sample_points

#: the default balance of each window kind's training draws (StemConfig.balance_power)
BALANCE_POWER = MappingProxyType({"atom": 0.5, "hollow": 1.0})

#: STEM runs train to convergence: until the validation loss has not improved for 10
#: epochs, at most 4,000 steps on a CPU (the paper's 300 epochs on a GPU). A fixed number
#: of epochs gave a 12-frame movie a quarter of the steps of a 50-frame one; with every
#: window drawn balanced by its structure, the decoder needs the steps to draw the rare
#: rings (docs/chemical-space.md). The patience stops no training before 2,000 steps: a
#: single image's epochs are a dozen steps, and 10 of them ended its training after a few
#: hundred steps with a map that named nothing. Of the discovery benchmark's 48 models,
#: one had stopped before 2,000 steps (docs/chemical-space.md).
STEM_RVAE_SIZES = {"cpu": {**RVAE_SIZES["cpu"], "epochs": 1000, "max_steps": 4000,
                           "patience": 10, "min_steps": 2000},
                   "cuda": {**RVAE_SIZES["cuda"], "patience": 10, "min_steps": 2000}}


@dataclass
class StemConfig(RunSettings):
    """Settings of a STEM run. Lengths in angstrom unless named ``_px``.

    Attributes
    ----------
    pixel_size_A : float, optional
        Angstrom per pixel; from the file, else estimated from the lattice.
    channel : str, optional
        Dataset or channel inside the movie file.
    self_train_frames : int
        Fine-tune the segmentation on its own atoms of this many leading frames (0: no).
    window_source : {"probability", "raw"}
        Cut windows from the segmentation's atom probability (the method's "semantically
        segmented contrast": atoms near 1 on 0, so the map's 0.5 threshold means what
        it says) or from the raw frames, normalised per frame to their 1st-99.5th
        percentiles.
    smooth_A : float
        Gaussian smoothing (sigma) of the atom probability map the windows are cut
        from: the segmentation's small discs become smooth blobs, which the rVAE's
        coordinate decoder learns far faster than sharp discs.
    window_taper : bool
        Weight windows by a round taper (:func:`latentpath.windows.circular_taper`):
        the corners, which rotate in and out of a square window, are dropped.
    orient_windows : bool
        Cut each atom-centred window in its atom's bond frame
        (:func:`latentpath.graph.bond_frames`, ordered by the sizes of the atom's
        rings): the two sublattices of graphene, the turns of a defect site and its
        mirror image then give the same window. The rVAE's angle latent seldom learns
        a 60 degree turn: unturned, the demo's sublattices took one of the two content
        latents (two copies of every structure on the map) and the 5-ring structures
        were separated half as well (docs/chemical-space.md).
    window_A : float
        Side of the windows. 8 A holds the three rings around an atom, 7- and 8-rings
        included, and a hollow site's ring with its neighbours.
    window_px : int
        Samples per window side (the windows are resampled to it). 16 over 8 A (0.53 A
        per sample, 2.7 per C-C bond): a training step decodes 256 pixels instead of
        576, and the models train in half the time; on the same windows of a held-out
        movie, retrained at 24 and at 16, the atom plane's balanced accuracy was 0.820
        and 0.810, the hollow plane's 0.985 and 0.988, the map's on the three commonest
        atom structures 0.97 / 0.92 / 0.84 and 0.98 / 0.86 / 0.84 (read at
        ``map_read_px``); at 12 the atom plane fell to 0.725 (docs/chemical-space.md).
    atoms_per_frame : dict
        Atom-centred windows drawn per frame and species (None, the default: all of
        them). Training draws from them balanced by structure and stops at a step
        ceiling, so more windows cost little training time and give the rare
        structures more distinct examples.
    hollow_per_frame : int, optional
        Hollow-site windows drawn per frame (None, the default: all). On a 12-frame
        movie, every ring (2,977 windows) against 40 per frame (399), each trained for
        about 4,000 balanced steps: the map named 5-rings for 0.90 of their windows
        (0.87) and 7-rings for 0.96 (0.84).
    track_species : tuple of str, optional
        Species followed through the movie (None: every atom); the method follows Si.
    track_search_A, track_memory
        Farthest move between the frames an atom is seen in (None: from the spacing of
        the tracked atoms) and frames it may be missed (:func:`latentpath.tracks.link_atoms`).
    track_border_A : float
        Atoms nearer the frame's border get no chemical state: their rings may be cut
        (:func:`latentpath.tracks.chemical_states`).
    balance_power : dict or float
        Per window kind, draw the training windows of its skip-rVAE in proportion to
        (windows of their bond-graph structure) ** -power
        (:func:`latentpath.rvae.balanced_weights`; the structure as
        :func:`latentpath.discovery.graph_labels` names it, edge and hole atoms as one
        more structure); one number sets both kinds. 0 trains on the windows as they
        come, where the lattice drowns the 5-, 7- and 8-rings (about a tenth of the
        windows) and the decoder never learns to draw them; 1 draws every structure
        equally often. Hollow sites have four structures (5- to 8-rings) and draw them
        equally (1); atoms have fifteen or more (6-6-6, 5-6-6, ... 6-8-8), and drawn
        equally the commonest defects get a seventeenth of the steps each, so atoms
        draw at 0.5: on two held-out movies the map named 5-6-7 for 0.60 and 0.65 of
        its windows (0.50, 0.43 at 1), the latent plane's balanced accuracy over all
        structures fell by 0.04-0.07. No truth is needed (docs/chemical-space.md).
    hollow_max_steps : int, optional
        Step ceiling of the hollow-site model where it is lower than ``max_steps``
        (None, the default: ``max_steps``). 3,000 instead of 4,000 saves a quarter of the
        hollow model's time and held the hollow plane and map within 0.03 on eleven of
        twelve held-out runs; on the twelfth, the largest (7,700 hollow windows), the map
        named 8-rings for 0.75 of their windows instead of 0.82: not the default
        (docs/chemical-space.md).
    map_points, manifold_points : int
        Grid points per axis of the chemical-space map and of the manifold figure.
    map_decode_px : int, optional
        Side of the images decoded for the map (None: ``window_px``). The decoder is fit
        on its training grid only: to read finer, use ``map_read_px``.
    map_read_px : int, optional
        Side the map's decoded images are resampled to (cubic splines) before their
        atoms are found (None: as decoded). 24 over 8 A gives 4.1 pixels per bond,
        which the reading's thresholds were set for; read as decoded at 16, the same
        model named 6-6-7 for 0.69 and 5-7-7 for 0.02 of their windows, read at 24
        0.85 and 0.62.
    map_coarse_step : int, optional
        Read the map coarse to fine (:func:`latentpath.latent.refined_grid`): every
        this many grid points first, then only where neighbouring points differ. From
        every 4th point, a run's 200 x 200 maps take 20 s and 10 s instead of 48 s and
        46 s, and give 99.6 % and 100 % of the windows the class of the full map (atom
        and hollow maps of a 50-frame run, docs/chemical-space.md). None: decode every
        point.
    neighbour_weight : float
        Weight of the term that keeps each atom window's nearest windows (in 32
        principal components of the windows) near it in the latent plane
        (:func:`latentpath.rvae.fit_rvae`, :mod:`latentpath.rvae.neighbours`, 64 pairs
        a step); the hollow-site model has none (:meth:`for_kind`). Without it the two
        content latents kept the atom structures worse than a 10-component PCA of the
        windows; retrained with it on four held-out runs, the plane's 5-NN balanced
        accuracy over every structure rose from 0.60-0.85 to 0.77-0.92 and the map
        named each of the three commonest structures for 0.82 or more of their windows
        on three of the four (one of four without the term). At 100 the map was as
        good and the plane weaker (0.73-0.91); 256 pairs a step at 100 kept the plane
        0.00-0.04 higher, named the three on one run of four and cost three times as
        much. 0: the plain skip-rVAE (docs/chemical-space.md).
    atom_draws : int
        Atom models trained, each from its own seed (``seed``, ``seed + 1``, ...); the
        one whose chemical-space map names the bond graph's three commonest structures
        best (the weakest of the three shares, :func:`draw_agreement`) is kept, the
        others stay in ``atom/draws/`` beside the choice (``choice.json``). No truth is
        needed. On the four held-out runs whose map named a common structure for fewer
        than 0.80 of its windows, that share moved by up to 0.13 between seeds and the
        draw ranked first this way was the best against the truth on all four; the best
        of three lifted them by 0.01-0.06. Each draw costs a whole atom model's
        training (docs/chemical-space.md). 1, the default: one model.
    latent_dim, hidden, layers, epochs, patience, max_steps, min_steps, time_budget_s,
    cooldown, batch_size, lr, kl_weight, precision, compile, device, seed
        The skip-rVAE, its training, device and seed
        (:class:`~latentpath.pipeline.common.RunSettings`). Batches of 32 at lr 3e-3: on
        the demo, 40 epochs of them separate the atom structures as well as 160 epochs
        of 100 at 1e-3, in a third of the time. Unless set, training stops when the
        validation loss has not improved for 10 epochs, at most 4,000 steps on a CPU
        (:data:`STEM_RVAE_SIZES`): the decoder needs the steps to close the rings of
        the rarer structures, whatever the movie's length (docs/chemical-space.md).
        The patience ends no training before 2,000 steps (``min_steps``): one real
        image gives epochs of a dozen steps, and on the shared grain boundary 10 epochs
        without a better validation loss ended training after 291-840 steps (on one
        seed with a map that named no structure).
        Either stop begins a **cool-down** of 30 % of the training (``cooldown``), the
        learning rate falling to zero: at lr 3e-3 the validation loss swings by 10 %
        between epochs, and a patience stop had ended one held-out movie's atom model
        at 2,349 steps with its map naming 5-6-6 for 0.16 of the windows (0.81 with the
        cool-down, which ended at 3,356 steps).
    """

    pixel_size_A: float | None = None
    channel: str | None = None
    self_train_frames: int = 0
    window_source: str = "probability"
    smooth_A: float = 0.3
    window_taper: bool = True
    orient_windows: bool = True
    window_A: float = 8.0
    window_px: int = 16
    atoms_per_frame: dict = field(default_factory=lambda: {"C": None, "Si": None})
    hollow_per_frame: int | None = None
    track_species: tuple[str, ...] | None = ("Si",)
    track_search_A: float | None = None
    track_memory: int = 3
    track_border_A: float = 4.0
    balance_power: dict | float = field(default_factory=lambda: dict(BALANCE_POWER))
    hollow_max_steps: int | None = None
    map_points: int = 200
    manifold_points: int = 12
    map_decode_px: int | None = None
    map_read_px: int | None = 24
    map_coarse_step: int | None = 4
    batch_size: int = 32
    lr: float = 3e-3
    cooldown: float = 0.3
    neighbour_weight: float = 200.0
    atom_draws: int = 1
    label: ClassVar[str] = "STEM"
    rvae_sizes: ClassVar[dict] = STEM_RVAE_SIZES

    def __post_init__(self) -> None:
        if self.window_A <= 2 * CC_BOND_A:
            raise ValueError(f"window_A must exceed two bond lengths ({2 * CC_BOND_A} A), "
                             f"got {self.window_A}")
        super().__post_init__()
        check_sizes(self, {"window_px": (8, 256), "map_points": (2, 2000),
                           "hollow_max_steps": RUN_SIZE_BOUNDS["max_steps"],
                           "manifold_points": (2, 64), "map_decode_px": (8, 256),
                           "map_read_px": (8, 256), "map_coarse_step": (1, 64),
                           "atom_draws": (1, 16)})
        if self.window_source not in ("probability", "raw"):
            raise ValueError(f"window_source must be 'probability' or 'raw', got "
                             f"{self.window_source!r}")
        if self.track_species is not None:
            if isinstance(self.track_species, str):
                self.track_species = (self.track_species,)
            self.track_species = tuple(self.track_species)
        if self.track_memory < 0:
            raise ValueError(f"track_memory must be 0 or more, got {self.track_memory}")
        if self.track_search_A is not None and not self.track_search_A > 0:
            raise ValueError(f"track_search_A must be positive, got {self.track_search_A}")
        power = self.balance_power
        if not isinstance(power, dict):
            power = dict.fromkeys(KINDS, power)
        unknown = sorted(set(power) - set(KINDS))
        if unknown:
            raise ValueError(f"balance_power has no window kind {unknown}; kinds: {KINDS}")
        power = {**BALANCE_POWER, **power}
        for kind, value in power.items():
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 <= value < float("inf"):
                raise ValueError(f"balance_power of {kind} windows must be 0 or more, "
                                 f"got {value!r}")
        self.balance_power = {kind: float(value) for kind, value in power.items()}
        if self.self_train_frames < 0:
            raise ValueError(f"self_train_frames must be 0 or more, got "
                             f"{self.self_train_frames}")


    def for_kind(self, kind: str) -> StemConfig:
        """The settings of ``kind``'s skip-rVAE, its own step ceiling as ``max_steps``
        (lowered to ``hollow_max_steps`` for hollow-site windows, which is then None),
        its own ``neighbour_weight`` and ``atom_draws`` (none and one for hollow
        sites): what the model step is keyed on.

        Examples
        --------
        >>> config = StemConfig(hollow_max_steps=3000).for_device("cpu")
        >>> config.for_kind("atom").max_steps, config.for_kind("hollow").max_steps
        (4000, 3000)
        >>> config.for_kind("atom").neighbour_weight, config.for_kind("hollow").neighbour_weight
        (200.0, 0.0)
        """
        if kind not in KINDS:
            raise ValueError(f"no window kind {kind!r}; kinds: {KINDS}")
        ceilings = [c for c in (self.max_steps, kind == "hollow" and self.hollow_max_steps)
                    if c]
        return dataclasses.replace(self, max_steps=min(ceilings) if ceilings else None,
                                   hollow_max_steps=None,
                                   neighbour_weight=self.neighbour_weight * (kind == "atom"),
                                   atom_draws=self.atom_draws if kind == "atom" else 1)

    @property
    def window_bond_px(self) -> float:
        """The C-C bond length in samples of the windows (and of the decoded images)."""
        return CC_BOND_A / (self.window_A / (self.window_px - 1))

    def train_rvae(self, windows: np.ndarray, folder: Path, *, resume: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   sample_weights: np.ndarray | None = None,
                   draw_labels: np.ndarray | None = None) -> object:
        """:meth:`RunSettings.train_rvae`; with ``atom_draws`` above 1, each draw is
        trained into ``folder``'s sibling ``draws/<i>/`` (resumed alike), judged by
        :func:`draw_agreement` against ``draw_labels`` (each window's bond-graph
        structure, None where unscored), and the best copied into ``folder``."""
        if self.atom_draws == 1:
            return super().train_rvae(windows, folder, resume=resume, overwrite=overwrite,
                                      progress=progress, sample_weights=sample_weights)
        from latentpath.rvae import load_rvae

        if draw_labels is None or len(draw_labels) != len(windows):
            raise ValueError(f"atom_draws={self.atom_draws} needs the bond-graph structure "
                             f"of each of the {len(windows)} windows (draw_labels)")
        draws = Path(folder).parent / rundir.DRAWS
        seeds = [self.seed + i for i in range(self.atom_draws)]
        agreement = []
        for i, seed in enumerate(seeds):
            one = dataclasses.replace(self, seed=seed, atom_draws=1)
            model = one.train_rvae(windows, draws / str(i), resume=resume,
                                   overwrite=overwrite, progress=progress,
                                   sample_weights=sample_weights)
            agreement.append(draw_agreement(model, windows, draw_labels, self))
        scored = np.nan_to_num(np.asarray(agreement), nan=-1.0)
        kept = int(np.argmax(scored))
        if Path(folder).exists():
            shutil.rmtree(folder)
        shutil.copytree(draws / str(kept), folder)
        write_json({"seeds": seeds, "kept": kept, "weakest_agreement":
                    [None if np.isnan(a) else a for a in agreement]},
                   draws / rundir.DRAW_CHOICE, overwrite=True)
        if progress:
            print(f"  atom model: draw {kept + 1} of {len(seeds)} kept (seed {seeds[kept]}; "
                  "weakest share of the bond graph's three commonest structures named "
                  "right: " + ", ".join(f"{a:.2f}" for a in agreement) + ")", flush=True)
        return load_rvae(folder)


def draw_agreement(model: object, windows: np.ndarray, labels: np.ndarray,
                   config: StemConfig) -> float:
    """How well a trained atom model's chemical-space map names the structures: the
    weakest, over the three commonest labels, of the share of their windows the map
    names so (NaN without labels).

    Parameters
    ----------
    model : SkipRVAE
    windows : ndarray (N, w, w)
        The atom windows it was trained on.
    labels : array (N,)
        Each window's bond-graph structure (:func:`latentpath.discovery.graph_labels`),
        None where unscored.
    config : StemConfig
        The map's settings (``map_points``, ``map_decode_px``, ``map_read_px``,
        ``map_coarse_step``, the window's size).
    """
    from latentpath.discovery import COMMON_STRUCTURES, map_agreement

    labels = np.asarray(labels, dtype=object)
    common = pd.Series(labels).dropna().value_counts().index[:COMMON_STRUCTURES]
    if not len(common):
        return float("nan")
    latents, _ = latents_and_map(model, windows, config, "atom")
    return min(map_agreement(latents["map_structure"].to_numpy(), labels, common).values())


def latents_and_map(model: object, windows: np.ndarray, config: StemConfig, kind: str, *,
                    table: pd.DataFrame | None = None, progress: bool = False
                    ) -> tuple[pd.DataFrame, ChemicalSpaceMap]:
    """The windows' latents (joined to ``table`` if given) with the map's class at each
    (``map_*`` columns), and the chemical-space map, read with the run's settings."""
    from latentpath.rvae import encode

    latents = encode(model, windows, table=table)
    z1, z2 = latent_grid(latents, config.map_points)
    space = chemical_space_map(model, z1, z2, bond_length_px=config.window_bond_px,
                               kind=kind, size=config.map_decode_px,
                               read_px=config.map_read_px,
                               coarse_step=config.map_coarse_step, progress=progress)
    return latents.join(labels_at(space, latents).add_prefix("map_")), space


def atoms_and_probabilities(movie: Movie, config: StemConfig, *,
                            segmenter_out: Path | None = None, progress: bool = True
                            ) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Atoms of every frame and the segmentation's atom probability at the model's
    sampling. With ``config.self_train_frames``, the self-trained segmentation model is
    saved into ``segmenter_out`` (if given), so that more movies can be segmented alike.

    Returns
    -------
    atoms : DataFrame
        ``frame, y, x, species, score`` (pixels of the movie).
    probability : ndarray (T, h, w), float32
        1 - P(background), at the model's pixel size.
    map_pixel_A : float
        Angstrom per pixel of ``probability``.
    """
    from latentpath.atoms import find_atoms, load_model, save_model, self_train
    from latentpath.device import resolve_device

    device = resolve_device(config.device)
    model = load_model(device=device)
    atoms, probs = find_atoms(movie, pixel_size_A=config.pixel_size_A, model=model,
                              device=device, return_probabilities=True, progress=progress)
    pixel_A = atoms.attrs["pixel_size_A"]
    if config.self_train_frames:
        model, _ = self_train(movie, n_frames=config.self_train_frames, pixel_size_A=pixel_A,
                              model=model, device=device, seed=config.seed, progress=progress)
        if segmenter_out is not None:
            save_model(model, segmenter_out, overwrite=True)
        atoms, probs = find_atoms(movie, pixel_size_A=pixel_A, model=model, device=device,
                                  return_probabilities=True, progress=progress)
    map_pixel_A = pixel_A * movie.data.shape[2] / probs.shape[3]
    return atoms, 1.0 - probs[:, 0], map_pixel_A


def window_images(movie: Movie, probability: np.ndarray, map_pixel_A: float,
                  pixel_size_A: float, config: StemConfig) -> tuple[np.ndarray, float]:
    """The images windows are cut from (``config.window_source``) and their pixel size,
    angstrom."""
    if config.window_source == "probability":
        return atom_density(probability, config.smooth_A / map_pixel_A), map_pixel_A
    frames = movie.data.astype(np.float32)
    lo = np.percentile(frames, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(frames, 99.5, axis=(1, 2), keepdims=True)
    return (frames - lo) / np.maximum(hi - lo, 1e-12), pixel_size_A


def cut_kind_windows(images: np.ndarray, image_pixel_A: float, movie_shape: tuple[int, ...],
                     points: pd.DataFrame, config: StemConfig, out: Path | None, *,
                     edge: str = "skip", overwrite: bool = False
                     ) -> tuple[np.ndarray, pd.DataFrame]:
    """Windows of ``config.window_A`` resampled to ``config.window_px``, centred on
    ``points`` (pixels of the movie), into the memory-mapped ``out`` (None: in memory);
    the table keeps the points' movie pixels. ``edge`` as in
    :func:`latentpath.windows.cut_windows`.

    Points with their atom's bond frame (``bond_turn_rad``, ``bond_mirror``) are cut
    in it if ``config.orient_windows``. With the taper, "skip" keeps the points whose
    window's inscribed disc lies inside the frame, turned or not (``round_patch``)."""
    from latentpath.windows import circular_taper

    scale = images.shape[2] / movie_shape[2]
    at = points.assign(y=(points.y + 0.5) * scale - 0.5, x=(points.x + 0.5) * scale - 0.5)
    step_px = config.window_A / (config.window_px - 1) / image_pixel_A
    turn = {}
    if config.orient_windows and "bond_turn_rad" in points.columns:
        turn = {"turn_rad": at["bond_turn_rad"].to_numpy(),
                "mirror": at["bond_mirror"].to_numpy()}
    windows, table = cut_windows(images, at, config.window_px, step_px=step_px, edge=edge,
                                 round_patch=config.window_taper, out=out,
                                 overwrite=overwrite, **turn)
    if config.window_taper:
        windows *= circular_taper(config.window_px)
        if out is not None:
            windows.flush()
    table[["y", "x"]] = points[["y", "x"]].to_numpy()[table.point]
    return windows, table.drop(columns="point")


def atom_density(probability: np.ndarray, sigma_px: float) -> np.ndarray:
    """Smoothed atom probability (T, h, w), each frame scaled so that an atom's peak is
    about 1."""
    from scipy import ndimage

    if sigma_px <= 0:
        return probability.astype(np.float32)
    smooth = ndimage.gaussian_filter(probability, (0, sigma_px, sigma_px))
    # per frame, so that a frame's windows do not depend on the rest of the movie (frame
    # tasks on a cluster cut the same windows as one process)
    peak = np.quantile(smooth[:, ::4, ::4], 0.995, axis=(1, 2), keepdims=True)
    return (smooth / np.maximum(peak, 1e-6)).astype(np.float32)


def frame_graphs(atoms: pd.DataFrame, pixel_size_A: float
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bonds and primitive rings of every frame's atoms.

    Returns
    -------
    atoms : DataFrame
        The input with ``coordination``, ``n5..n8`` (rings each atom belongs to) and
        the frame of its bonds, ``bond_turn_rad`` and ``bond_mirror``
        (:func:`latentpath.graph.bond_frames`).
    rings : DataFrame
        ``frame, ring, size, y, x`` (centre of mass, pixels) and ``members`` (row
        labels of ``atoms``).
    """
    atoms = atoms.copy()
    counts = np.zeros((len(atoms), len(RING_SIZES)), np.int64)
    coordination = np.zeros(len(atoms), np.int64)
    turn, mirror = np.zeros(len(atoms)), np.zeros(len(atoms), bool)
    ring_tables = []
    index = atoms.index.to_numpy()
    for frame, rows in atoms.groupby("frame").indices.items():
        pos = atoms[["y", "x"]].to_numpy()[rows] * pixel_size_A
        species = atoms["species"].to_numpy()[rows]
        bonds = find_bonds(pos, species, bond_length=CC_BOND_A,
                           carbon_high=bond_window(pos, CC_BOND_A))
        rings = find_rings(pos, bonds)
        coordination[rows] = np.bincount(bonds.ravel(), minlength=len(rows))
        turn[rows], mirror[rows] = bond_frames(pos, bonds, rings)
        counts[rows] = ring_counts(len(rows), rings, sizes=RING_SIZES).to_numpy()
        rings["members"] = [tuple(index[rows][list(m)].tolist()) for m in rings.members]
        rings[["y", "x"]] /= pixel_size_A
        rings.insert(0, "frame", frame)
        ring_tables.append(rings)
    atoms["coordination"] = coordination
    for j, k in enumerate(RING_SIZES):
        atoms[f"n{k}"] = counts[:, j]
    atoms["bond_turn_rad"], atoms["bond_mirror"] = turn, mirror
    rings = (pd.concat(ring_tables, ignore_index=True) if ring_tables else
             pd.DataFrame(columns=["frame", "ring", "size", "y", "x", "members"]))
    return atoms, rings


def window_points(atoms: pd.DataFrame, rings: pd.DataFrame, kind: str, config: StemConfig
                  ) -> pd.DataFrame:
    """The seeded sample of points to centre windows on: ``frame, y, x, kind`` and the
    row of the atom (``atom``) or ring (``ring``) in its table."""
    if kind == "atom":
        frame = ["bond_turn_rad", "bond_mirror"] if config.orient_windows else []
        if not set(frame) <= set(atoms.columns):
            raise ValueError("the atoms have no bond frames (bond_turn_rad, bond_mirror) "
                             "to orient the windows by: find them with frame_graphs")
        points = atoms[["frame", "y", "x", "species", *frame]].rename_axis("atom").reset_index()
        points = sample_points(points, config.atoms_per_frame, by="species",
                               seed=config.seed)
    elif kind == "hollow":
        points = rings[["frame", "y", "x", "size"]].rename_axis("ring").reset_index()
        points = sample_points(points, config.hollow_per_frame, seed=config.seed)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    points.insert(3, "kind", kind)
    return points.reset_index(drop=True)


def structure_weights(table: pd.DataFrame, atoms: pd.DataFrame, rings: pd.DataFrame,
                      kind: str, power: float) -> np.ndarray | None:
    """Training weights of a kind's windows, balanced by their bond-graph structure
    (:func:`latentpath.discovery.graph_labels`; edge and hole atoms as one more
    structure) to the ``power`` (:func:`latentpath.rvae.balanced_weights`); None for
    power 0, the windows as they come."""
    from latentpath.rvae import balanced_weights

    if not power:
        return None
    structure = graph_labels(table, atoms, rings, kind).fillna("other")
    return balanced_weights(structure.to_numpy(), power=power)


def track_atoms(atoms: pd.DataFrame, frame_shape: tuple[int, int], pixel_size_A: float,
                config: StemConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drift, then tracks of ``config.track_species`` with their chemical state per frame.

    Returns
    -------
    tracks : DataFrame
        :func:`latentpath.tracks.link_atoms` rows with ``state``; empty when the movie
        has no atom of the species.
    drift : DataFrame
        :func:`latentpath.tracks.estimate_drift`.
    """
    from latentpath.tracks import chemical_states, estimate_drift, link_atoms

    drift = estimate_drift(atoms, pixel_size_A, frame_shape)
    species = config.track_species
    if species is not None and not atoms["species"].isin(species).any():
        columns = ["atom", *atoms.columns, "y_fixed", "x_fixed", "track", "gap_before",
                   "state"]
        return pd.DataFrame(columns=columns), drift
    tracks = link_atoms(atoms, pixel_size_A, species=species, search_A=config.track_search_A,
                        memory=config.track_memory, drift=drift)
    tracks["state"] = chemical_states(tracks, frame_shape, pixel_size_A,
                                      border_A=config.track_border_A)
    return tracks, drift


def track_latents(tracks: pd.DataFrame, images: np.ndarray, image_pixel_A: float,
                  movie_shape: tuple[int, ...], config: StemConfig, model, space: ChemicalSpaceMap
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """Every tracked atom's window, its latents from the atom-centred model and the
    chemical-space class there.

    Windows that run off the frame are padded with zeros to be looked at, but not
    encoded: the model never saw a frame border, and would read one as a hole's edge.

    Returns
    -------
    tracks : DataFrame
        The input with ``window_inside``, ``angle, z1, z2, ...`` and ``map_n5..map_n8,
        map_structure``; NaN (and no class) where the window runs off the frame.
    windows : ndarray (len(tracks), window_px, window_px), float32
        Row i is the window of row i of ``tracks``.
    """
    from latentpath.rvae import encode

    frame = [c for c in ("bond_turn_rad", "bond_mirror") if c in tracks.columns]
    points = tracks[["frame", "y", "x", *frame]].assign(kind="atom", row=np.arange(len(tracks)))
    windows, _ = cut_kind_windows(images, image_pixel_A, movie_shape, points, config, None,
                                  edge="constant")
    inside, table = cut_kind_windows(images, image_pixel_A, movie_shape, points, config, None)
    rows = table["row"].to_numpy()
    names = ["angle", *(f"z{i}" for i in range(1, config.latent_dim + 1))]
    result = tracks.assign(window_inside=np.isin(np.arange(len(tracks)), rows))
    if len(table) == 0:
        return result.assign(**{name: np.nan for name in names}), windows
    latents = encode(model, inside, table=table)
    found = latents[names].join(labels_at(space, latents).add_prefix("map_"))
    found.index = tracks.index[rows]
    return result.join(found), windows


#: the tracking tables of a run and their files
TRACK_TABLES = {"tracks": rundir.TRACKS, "drift": rundir.DRIFT,
                "transitions": rundir.TRANSITIONS,
                "transition_counts": rundir.TRANSITION_COUNTS,
                "state_lifetimes": rundir.STATE_LIFETIMES}

#: the settings each step's results depend on (besides the steps it reads); the speed
#: settings (steps.SPEED_SETTINGS) change only how fast they come
STEP_SETTINGS = {
    "atoms": ("pixel_size_A", "channel", "self_train_frames", "seed", "window_source",
              "smooth_A"),
    "windows": ("window_A", "window_px", "window_taper", "orient_windows",
                "atoms_per_frame", "hollow_per_frame", "seed"),
    "model": (*MODEL_SETTINGS, "balance_power", "hollow_max_steps", "atom_draws"),
    "maps": ("map_points", "manifold_points", "map_decode_px", "map_read_px",
             "map_coarse_step"),
    "tracks": ("track_species", "track_search_A", "track_memory", "track_border_A"),
}


@dataclass(frozen=True)
class KindResult:
    """What a STEM run found with one kind of window (``"atom"`` or ``"hollow"``).

    Attributes
    ----------
    latents : DataFrame
        One row per window: what it is centred on (``frame, y, x`` in pixels of the
        movie; ``atom`` or ``ring``, ``size``), its latents (``z1, z2``, ``angle``,
        ``dy, dx``) and the map's reading at them (``map_class``, ``map_rings``, ...).
    map : ChemicalSpaceMap
        The chemical-space map over the latent plane.
    manifold : tuple of ndarray
        ``(z1, z2, images)``: the manifold figure's grid, (m,) and (n,), and its
        decoded images, (n, m, s, s).
    discovery : DiscoveryScore or None
        The run's own yardstick of its latent plane and map (None for runs of earlier
        versions).
    """

    latents: pd.DataFrame
    map: ChemicalSpaceMap
    manifold: tuple[np.ndarray, np.ndarray, np.ndarray]
    discovery: DiscoveryScore | None

    @classmethod
    def read(cls, folder: str | Path) -> KindResult:
        """The results in a STEM run's folder of one window kind (``RUN/atom``)."""
        folder = Path(folder)
        with np.load(folder / rundir.MAPS) as data:
            return cls(latents=read_table(folder / rundir.LATENTS),
                       map=ChemicalSpaceMap.from_arrays(dict(data)),
                       manifold=(data["manifold_z1"], data["manifold_z2"], data["manifold"]),
                       discovery=read_discovery(folder))


@dataclass(frozen=True)
class StemRun:
    """A STEM run: what :func:`run_stem` returns, and :meth:`read` reads back from its
    directory, in the same shape.

    Attributes
    ----------
    out : Path
        The run directory.
    settings : StemConfig
        The settings it ran with, the skip-rVAE's size filled in for its device.
    movie, truth : str or None
        The movie's path (None: frames given in memory) and its synthetic truth's.
    pixel_size_A : float
        Angstrom per pixel of the movie (given, from its file, or estimated).
    atoms : DataFrame
        The found atoms: ``frame, y, x`` (pixels), ``species``, ``score``,
        ``intensity``, ring counts ``n5 .. n8``, ``coordination``.
    rings : DataFrame
        The bond graph's rings: ``frame, ring, size, y, x`` (pixels), ``members`` (a
        tuple of rows of ``atoms``).
    kinds : dict of str to KindResult
        The atom-centred (``"atom"``) and hollow-site (``"hollow"``) windows' results.
    tracks, drift, transitions, transition_counts, state_lifetimes : DataFrame
        The followed atoms (:func:`write_tracks`, docs/tracks.md).
    track_windows : ndarray (n, s, s), float32
        The windows of the tracked atoms, row i for row i of ``tracks``.
    warnings : list of str
        What the run doubted (the atom finder's warnings: pixel size, quality).
    timings_s : dict of str to float
        Seconds each step took when it was computed.
    reused : tuple of str
        Steps :func:`run_stem` took from an earlier run into ``out`` (() when read).
    total_s : float or None
        Seconds the :func:`run_stem` call took (None when read).
    """

    out: Path
    settings: StemConfig
    movie: str | None
    truth: str | None
    pixel_size_A: float
    atoms: pd.DataFrame
    rings: pd.DataFrame
    kinds: dict[str, KindResult]
    tracks: pd.DataFrame
    drift: pd.DataFrame
    transitions: pd.DataFrame
    transition_counts: pd.DataFrame
    state_lifetimes: pd.DataFrame
    track_windows: np.ndarray
    warnings: list[str]
    timings_s: dict[str, float]
    reused: tuple[str, ...] = ()
    total_s: float | None = None

    @property
    def report(self) -> Path:
        """The run's page (``report.html``)."""
        return self.out / rundir.REPORT

    @classmethod
    def read(cls, out: str | Path) -> StemRun:
        """A finished STEM run, from its directory ``out`` (ValueError if it holds
        none)."""
        out, settings, facts, record = read_run(out, "stem", StemConfig,
                                                unnamed_is_this=True)
        return cls.of_directory(out, settings, pixel_size_A=record["pixel_size_A"], **facts)

    @classmethod
    def of_directory(cls, out: Path, settings: StemConfig, **recorded) -> StemRun:
        """The run whose tables and maps are in ``out``, with its settings and the
        facts its record keeps (``movie``, ``truth``, ``pixel_size_A``, ``warnings``,
        ``timings_s``)."""
        with np.load(out / "atom" / rundir.TRACK_WINDOWS) as data:
            track_windows = data["windows"]
        return cls(out=out, settings=settings, atoms=read_table(out / rundir.ATOMS),
                   rings=_read_rings(out / rundir.RINGS),
                   kinds={kind: KindResult.read(out / kind) for kind in KINDS},
                   **{name: read_table(out / file) for name, file in TRACK_TABLES.items()},
                   track_windows=track_windows, **recorded)


def run_stem(movie: str | Path | Movie, out: str | Path,
             config: StemConfig | dict | str | Path | None = None, *,
             truth: str | Path | None = None, overwrite: bool = False, resume: bool = True,
             progress: bool = True, inputs: Mapping[str, str | Path] | None = None
             ) -> StemRun:
    """The whole STEM pipeline on a movie, into the run directory ``out``.

    Each step (atoms and rings, each kind's windows, skip-rVAE and maps, the tracks, the
    figures and report) is stamped when it finishes (:mod:`latentpath.pipeline.steps`),
    so running again into ``out`` reuses the finished steps: a killed run completes,
    with the results it would have had.

    Parameters
    ----------
    movie : path or Movie
    out : path
        Run directory. If it holds a run of other inputs or settings, that run is only
        replaced with ``overwrite``, and the steps the two share are reused.
    config : StemConfig, dict or path, optional
        Settings, as settings, a dict of them, or a JSON config file
        (:func:`latentpath.pipeline.common.read_config_file`); default: the defaults.
    truth : path, optional
        Synthetic truth (.npz) of the movie, recorded so ``latentpath evaluate RUN``
        can score the run.
    resume : bool
        Reuse the steps an earlier run into ``out`` finished with the same inputs and
        settings (False: compute every step again).
    inputs : mapping, optional
        Further files the run reads, by what they are to the user (``{"--config":
        path}``): like the movie, the truth and a config file given as ``config``,
        they are never replaced. Files in ``out`` that no run there wrote are only
        replaced with ``overwrite`` (:class:`~latentpath.pipeline.steps.RunSteps`).

    Returns
    -------
    StemRun
        The run's tables, maps and settings, as :meth:`StemRun.read` reads them back,
        with the steps taken from an earlier run (``reused``) and the seconds this call
        took (``total_s``).

    Examples
    --------
    A two-frame synthetic movie and models far too small to learn anything, to show the
    run's shape (the defaults train for minutes):

    >>> import tempfile
    >>> from latentpath.synth import synth_stem_movie, write_synth_stem
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_synth_stem(synth_stem_movie(2, 192, seed=0), folder / "movie.npz")
    >>> tiny = {"epochs": 2, "hidden": 32, "layers": 2, "map_points": 12,
    ...         "manifold_points": 4, "device": "cpu", "compile": False}
    >>> run = run_stem(folder / "movie.npz", folder / "run", tiny, progress=False)
    >>> sorted(run.kinds)
    ['atom', 'hollow']
    >>> {"z1", "z2", "map_structure"} <= set(run.kinds["atom"].latents.columns)
    True
    >>> again = run_stem(folder / "movie.npz", folder / "run", tiny, progress=False)
    >>> "atom model" in again.reused
    True
    >>> StemRun.read(folder / "run").kinds["atom"].latents.equals(run.kinds["atom"].latents)
    True
    """
    started = time.perf_counter()
    inputs = {**(inputs or {}),
              "the config file": config if isinstance(config, str | Path) else None}
    config = StemConfig.resolve(config)
    config = config.for_device(config.device)
    out = Path(out)
    # absolute, so that the record replays from anywhere (latentpath stem --config)
    movie_path = str(Path(movie).resolve()) if not isinstance(movie, Movie) else None
    if not isinstance(movie, Movie):
        movie = load_movie(movie, channel=config.channel)
    truth = None if truth is None else str(Path(truth).resolve())
    movie_key = movie_content_key(movie)
    files, folders = stem_outputs(out)
    steps = RunSteps.open(out, run_identity("stem", movie_key, config, truth),
                          outputs=files, folders=folders,
                          inputs={"the movie": movie_path, "the truth": truth, **inputs},
                          rereadable=[out / rundir.RECORD], overwrite=overwrite,
                          resume=resume, progress=progress)
    with steps:
        return _stem_steps(steps, movie, movie_path, truth, movie_key, config, started,
                           progress=progress)


def _own_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings latentpath itself raised among ``caught``, shown again (they were
    held back to be recorded) and returned as sentences for the run's record; those of
    libraries are shown only."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return own_warnings(caught)


def stem_outputs(out: Path) -> tuple[list[Path], list[Path]]:
    """The files and the folders a STEM run writes in its directory ``out``."""
    files = [out / name for name in (rundir.RECORD, rundir.ATOMS, rundir.RINGS,
                                     rundir.ATOM_QUALITY, rundir.WINDOW_IMAGES, rundir.REPORT,
                                     *TRACK_TABLES.values())]
    return files, [out / name for name in (rundir.SEGMENTER, *KINDS, rundir.FIGURES)]


def _atoms_step(steps: RunSteps, movie: Movie, movie_key: str, config: StemConfig, *,
                progress: bool) -> str:
    """The atoms, their quality, the bond graph's rings and the images the windows are cut
    from, reused when finished earlier; returns the step's key."""
    out = steps.out
    key = step_key("atoms", config, STEP_SETTINGS["atoms"], movie_key)

    def find_atoms_and_rings() -> StepOutput:
        segmenter = out / rundir.SEGMENTER if config.self_train_frames else None
        if segmenter is None and (out / rundir.SEGMENTER).is_dir():
            shutil.rmtree(out / rundir.SEGMENTER)  # an earlier run's, which these atoms did not use
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            atoms, probability, map_px_A = atoms_and_probabilities(
                movie, config, segmenter_out=segmenter, progress=progress)
        doubts = _own_warnings(caught)
        pixel_A, size = atoms.attrs["pixel_size_A"], atoms.attrs["pixel_size"]
        quality = pd.DataFrame(atoms.attrs["quality"])
        if len(atoms) == 0:
            raise ValueError("no atoms found in the movie: nothing to analyse")
        atoms, rings = frame_graphs(atoms, pixel_A)
        if len(rings) == 0:
            raise ValueError("no rings found among the atoms: is this a 2-D atomic lattice "
                             f"at the pixel size {pixel_A:.4g} A?")
        source, source_px_A = window_images(movie, probability, map_px_A, pixel_A, config)
        del probability
        write_table(atoms, out / rundir.ATOMS, overwrite=True)
        write_table(quality, out / rundir.ATOM_QUALITY, overwrite=True)
        write_table(rings.assign(members=[list(m) for m in rings.members]),
                    out / rundir.RINGS, overwrite=True)
        save_npy(source, out / rundir.WINDOW_IMAGES, overwrite=True)
        return StepOutput([out / rundir.ATOMS, out / rundir.RINGS,
                           out / rundir.ATOM_QUALITY, out / rundir.WINDOW_IMAGES,
                           *([segmenter] if segmenter else [])],
                          values={"pixel_size_A": pixel_A, "window_image_pixel_A": source_px_A,
                                 "pixel_size": size, "warnings": doubts},
                          note=f"{len(atoms)} atoms, {len(rings)} rings")

    steps.run("atoms", key, find_atoms_and_rings)
    return key


def _stem_steps(steps: RunSteps, movie: Movie, movie_path: str | None, truth: str | None,
                movie_key: str, config: StemConfig, started: float, *, progress: bool
                ) -> StemRun:
    """The steps of :func:`run_stem` in its claimed directory."""
    from latentpath.rvae import load_rvae

    out = steps.out
    keys = [_atoms_step(steps, movie, movie_key, config, progress=progress)]
    pixel_A, source_px_A = (steps.values("atoms")[name] for name in ("pixel_size_A",
                                                                 "window_image_pixel_A"))
    atoms = read_table(out / rundir.ATOMS)
    rings = _read_rings(out / rundir.RINGS)
    source = np.load(out / rundir.WINDOW_IMAGES, mmap_mode="r")
    bond_px = config.window_bond_px
    jobs = [_model_job(kind, _windows_step(kind, steps, keys[0], source, source_px_A,
                                           movie.data.shape, atoms, rings, config),
                       steps, atoms, rings, config) for kind in KINDS]
    models = model_steps(steps, jobs, side_by_side=config.side_by_side, progress=progress)
    for kind, job in zip(KINDS, jobs, strict=True):
        keys.append(_maps_step(kind, steps, job.key, models[job.name], atoms, rings, config,
                               progress=progress))

    key = step_key("tracks", config, STEP_SETTINGS["tracks"], keys[0], keys[1])
    keys.append(key)

    def follow_atoms() -> StepOutput:
        tracks, drift = track_atoms(atoms, movie.data.shape[1:], pixel_A, config)
        track_windows = np.zeros((0, config.window_px, config.window_px), np.float32)
        if len(tracks):
            model = models["atom model"]
            if model is None:
                model = load_rvae(out / "atom" / rundir.MODEL)
            tracks, track_windows = track_latents(tracks, source, source_px_A,
                                                  movie.data.shape, config, model,
                                                  KindResult.read(out / "atom").map)
        write_tracks(out, tracks, drift, overwrite=True)
        save_npz(out / "atom" / rundir.TRACK_WINDOWS, {"windows": track_windows},
                 overwrite=True)
        return StepOutput([*(out / name for name in TRACK_TABLES.values()),
                           out / "atom" / rundir.TRACK_WINDOWS],
                          note=f"{tracks['track'].nunique()} tracks, {len(tracks)} atom-frames")

    steps.run("tracks", key, follow_atoms)
    run = StemRun.of_directory(out, config, movie=movie_path, truth=truth,
                               pixel_size_A=pixel_A,
                               warnings=steps.values("atoms").get("warnings", []),
                               timings_s=steps.timings)

    key = content_key("report", __version__, *keys, movie_path, truth)
    steps.run("report", key,
              lambda: StepOutput(_stem_record(run, movie, steps, bond_px=bond_px)))
    return dataclasses.replace(run, timings_s=steps.timings, reused=tuple(steps.reused),
                               total_s=round(time.perf_counter() - started, 1))


def _windows_step(kind: str, steps: RunSteps, atoms_key: str, source: np.ndarray,
                  source_px_A: float, movie_shape: tuple[int, ...], atoms: pd.DataFrame,
                  rings: pd.DataFrame, config: StemConfig) -> str:
    """The windows of one kind, reused when finished earlier; returns the step's key."""
    folder = steps.out / kind
    folder.mkdir(exist_ok=True)
    key = step_key(f"{kind} windows", config, STEP_SETTINGS["windows"], atoms_key)

    def cut() -> StepOutput:
        points = window_points(atoms, rings, kind, config)
        windows, table = cut_kind_windows(source, source_px_A, movie_shape, points, config,
                                          folder / rundir.WINDOWS, overwrite=True)
        check_enough_windows(len(table), kind, f"the movie is too small for windows of "
                                               f"{config.window_A} A")
        write_table(table, folder / rundir.WINDOW_TABLE, overwrite=True)
        del windows
        return StepOutput([folder / rundir.WINDOWS,
                           folder / rundir.WINDOW_TABLE],
                          note=f"{len(table)} windows")

    steps.run(f"{kind} windows", key, cut)
    return key


def _model_job(kind: str, windows_key: str, steps: RunSteps, atoms: pd.DataFrame,
               rings: pd.DataFrame, config: StemConfig) -> ModelJob:
    """The skip-rVAE step of one kind's windows, drawn balanced by their structure."""
    folder = steps.out / kind

    def weights() -> np.ndarray | None:
        return structure_weights(read_table(folder / rundir.WINDOW_TABLE), atoms, rings, kind,
                                 config.balance_power[kind])

    def labels() -> np.ndarray:
        return graph_labels(read_table(folder / rundir.WINDOW_TABLE), atoms, rings,
                            kind).to_numpy(object)

    settings = config.for_kind(kind)
    return ModelJob(f"{kind} model", step_key(f"{kind} model", settings,
                                              STEP_SETTINGS["model"], windows_key),
                    settings, folder / rundir.WINDOWS, folder, sample_weights=weights,
                    draw_labels=labels if settings.atom_draws > 1 else None)


def _maps_step(kind: str, steps: RunSteps, model_key: str, model: object | None,
               atoms: pd.DataFrame, rings: pd.DataFrame, config: StemConfig, *,
               progress: bool) -> str:
    """The latents, maps and discovery score of one kind's windows, reused when finished
    earlier; returns the step's key."""
    from latentpath.rvae import load_rvae

    folder = steps.out / kind
    key = step_key(f"{kind} maps", config, STEP_SETTINGS["maps"], model_key,
                   map_reading())

    def map_latents() -> StepOutput:
        decoder = load_rvae(folder / rundir.MODEL) if model is None else model
        windows = np.load(folder / rundir.WINDOWS, mmap_mode="r")
        table = read_table(folder / rundir.WINDOW_TABLE)
        latents, space = latents_and_map(decoder, windows, config, kind, table=table,
                                         progress=progress)
        m1, m2 = latent_grid(latents, config.manifold_points)
        write_table(latents, folder / rundir.LATENTS, overwrite=True)
        save_npz(folder / rundir.MAPS, {**space.to_arrays(),
                                       "manifold": manifold(decoder, m1, m2,
                                                            read_px=config.map_read_px),
                                       "manifold_z1": m1, "manifold_z2": m2},
                 overwrite=True)
        score = score_discovery(latents, windows, graph_labels(table, atoms, rings, kind),
                                kind=kind, seed=config.seed)
        write_json(score.to_dict(), folder / rundir.DISCOVERY, overwrite=True)
        return StepOutput([folder / rundir.LATENTS, folder / rundir.MAPS,
                           folder / rundir.DISCOVERY],
                          note=score.sentence())

    steps.run(f"{kind} maps", key, map_latents)
    return key


def _stem_record(run: StemRun, movie: Movie, steps: RunSteps, *, bond_px: float
                 ) -> list[Path]:
    """The figures, ``config.json`` and ``report.html`` of a run; returns their paths."""
    from latentpath.figures import stem_run_figures
    from latentpath.report import write_report

    figures = stem_run_figures(movie.data, run, run.out / rundir.FIGURES)
    record = write_run_record(run, "stem", steps, figures, pixel_size_A=run.pixel_size_A,
                              window_bond_length_px=bond_px)
    return [*figures, record, write_report(run, movie.data, overwrite=True)]


def _read_rings(path: Path) -> pd.DataFrame:
    """rings.parquet with each ring's members as a tuple of atom rows, as
    :func:`frame_graphs` gives them."""
    rings = read_table(path)
    rings["members"] = [tuple(int(i) for i in m) for m in rings.members]
    return rings


def write_tracks(out: Path, tracks: pd.DataFrame, drift: pd.DataFrame, *,
                 overwrite: bool = False) -> dict[str, pd.DataFrame]:
    """The tracking tables of a run: tracks, drift, transitions, their counts and the
    states' lifetimes."""
    from latentpath.tracks import find_transitions, state_lifetimes, transition_counts

    transitions = find_transitions(tracks)
    tables = {"tracks": tracks, "drift": drift, "transitions": transitions,
              "transition_counts": transition_counts(transitions),
              "state_lifetimes": state_lifetimes(tracks)}
    for name, table in tables.items():
        write_table(table, out / TRACK_TABLES[name], overwrite=overwrite)
    return tables


def stem_run_frames(out: str | Path) -> np.ndarray:
    """The frames a finished STEM run's windows were cut from: its movie, read again from
    the path its record names (ValueError if it is gone, or if its content changed since
    the run: its frames would not match the run's atoms and windows)."""
    record = rundir.read_run_record(out)
    if not record.get("movie"):
        raise ValueError(f"{out}: the run was made from a movie in memory; pass its frames")
    movie = load_movie(record["movie"], channel=record["config"].get("channel"))
    key = movie_content_key(movie)
    if (recorded_identity(out) or {}).get("movie_key", key) != key:
        raise ValueError(f"{record['movie']} has changed since the run in {out} was made "
                         "from it: its frames would not match the run's atoms and windows; "
                         "run the analysis again")
    return movie.data


def check_stem_truth(out: str | Path, truth: str | Path) -> None:
    """Refuse synthetic truth (.npz, which holds its movie) of another movie than the
    one the run in ``out`` analysed: its scores would be of nothing (ValueError)."""
    recorded = (recorded_identity(out) or {}).get("movie_key")
    if recorded is None:
        return
    if movie_content_key(load_movie(truth)) != recorded:
        raise ValueError(f"{truth} is the truth of another movie than the one the run in "
                         f"{out} analysed; give the truth of its movie")
